"""Typed view of params.yaml.

Every section of params.yaml has a model here (one module per section or group of sections); unknown keys are
errors, a key of another model kind or rule is refused naming it, and every error names the YAML key path and the
rule it broke (``train.lr: must be greater than 0, got -1``). The defaults live here and only here: params.yaml
and the workspace template are written from them (`defaults.py`). Params are loaded once by the caller and passed
down; nothing here is global.
"""

from bigmodel_core.config.base import DEFAULT_PARAMS, _Section
from bigmodel_core.config.data import DataParams, Source
from bigmodel_core.config.kinds import (
    BAG_PRESET,
    MODEL_SECTIONS,
    BagCandidate,
    Candidate,
    LinearCandidate,
    ModelSection,
    PretrainedCandidate,
    TransformerCandidate,
    _CandidateBase,
    candidate_names,
    candidate_params,
    default_candidates,
    keys_left_by_kind_switch,
)
from bigmodel_core.config.model import (
    CANDIDATE_KINDS,
    COMMON_KEYS,
    KIND_KEYS,
    MODEL_KINDS,
    TRANSFORMER_MIN_ROWS,
    ModelParams,
)
from bigmodel_core.config.params import (
    Params,
    _format_error,
    apply_overrides,
    load_params,
    parse_override,
    parse_params,
    read_params_file,
)
from bigmodel_core.config.prep import AugmentParams, CleanParams, SplitParams, TokenizerParams
from bigmodel_core.config.release import (
    DeployParams,
    EvaluateParams,
    FlowParams,
    NotifyEvent,
    NotifyParams,
    TrackingParams,
)
from bigmodel_core.config.train import TrainParams, TuneParams
from bigmodel_core.config.validate import (
    _RULE_SETTINGS,
    DATASET_RULES,
    ROW_RULES,
    RULE_CLASSES,
    RULE_DEFAULTS,
    RULES,
    TEXT_ROW_RULES,
    DriftParams,
    Rule,
    RulesParams,
    ValidateParams,
    default_rule,
)

__all__ = [
    "BAG_PRESET",
    "CANDIDATE_KINDS",
    "COMMON_KEYS",
    "DATASET_RULES",
    "DEFAULT_PARAMS",
    "KIND_KEYS",
    "MODEL_KINDS",
    "MODEL_SECTIONS",
    "ROW_RULES",
    "RULES",
    "RULE_CLASSES",
    "RULE_DEFAULTS",
    "TEXT_ROW_RULES",
    "TRANSFORMER_MIN_ROWS",
    "_RULE_SETTINGS",
    "AugmentParams",
    "BagCandidate",
    "Candidate",
    "CleanParams",
    "DataParams",
    "DeployParams",
    "DriftParams",
    "EvaluateParams",
    "FlowParams",
    "LinearCandidate",
    "ModelParams",
    "ModelSection",
    "NotifyEvent",
    "NotifyParams",
    "Params",
    "PretrainedCandidate",
    "Rule",
    "RulesParams",
    "Source",
    "SplitParams",
    "TokenizerParams",
    "TrackingParams",
    "TrainParams",
    "TransformerCandidate",
    "TuneParams",
    "ValidateParams",
    "_CandidateBase",
    "_Section",
    "_format_error",
    "apply_overrides",
    "candidate_names",
    "candidate_params",
    "default_candidates",
    "default_rule",
    "keys_left_by_kind_switch",
    "load_params",
    "parse_override",
    "parse_params",
    "read_params_file",
]

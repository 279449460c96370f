"""Params: every section together, loading, error text and -S overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from bigmodel_core.config.base import DEFAULT_PARAMS, _Section
from bigmodel_core.config.data import DataParams
from bigmodel_core.config.kinds import (
    MODEL_SECTIONS,
    ModelSection,
    candidate_names,
    candidate_params,
    keys_left_by_kind_switch,
)
from bigmodel_core.config.model import MODEL_KINDS
from bigmodel_core.config.prep import AugmentParams, CleanParams, SplitParams, TokenizerParams
from bigmodel_core.config.release import DeployParams, EvaluateParams, FlowParams, NotifyParams, TrackingParams
from bigmodel_core.config.train import TrainParams
from bigmodel_core.config.validate import ValidateParams
from bigmodel_core.errors import ConfigError


class Params(_Section):
    data: DataParams
    clean: CleanParams = CleanParams()
    validate_: ValidateParams = Field(default=ValidateParams(), alias="validate")
    augment: AugmentParams = AugmentParams()
    split: SplitParams = SplitParams()
    tokenizer: TokenizerParams = TokenizerParams()
    model: ModelSection = Field(default_factory=MODEL_SECTIONS["auto"])
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    deploy: DeployParams = DeployParams()
    tracking: TrackingParams = TrackingParams()
    flow: FlowParams = FlowParams()
    notify: NotifyParams = NotifyParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _processes_first(cls, v: Any) -> Any:
        # a rule across sections that decides how the stage runs is checked before the sections themselves, so
        # that its one message comes first (a model kind in one process with train.nproc > 1)
        if isinstance(v, dict):
            problem = _one_process_problem(v)
            if problem:
                raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _across_sections(self) -> Params:
        if self.model.kind == "auto" and self.model.candidates:
            try:
                candidate_names(self.model.candidates)
            except ConfigError as e:
                raise ValueError(str(e)) from None
            for i, c in enumerate(self.model.candidates):
                try:
                    candidate_params(self, c)
                except ValueError as e:
                    raise ValueError(f"model.candidates[{i}] ({c.kind}): {e}") from None
        return self

    @property
    def validate(self) -> ValidateParams:  # type: ignore[override]
        return self.validate_

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    return value if isinstance(value, dict) else {}


def _one_process_problem(raw: dict[str, Any]) -> str | None:
    """train.nproc > 1 with a model kind (or tuning) that trains in one process, read from the raw sections (a value
    of the wrong type is left to its section's own check)."""
    kind, train = _section(raw, "model").get("kind", "auto"), _section(raw, "train")
    tune, nproc = _section(train, "tune"), train.get("nproc", 1)
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc <= 1 or not isinstance(kind, str):
        return None
    if kind == "bag":
        return (
            f"train.nproc is {nproc}, but model.kind bag trains in one process (its sparse "
            "n-gram table does not work with DDP): set train.nproc to 1"
        )
    trials, minutes = tune.get("trials", 0), tune.get("minutes")
    tuning = (isinstance(trials, int) and trials > 0) or minutes is not None
    if kind in ("auto", "linear") or tuning:
        what = "tuning (train.tune)" if tuning and kind not in ("auto", "linear") else f"model.kind {kind}"
        return (
            f"train.nproc is {nproc}, but {what} trains in one process (DDP is for one "
            "neural model): set train.nproc to 1"
        )
    return None


def _format_error(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        parts = list(e["loc"])
        if len(parts) > 1 and parts[0] == "model" and parts[1] in (*MODEL_KINDS, "any"):
            del parts[1]  # the tag of the model section's kind (its class), not a key
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in parts).replace(".[", "[")
        loc = loc.replace("validate_", "validate")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif "input" in e:
            msg = f"{msg}, got {e['input']!r}"
        lines.append(f"{origin}: {loc}: {msg}" if loc else f"{origin}: {msg}")  # a rule across sections names its keys
    return "; ".join(lines)


def parse_params(raw: dict[str, Any], origin: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: top level must be a mapping of sections")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, origin)) from None


def read_params_file(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return raw


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: list[str] | None = None) -> Params:
    """Read, override and validate params; overrides use `dvc exp run -S` syntax (key.path=yaml_value)."""
    raw = read_params_file(path)
    if overrides:
        raw = apply_overrides(raw, overrides)
    return parse_params(raw, str(path))


def parse_override(item: str) -> tuple[list[str | int], Any]:
    import yaml

    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value (for example train.epochs=5)")
    key, _, value = item.partition("=")
    key = key.strip()
    if key.startswith("params.yaml:"):
        key = key[len("params.yaml:") :]
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None
    path: list[str | int] = []
    for part in key.split("."):
        path.append(int(part) if part.isdigit() else part)
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of raw with each override set; the key must exist in the schema (checked on parse). An
    override of model.kind drops the model keys the new kind does not take (`keys_left_by_kind_switch`)."""
    out = copy.deepcopy(raw)
    paths: list[list[str | int]] = []
    for item in overrides:
        path, value = parse_override(item)
        node: Any = out
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise ConfigError(f"override {item!r}: index {part} out of range")
                node = node[part]
                continue
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
        last = path[-1]
        if isinstance(node, list) and (not isinstance(last, int) or last >= len(node)):
            raise ConfigError(f"override {item!r}: index {last} out of range")
        node[last] = value
        paths.append(path)
    _switch_kind(out, paths)
    return out


def _switch_kind(raw: dict[str, Any], paths: list[list[str | int]]) -> None:
    """After `-S model.kind=X`: drop the model keys of the kind the file had that X does not take."""
    model = raw.get("model")
    if ["model", "kind"] not in paths or not isinstance(model, dict):
        return
    overridden = {str(p[1]) for p in paths if len(p) > 1 and p[0] == "model"}
    for key in keys_left_by_kind_switch(model.get("kind"), list(model), overridden):
        del model[key]

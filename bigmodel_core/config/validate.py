"""validate: the data-quality rules, the gate and drift.

Each rule is a class of its own (made from `Rule` by `_rule_class`): its settings with the rule's defaults, and a
setting of another rule refused naming the key (`validate.rules.near_duplicate.folds: rule near_duplicate takes no
folds ...`). `validate.rules` holds one entry per rule; a rule named with only some keys keeps its own defaults for
the others.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SerializeAsAny, create_model, model_validator
from pydantic.fields import FieldInfo

from bigmodel_core.config.base import _Section, refuse_key

#: counted under the first rule it breaks.
ROW_RULES = (
    "empty_text",
    "missing_label",
    "unknown_label",
    "conflicting_labels",
    "duplicate",
    "undecodable",
    "too_short",
    "too_long",
    "control_chars",
    "html_left",
    "near_duplicate",
    "label_noise",
)
#: The row rules that judge a text on its own (not its label or its copies), in ROW_RULES order. A model keeps
#: their settings in its bundle and refuses, when served, a text that one of them with policy quarantine or fail
#: would have set aside in its training (data/quality/: text_verdicts).
TEXT_ROW_RULES = ("empty_text", "undecodable", "too_short", "too_long", "control_chars", "html_left")
#: Dataset rules judge the passing rows as a whole (policy fail or warn: there is no row to quarantine).
DATASET_RULES = ("class_imbalance", "too_few_rows_per_class", "truncated")
RULES = ROW_RULES + DATASET_RULES

# The settings each rule takes beyond policy and max_fraction.
_RULE_SETTINGS = {
    "too_short": {"min_chars", "min_words"},
    "too_long": {"max_chars", "max_words"},
    "class_imbalance": {"max_ratio"},
    "near_duplicate": {"min_jaccard", "shingle_words"},
    "label_noise": {"folds", "sample_rows"},
}


#: What a rule does when params.yaml does not mention it (or names it with only some keys): the one place the
#: rules' defaults live. A rule not listed has Rule's defaults (policy quarantine, max_fraction 1).
RULE_DEFAULTS: dict[str, dict[str, Any]] = {
    "too_short": {"policy": "warn", "min_chars": 2},
    "too_long": {"policy": "warn", "max_words": 5000},
    "control_chars": {"policy": "quarantine"},
    "html_left": {"policy": "warn"},
    "near_duplicate": {"policy": "warn", "min_jaccard": 0.8, "shingle_words": 3},
    # rows whose label a cross-validated cheap model confidently contradicts (confident learning);
    # max_fraction (of the rows checked) is a gate for badly broken labels, such as a shifted label column
    "label_noise": {"policy": "warn", "max_fraction": 0.3, "folds": 5, "sample_rows": 20_000},
    "class_imbalance": {"policy": "warn", "max_ratio": 20.0},
    "too_few_rows_per_class": {"policy": "fail"},
    # share of passing rows longer (in words) than tokenizer.max_length: the model sees only their start
    "truncated": {"policy": "warn", "max_fraction": 0.2},
}


class Rule(_Section):
    policy: Literal["quarantine", "fail", "warn"] = Field(
        default="quarantine",
        description="quarantine: move rows aside; fail: any hit stops the run; warn: keep rows, report them.",
    )
    max_fraction: float = Field(
        default=1.0, ge=0, le=1, description="Gate: the run stops when more than this fraction of rows hit the rule."
    )
    min_chars: int | None = Field(default=None, ge=1, description="too_short: fewer characters than this.")
    min_words: int | None = Field(default=None, ge=1, description="too_short: fewer words than this.")
    max_chars: int | None = Field(default=None, ge=1, description="too_long: more characters than this (after clean).")
    max_words: int | None = Field(default=None, ge=1, description="too_long: more words than this.")
    max_ratio: float | None = Field(default=None, gt=1, description="class_imbalance: largest class / smallest class.")
    min_jaccard: float | None = Field(
        default=None,
        ge=0.1,
        le=0.99,
        description="near_duplicate: estimated Jaccard similarity of word shingles (MinHash), 0.1 to 0.99 (exact "
        "copies are the duplicate rule's).",
    )
    shingle_words: int | None = Field(default=None, ge=1, le=10, description="near_duplicate: words per shingle.")
    folds: int | None = Field(default=None, ge=2, le=20, description="label_noise: cross-validation folds.")
    sample_rows: int | None = Field(
        default=None,
        ge=0,
        description="label_noise: rows checked (a sample chosen by group key when there are more); "
        "0 turns the check off.",
    )


_SETTINGS = tuple(k for k in Rule.model_fields if k not in ("policy", "max_fraction"))


def _only(name: str) -> str:
    return ", ".join(sorted(_RULE_SETTINGS.get(name, set()))) or "policy and max_fraction"


def _whole_dataset(name: str):
    def check(policy: str) -> str:
        if policy == "quarantine":
            raise ValueError(f"rule {name} judges the whole dataset: its policy is fail or warn, not quarantine")
        return policy

    return check


def _rule_class(name: str) -> type[Rule]:
    """Rule `name`: Rule's fields with the rule's defaults; a setting of another rule refused naming the key."""
    fields: dict[str, Any] = {}
    defaults = RULE_DEFAULTS.get(name, {})
    for key, info in Rule.model_fields.items():
        annotation: Any = info.annotation
        if key in _SETTINGS and key not in _RULE_SETTINGS.get(name, set()):
            annotation = Annotated[
                annotation, BeforeValidator(refuse_key(f"rule {name} takes no {key} (only {_only(name)})"))
            ]
            info = FieldInfo.merge_field_infos(info, exclude=True)  # not in dumps: not a key of this rule
        elif key == "policy" and name in DATASET_RULES:
            annotation = Annotated[annotation, AfterValidator(_whole_dataset(name))]
        fields[key] = (annotation, FieldInfo.merge_field_infos(info, default=defaults.get(key, info.default)))
    cls_name = "".join(part.capitalize() for part in name.split("_")) + "Rule"
    return create_model(cls_name, __base__=Rule, __doc__=f"Settings of rule {name}.", **fields)


#: The class of each rule.
RULE_CLASSES: dict[str, type[Rule]] = {name: _rule_class(name) for name in RULES}


def default_rule(name: str) -> Rule:
    """What a rule does when params.yaml does not mention it."""
    return RULE_CLASSES[name]() if name in RULE_CLASSES else Rule()


class _RulesMapping(_Section):
    """validate.rules as a model: one field per rule, typed by the rule's class. ValidateParams.rules validates its
    mapping through it and keeps the plain mapping of rule name to rule."""

    @model_validator(mode="before")
    @classmethod
    def _known(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        unknown = sorted(set(v) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule(s) {unknown}; known rules: {list(RULES)}")
        out = {}
        for name, given in v.items():
            own = _RULE_SETTINGS.get(name, set())
            if isinstance(given, Rule) and not isinstance(given, RULE_CLASSES[name]):
                # a Rule built in code: its values as they are (unset settings stay unset), another rule's refused
                given = {k: x for k, x in given.model_dump().items() if x is not None or k in own}
            elif isinstance(given, dict):  # a setting of another rule given as null is not set
                given = {k: x for k, x in given.items() if x is not None or k in own or k not in _SETTINGS}
            out[name] = given
        return out

    def __getitem__(self, name: str) -> Rule:
        if name not in RULES:
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return name in RULES

    def __len__(self) -> int:
        return len(RULES)

    def get(self, name: str, default: Rule | None = None) -> Rule | None:
        return self[name] if name in RULES else default

    def keys(self) -> KeysView[str]:
        return self.as_mapping().keys()

    def values(self) -> ValuesView[Rule]:
        return self.as_mapping().values()

    def items(self) -> ItemsView[str, Rule]:
        return self.as_mapping().items()

    def as_mapping(self) -> dict[str, Rule]:
        return {name: getattr(self, name) for name in RULES}

    def names(self) -> Iterator[str]:
        return iter(RULES)


if TYPE_CHECKING:  # a class made at run time: to the type checker, the mapping it is
    RulesParams = _RulesMapping
else:  # one field per rule, typed by the rule's class
    RulesParams = create_model(
        "RulesParams",
        __base__=_RulesMapping,
        **{
            name: (RULE_CLASSES[name], Field(default_factory=RULE_CLASSES[name], description=f"Rule {name}."))
            for name in RULES
        },
    )


def _each_rule(v: Any) -> Any:
    """validate.rules: each entry as its rule's class (RulesParams), every rule present; a mapping of them."""
    return dict(RulesParams.model_validate(v).items()) if isinstance(v, dict) else v


class DriftParams(_Section):
    policy: Literal["fail", "warn", "off"] = Field(
        default="warn", description="Drift beyond a threshold: fail closes the data gate, warn reports it, off skips."
    )
    max_label_shift: float = Field(
        default=0.1, ge=0, le=1, description="L-infinity distance between the label priors and the champion's."
    )
    max_length_js: float = Field(
        default=0.1, ge=0, le=1, description="Jensen-Shannon divergence (base 2) of the word-length histograms."
    )
    max_oov_increase: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Rise of the share of words outside the champion's vocabulary (its data's top words).",
    )


class ValidateParams(_Section):
    rules: Annotated[dict[str, SerializeAsAny[Rule]], BeforeValidator(_each_rule)] = Field(
        default_factory=lambda: dict(RulesParams().items()),
        description=f"Policy and threshold per rule; row rules: {', '.join(ROW_RULES)}; dataset rules: "
        f"{', '.join(DATASET_RULES)}.",
    )
    max_quarantine_fraction: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Gate: the run stops when more than this fraction of all rows is quarantined.",
    )
    min_rows: int = Field(default=50, ge=1, description="Gate: fewest rows that must pass.")
    min_rows_per_class: int = Field(
        default=5, ge=1, description="Rule too_few_rows_per_class: fewest passing rows per class (its policy decides)."
    )
    examples: int = Field(default=3, ge=0, le=50, description="Example rows shown per rule in reports and errors.")
    fixed_test: Literal["as_given", "checked"] = Field(
        default="as_given",
        description="Rows of a source's fixed test split (split: test) are the user's benchmark. as_given: they are "
        "scored as given; a row rule they break is reported, not enforced (only a test row without text, "
        "without a label or with a label outside data.labels is set aside: it cannot be scored), and of a "
        "text in train and test the train copy is the one set aside. checked: the rules apply to them as "
        "to every other row.",
    )
    drift: DriftParams = Field(
        default_factory=DriftParams, description="Drift of the passing rows against the champion's data."
    )

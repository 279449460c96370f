"""model.kind: the model section's class per kind, and the candidates of kind auto.

params.yaml's model section is one of `MODEL_SECTIONS` (a discriminated union on model.kind, auto when it is left
out): each is ModelParams with the keys of other kinds refused naming the key and the kind (`model.n_layers:
model.kind bag takes no n_layers ...`). Kind auto takes every kind's keys: they are the settings its candidates
start from. A candidate of model.candidates is a class per kind as well, with only that kind's keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    SerializeAsAny,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo

from bigmodel_core.config.base import _Section, refuse_key
from bigmodel_core.config.model import (
    CANDIDATE_KINDS,
    COMMON_KEYS,
    KIND_KEYS,
    MODEL_KINDS,
    TRANSFORMER_MIN_ROWS,
    ModelParams,
)
from bigmodel_core.config.train import TrainParams, TuneParams
from bigmodel_core.errors import ConfigError

if TYPE_CHECKING:
    from bigmodel_core.config.params import Params

#: Where a bag candidate starts, before its own keys: the settings every bag recipe in examples/ shares. The model
#: and train sections' defaults are the transformer's (a d_model of 128 and AdamW's lr 1e-3 starve a sparse table).
BAG_PRESET = {
    "model": {"d_model": 32, "dropout": 0.0},
    "train": {
        "lr": 0.01,
        "weight_decay": 0.0,
        "grad_clip": 0.0,
        "epochs": 5,
        "warmup_fraction": 0.05,
        "checkpoint_every": 0,
    },
}


class _CandidateBase(_Section):
    if TYPE_CHECKING:  # each kind's class (_candidate_class) declares it, as that kind's Literal
        kind: str
    name: str | None = Field(
        default=None,
        min_length=1,
        description="Name in logs and tables (default: the kind, numbered when a kind repeats).",
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="train section keys for this candidate only (lr, epochs, batch_size, ...)."
    )

    @field_validator("train")
    @classmethod
    def _train_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(TrainParams.model_fields))
        if unknown:
            raise ValueError(f"unknown train key(s) {unknown}")
        if "tune" in v or "nproc" in v:
            raise ValueError("train.tune and train.nproc are set for all candidates, in the train section")
        try:
            TrainParams.model_validate(v)
        except ValidationError as e:
            raise ValueError(
                "; ".join(f"train.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            ) from None
        return v


def _candidate_class(kind: str) -> type[_CandidateBase]:
    """The candidate of one kind: its model keys are ModelParams' own fields (same types, limits and descriptions),
    optional, so that a key it leaves out comes from the model section."""

    fields: dict[str, Any] = {"kind": (Literal[kind], Field(description="The model kind of this candidate."))}
    for key in KIND_KEYS[kind]:
        info = ModelParams.model_fields[key]
        assert info.annotation is not None  # every ModelParams field is annotated
        fields[key] = (info.annotation | None, FieldInfo.merge_field_infos(info, default=None))
    return create_model(f"{kind.capitalize()}Candidate", __base__=_CandidateBase, **fields)


LinearCandidate, BagCandidate, TransformerCandidate, PretrainedCandidate = map(_candidate_class, CANDIDATE_KINDS)
if TYPE_CHECKING:  # classes made at run time: to the type checker, each is a _CandidateBase
    Candidate = _CandidateBase
else:
    Candidate = Annotated[
        LinearCandidate | BagCandidate | TransformerCandidate | PretrainedCandidate, Field(discriminator="kind")
    ]
ModelParams.model_rebuild()


def _section_class(kind: str) -> type[ModelParams]:
    """The model section of one kind: ModelParams with the keys of the other kinds refused (auto takes them all)."""
    own = set(ModelParams.model_fields) if kind == "auto" else {*COMMON_KEYS, *KIND_KEYS[kind]}
    fields: dict[str, Any] = {}
    for key, info in ModelParams.model_fields.items():
        if key == "kind":
            fields[key] = (Literal[kind], FieldInfo.merge_field_infos(info, default=kind))
        elif key not in own:
            takes = ", ".join(sorted(set(KIND_KEYS[kind]) | {"selection"}))
            why = refuse_key(f"model.kind {kind} takes no {key} (its keys: {takes})", allow_null=key == "candidates")
            fields[key] = (
                Annotated[info.annotation, BeforeValidator(why)],
                FieldInfo.merge_field_infos(info, exclude=True),
            )
    return create_model(f"{kind.capitalize()}Model", __base__=ModelParams, __doc__=f"model.kind {kind}.", **fields)


#: The model section's class per kind.
MODEL_SECTIONS: dict[str, type[ModelParams]] = {kind: _section_class(kind) for kind in MODEL_KINDS}


def _kind_of(v: Any) -> str:
    kind = v.get("kind", "auto") if isinstance(v, dict) else getattr(v, "kind", None)
    return kind if kind in MODEL_SECTIONS else "any"  # any: ModelParams, whose kind field names the allowed kinds


def as_section(v: Any) -> Any:
    """A ModelParams built in code (candidate_params, tests) checked as its kind's section: its given keys."""
    if isinstance(v, ModelParams) and type(v) is ModelParams:
        return v.model_dump(exclude_unset=True) | {"kind": v.kind}
    return v


_TAGGED = tuple(Annotated[cls, Tag(kind)] for kind, cls in {"any": ModelParams, **MODEL_SECTIONS}.items())
#: The model section's classes as a discriminated union on model.kind (auto when left out).
_UNION: Any = Annotated[Union[_TAGGED], Discriminator(_kind_of), BeforeValidator(as_section)]  # noqa: UP007
MODEL_UNION: TypeAdapter[ModelParams] = TypeAdapter(_UNION)


def _as_kind(v: Any) -> Any:
    return MODEL_UNION.validate_python(v)


#: Params.model: a ModelParams (what code and the reference see) validated through MODEL_UNION, so that it is the
#: class of its kind; an error's location carries the kind's tag (model.bag.n_layers), which the loader drops.
#: Dumps are the kind's (SerializeAsAny): its own keys, so that a dumped section loads again.
ModelSection = Annotated[SerializeAsAny[ModelParams], BeforeValidator(_as_kind)]


def default_candidates(train_rows: int, gpu: bool) -> list[_CandidateBase]:
    """model.candidates null: linear and bag, and the transformer on a GPU or from TRANSFORMER_MIN_ROWS rows on."""
    out = [LinearCandidate(kind="linear"), BagCandidate(kind="bag")]
    if gpu or train_rows >= TRANSFORMER_MIN_ROWS:
        out.append(TransformerCandidate(kind="transformer"))
    return out


def candidate_names(candidates: list[_CandidateBase]) -> list[str]:
    """Each candidate's name: its own, else its kind, numbered from the second of a kind on (bag, bag-2)."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for c in candidates:
        seen[c.kind] = seen.get(c.kind, 0) + 1
        names.append(c.name or (c.kind if seen[c.kind] == 1 else f"{c.kind}-{seen[c.kind]}"))
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"model.candidates: names must be unique, repeated: {dup}")
    return names


def candidate_params(
    params: Params, candidate: _CandidateBase | None, extra_model: dict | None = None, extra_train: dict | None = None
) -> Params:
    """The params of one candidate as a single-kind model: the model and train sections, then the kind's preset
    (bag), then the candidate's own keys, then `extra_*` (a tuning trial's settings). candidate None: the model
    section's own kind (a single kind being tuned)."""
    kind = candidate.kind if candidate is not None else params.model.kind
    own = candidate.model_dump(exclude_unset=True, exclude={"name", "train", "kind"}) if candidate is not None else {}
    preset = BAG_PRESET if candidate is not None and kind == "bag" else {"model": {}, "train": {}}
    model = {
        **params.model.model_dump(exclude={"candidates"}),
        **preset["model"],
        **own,
        **(extra_model or {}),
        "kind": kind,
        "candidates": None,
    }
    train = {
        **params.train.model_dump(),
        **preset["train"],
        **(candidate.train if candidate is not None else {}),
        **(extra_train or {}),
    }
    train["tune"] = TuneParams()
    built = {}
    for section, cls, values in (("model", ModelParams, model), ("train", TrainParams, train)):
        try:
            built[section] = cls.model_validate(values)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join([section, *(str(x) for x in first["loc"])])
            raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    return params.model_copy(update=built)


def keys_left_by_kind_switch(kind: Any, present: list[str], overridden: set[str]) -> list[str]:
    """An override that switches model.kind (`-S model.kind=bag`) leaves the file's settings of the kind it had:
    the keys of `present` that the new kind does not take, except those the overrides set themselves (those are
    refused when the params are parsed). Kind auto takes every kind's keys; an unknown kind is left to the parser."""
    if kind == "auto" or kind not in KIND_KEYS:
        return []
    takes = {*COMMON_KEYS, *KIND_KEYS[kind]}
    return [k for k in present if k not in takes and k not in overridden]

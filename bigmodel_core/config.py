"""Typed view of params.yaml.

Every section of params.yaml has a model here; unknown keys are errors, and every error names
the YAML key path and the rule it broke (``train.lr: must be greater than 0, got -1``).
Params are loaded once by the caller and passed down; nothing here is global.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bigmodel_core.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- data
class Source(_Section):
    name: str = Field(description="Short name of the source, used in row ids, reports and errors.")
    path: str = Field(
        description="Local path or fsspec URL (glob allowed); 'builtin:demo' is the built-in demo corpus."
    )
    format: Literal["csv", "tsv", "parquet", "jsonl", "folder", "demo"] = Field(
        description="File format. 'folder': one file per row, label = parent folder (a folder or a .tar.gz)."
    )
    text: list[str] = Field(
        default_factory=lambda: ["text"],
        description="Column(s) that make the text; several are joined with text_separator.",
    )
    text_separator: str = Field(default=" ", description="String put between several text columns.")
    label: str = Field(default="label", description="Column that holds the label (ignored for 'folder').")
    columns: list[str] | None = Field(
        default=None, description="Column names for csv/tsv files without a header row; null = first row is a header."
    )
    label_map: dict[str, str] | None = Field(
        default=None, description="Maps raw label values to class names; for 'folder', also selects the folders read."
    )
    split: Literal["train", "val", "test"] | None = Field(
        default=None,
        description="Fixed split for every row of this source; null = assigned by the split stage. "
        "A dataset with rows of split val (its own validation set) keeps all its train rows for training: none "
        "are carved out for validation.",
    )
    file_glob: str = Field(default="*.txt", description="For 'folder': which files are rows.")
    delimiter: str | None = Field(
        default=None,
        min_length=1,
        max_length=1,
        description="For csv: the field separator (default ','; tsv is always a tab).",
    )
    encoding: str = Field(
        default="utf-8",
        description="Text encoding of csv/tsv/jsonl files and folder members (utf-8, utf-16, latin-1, cp1252, ...).",
    )
    undecodable: Literal["fail", "quarantine"] = Field(
        default="fail",
        description="Bytes that are not valid in `encoding`: fail stops ingest naming the byte and line; quarantine "
        "replaces them (U+FFFD) and validate's rule undecodable sets those rows aside.",
    )
    max_line_bytes: int = Field(
        default=10_000_000,
        ge=1000,
        description="A longer line stops ingest: a file without line breaks, or a quote that swallowed the rest.",
    )
    rows: int = Field(default=3000, ge=100, description="For 'demo': how many rows to generate (at least 100).")
    seed: int = Field(default=7, description="For 'demo': generator seed.")

    @field_validator("text", mode="before")
    @classmethod
    def _text_as_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("text")
    @classmethod
    def _text_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must name at least one column")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            return codecs.lookup(v).name
        except LookupError:
            raise ValueError(f"unknown encoding {v!r} (utf-8, utf-16, latin-1, cp1252, ...)") from None

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_keys_as_str(cls, v: Any) -> Any:
        # YAML reads `1: World` with an int key; raw labels are compared as strings.
        if isinstance(v, dict):
            return {str(k): str(val) for k, val in v.items()}
        return v


class DataParams(_Section):
    sources: list[Source] = Field(min_length=1, description="Where the rows come from; all sources are concatenated.")
    labels: list[str] | None = Field(
        default=None,
        description="The label set; rows with another label are quarantined. null = every label seen is valid.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> DataParams:
        names = [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique, repeated: {sorted(dup)}")
        return self


# --------------------------------------------------------------------------- clean
class CleanParams(_Section):
    unescape_html: bool = Field(default=True, description="Turn HTML entities (&amp;, &#39;) into characters.")
    repair_entities: bool = Field(
        default=True, description="Also repair entities that lost their '&' (AG News: '#39;', 'quot;')."
    )
    strip_html: bool = Field(default=True, description="Replace HTML tags with a space.")
    normalize_whitespace: bool = Field(default=True, description="Collapse runs of whitespace, trim the ends.")
    lowercase: bool = Field(default=False, description="Lowercase the text (the tokenizer may lowercase anyway).")
    max_chars: int = Field(default=4000, gt=0, description="Truncate longer texts to this many characters.")


# --------------------------------------------------------------------------- validate
#: Row rules mark rows (policy quarantine, fail or warn); they are checked in this order and a row is
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
#: would have set aside in its training (data/quality.py: text_verdicts).
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


def default_rule(name: str) -> Rule:
    """What a rule does when params.yaml does not mention it."""
    return {
        "too_short": Rule(policy="warn", min_chars=2),
        "too_long": Rule(policy="warn", max_words=5000),
        "control_chars": Rule(policy="quarantine"),
        "html_left": Rule(policy="warn"),
        "near_duplicate": Rule(policy="warn", min_jaccard=0.8, shingle_words=3),
        # rows whose label a cross-validated cheap model confidently contradicts (confident learning);
        # max_fraction (of the rows checked) is a gate for badly broken labels, such as a shifted label column
        "label_noise": Rule(policy="warn", max_fraction=0.3, folds=5, sample_rows=20_000),
        "class_imbalance": Rule(policy="warn", max_ratio=20.0),
        "too_few_rows_per_class": Rule(policy="fail"),
        # share of passing rows longer (in words) than tokenizer.max_length: the model sees only their start
        "truncated": Rule(policy="warn", max_fraction=0.2),
    }.get(name, Rule())


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
    rules: dict[str, Rule] = Field(
        default_factory=lambda: {r: default_rule(r) for r in RULES},
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

    @field_validator("rules", mode="before")
    @classmethod
    def _fill_defaults(cls, v: Any) -> Any:
        # a rule named with only some keys keeps the rule's own defaults for the others
        if isinstance(v, dict):
            out = {}
            for name, given in v.items():
                if isinstance(given, dict) and name in RULES:
                    base = default_rule(name).model_dump(exclude_none=True)
                    out[name] = {**base, **given}
                else:
                    out[name] = given
            return out
        return v

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v: dict[str, Rule]) -> dict[str, Rule]:
        unknown = sorted(set(v) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule(s) {unknown}; known rules: {list(RULES)}")
        for name, rule in v.items():
            extra = {
                k
                for k in (
                    "min_chars",
                    "min_words",
                    "max_chars",
                    "max_words",
                    "max_ratio",
                    "min_jaccard",
                    "shingle_words",
                    "folds",
                    "sample_rows",
                )
                if getattr(rule, k) is not None
            } - _RULE_SETTINGS.get(name, set())
            if extra:
                raise ValueError(
                    f"rule {name} takes no {', '.join(sorted(extra))} (only "
                    f"{', '.join(sorted(_RULE_SETTINGS.get(name, set()))) or 'policy and max_fraction'})"
                )
            if name in DATASET_RULES and rule.policy == "quarantine":
                raise ValueError(f"rule {name} judges the whole dataset: its policy is fail or warn, not quarantine")
        return {r: v.get(r, default_rule(r)) for r in RULES}


# --------------------------------------------------------------------------- augment
class AugmentParams(_Section):
    enabled: bool = Field(default=True, description="Make extra train-only variants of training rows.")
    copies: int = Field(default=1, ge=0, le=10, description="Variants per training row.")
    word_dropout: float = Field(default=0.1, ge=0, lt=1, description="Probability of dropping each word.")
    swap_prob: float = Field(default=0.1, ge=0, le=1, description="Probability of swapping each pair of neighbours.")
    seed: int = Field(default=13, description="Seed; each variant's randomness also depends on its row id.")


# --------------------------------------------------------------------------- split
class SplitParams(_Section):
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="Share of non-test rows that go to validation.")
    test_fraction: float = Field(
        default=0.15, gt=0, lt=1, description="Share of rows without a fixed split that go to test."
    )
    salt: str = Field(default="bigmodel-split-v1", description="Hash salt; changing it reshuffles every row.")

    @model_validator(mode="after")
    def _fractions(self) -> SplitParams:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self


# --------------------------------------------------------------------------- tokenizer / model / train
class TokenizerParams(_Section):
    kind: Literal["bpe", "wordpiece"] = Field(
        default="bpe",
        description="Subword algorithm for model.kind=transformer (tokenizers library). bpe trains deterministically; "
        "wordpiece's vocabulary can differ between runs on the same data (tokenizers issue 1794).",
    )
    vocab_size: int = Field(default=8000, ge=100, description="Target vocabulary size (transformer).")
    min_frequency: int = Field(default=2, ge=1, description="Fewest occurrences for a merge or piece (transformer).")
    lowercase: bool = Field(
        default=True, description="Lowercase (and strip accents) before tokenizing; bag and transformer."
    )
    max_length: int = Field(
        default=128, ge=8, description="Tokens per text after truncation (transformer, pretrained)."
    )
    truncation: Literal["head", "tail", "head_tail"] = Field(
        default="head",
        description="Which tokens a long text keeps: the first max_length, the last, or the first quarter plus the "
        "last three quarters (head_tail; helps reviews, whose verdict is often at the end).",
    )


#: model.kind auto: the default candidates include the transformer (on a CPU) from this many original train rows on
#: (below it, a transformer trained from scratch lost to TF-IDF + LR on every dataset of docs/benchmarks.md)
TRANSFORMER_MIN_ROWS = 100_000


class ModelParams(_Section):
    kind: Literal["auto", "linear", "bag", "transformer", "pretrained"] = Field(
        default="auto",
        description="auto: train every candidate of model.candidates on the train split and keep the best by "
        "validation macro-F1 (ties: the cheaper kind); linear: TF-IDF n-grams + logistic regression (scikit-learn, "
        "seconds on a CPU); bag: fastText-style hashed n-grams (seconds on a CPU); transformer: encoder from scratch "
        "over the trained tokenizer; pretrained: fine-tune the Hugging Face encoder named by model.backbone.",
    )
    candidates: list[Candidate] | None = Field(
        default=None,
        description="model.kind auto: the candidates, each a kind with its own settings (the keys of that kind, "
        "`train:` keys, augmented_rows, name); a key a candidate leaves out comes from the model and train sections "
        "(a bag starts from BAG_PRESET). null: linear and bag, and the transformer too when training runs on a GPU or "
        f"the train split has at least {TRANSFORMER_MIN_ROWS:,} original rows.",
    )
    selection: Literal["one_se", "best"] = Field(
        default="one_se",
        description="auto (and the trials of train.tune): one_se: the cheapest candidate whose validation macro-F1 is "
        "within one standard error of the best's (paired bootstrap over the validation rows), so a difference the "
        "validation split cannot resolve goes to the cheaper model (and to the settings as written over a trial); "
        "best: the highest validation macro-F1 wins outright (an exact tie still goes to the cheaper).",
    )
    augmented_rows: bool | None = Field(
        default=None,
        description="Train on the augment stage's variants as well as the original rows; null: no for linear "
        "(TF-IDF gains nothing from dropped or swapped words), yes for the other kinds. A setting that tuning tries.",
    )
    # transformer
    d_model: int = Field(default=128, ge=8, description="Hidden size (bag: embedding size).")
    n_layers: int = Field(default=2, ge=1, description="Encoder layers (transformer).")
    n_heads: int = Field(default=4, ge=1, description="Attention heads; must divide d_model (transformer).")
    d_ff: int = Field(default=256, ge=8, description="Feed-forward size (transformer).")
    dropout: float = Field(
        default=0.1, ge=0, lt=1, description="Dropout on embeddings, residual branches and the head."
    )
    attention_dropout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Dropout on attention probabilities (transformer). Above 0 it disables the fused attention "
        "kernels: about 5x slower per step at 512 tokens.",
    )
    token_dropout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Probability that a token's embedding is zeroed in a training step (transformer): fresh word "
        "dropout every epoch, a regulariser for small data.",
    )
    pooling: Literal["mean", "max", "cls"] = Field(
        default="mean",
        description="How token states become one vector: their mean, their maximum, or the [CLS] state (transformer).",
    )
    # bag and linear
    ngrams: int = Field(
        default=2,
        ge=1,
        le=5,
        description="Word n-grams 1..ngrams: hashed into buckets (bag), TF-IDF features (linear).",
    )
    char_ngrams: list[int] | None = Field(
        default=None,
        description="[min, max] character n-gram lengths inside word boundaries, or null for none (bag; linear: a "
        "second TF-IDF block of them).",
    )
    # linear
    C: float = Field(
        default=10.0, gt=0, description="Inverse regularisation strength of the logistic regression (linear)."
    )
    min_df: int = Field(
        default=2,
        ge=1,
        description="Fewest training texts an n-gram must occur in to be a feature (linear; 1 when that leaves none).",
    )
    sublinear_tf: bool = Field(default=True, description="Weigh a term's count as 1 + log(count) (linear).")
    # bag
    buckets: int = Field(
        default=1 << 18,
        ge=1024,
        description="Hash buckets, i.e. rows of the n-gram embedding table (bag); 2^20 for big corpora.",
    )
    counts: Literal["raw", "log", "binary"] = Field(
        default="log", description="How an n-gram's count in a text weighs: as is, 1+log(count), or 1 (bag)."
    )
    bag_pooling: Literal["mean", "sum"] = Field(
        default="mean", description="Average the n-gram vectors (weights normalised to sum to 1) or add them (bag)."
    )
    # pretrained
    backbone: str | None = Field(
        default=None,
        description="pretrained: a local directory with a Hugging Face model and tokenizer, or a hub name such as "
        "bert-base-uncased (needs `pip install bigmodel[hf]` and, for a hub name, network access once).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelParams:
        if self.kind == "transformer" and self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        if self.char_ngrams is not None and (
            len(self.char_ngrams) != 2 or not 1 <= self.char_ngrams[0] <= self.char_ngrams[1] <= 10
        ):
            raise ValueError(f"char_ngrams must be [min, max] with 1 <= min <= max <= 10, got {self.char_ngrams}")
        if self.kind == "pretrained" and not self.backbone:
            raise ValueError("kind 'pretrained' needs model.backbone (a local directory or a hub name)")
        if self.kind == "auto" and self.candidates is not None and not self.candidates:
            raise ValueError("candidates is an empty list: name at least one, or null for the default ones")
        return self


# --------------------------------------------------------------------------- model.kind auto: the candidates
#: The kinds a candidate may be, cheapest first: a tie on validation macro-F1 goes to the earlier one.
CANDIDATE_KINDS = ("linear", "bag", "transformer", "pretrained")
#: The model keys each kind reads; a candidate of that kind takes these and no others.
KIND_KEYS = {
    "linear": ("ngrams", "char_ngrams", "min_df", "sublinear_tf", "C", "augmented_rows"),
    "bag": ("d_model", "dropout", "ngrams", "char_ngrams", "buckets", "counts", "bag_pooling", "augmented_rows"),
    "transformer": (
        "d_model",
        "n_layers",
        "n_heads",
        "d_ff",
        "dropout",
        "attention_dropout",
        "token_dropout",
        "pooling",
        "augmented_rows",
    ),
    "pretrained": ("backbone", "augmented_rows"),
}
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
    from pydantic import create_model
    from pydantic.fields import FieldInfo

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


class TuneParams(_Section):
    trials: int = Field(
        default=0,
        ge=0,
        description="Most Optuna trials per candidate (each trains a model on the train split and scores it on the "
        "validation split); the first trial is the candidate's settings as written. 0 and minutes null: no tuning.",
    )
    minutes: float | None = Field(
        default=None,
        gt=0,
        description="Wall-clock budget of all tuning, shared by the candidates (cheapest first; each gets an equal "
        "share of what is left). A time budget makes the number of trials depend on the machine's speed: set trials "
        "alone for a choice that a rerun repeats.",
    )


class TrainParams(_Section):
    epochs: int = Field(default=4, ge=1, description="Passes over the training split.")
    batch_size: int = Field(default=32, ge=1, description="Rows per micro-batch (all processes together).")
    token_budget: int = Field(
        default=0,
        ge=0,
        description="If > 0, micro-batches are cut by size instead: rows x longest row <= token_budget (batch_size "
        "is then ignored).",
    )
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches per optimizer step (gradient accumulation).")
    lr: float = Field(
        default=1e-3, gt=0, description="Peak learning rate (AdamW; SparseAdam for the bag's n-gram table)."
    )
    weight_decay: float = Field(
        default=0.01, ge=0, description="AdamW weight decay (not applied to embeddings, norms, biases)."
    )
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1, description="Share of optimizer steps with linear warm-up.")
    schedule: Literal["linear", "cosine", "constant"] = Field(
        default="linear", description="Learning-rate decay after warm-up: linear or cosine to zero, or constant."
    )
    grad_clip: float = Field(default=1.0, ge=0, description="Clip the gradient norm to this (0 = off).")
    label_smoothing: float = Field(default=0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    class_weights: Literal["none", "balanced"] = Field(
        default="none", description="balanced: weigh each class by n_rows / (n_classes * class_rows) in the loss."
    )
    patience: int = Field(
        default=2, ge=0, description="Stop after this many epochs without a better val macro-F1 (0 = off)."
    )
    max_steps: int = Field(default=0, ge=0, description="Stop after this many optimizer steps (0 = run every epoch).")
    seed: int = Field(default=42, description="Seed for weights, batch order and dropout.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto", description="auto = cuda when available, else cpu."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto = bf16 autocast on CUDA, fp32 elsewhere."
    )
    compile: bool = Field(default=False, description="torch.compile the model (CUDA only; ignored on CPU).")
    num_threads: int = Field(default=0, ge=0, description="CPU threads for torch (0 = torch's default).")
    nproc: int = Field(
        default=1,
        ge=1,
        description="Processes for data-parallel training (DDP; one per GPU, or gloo on CPU). >1: the train stage "
        "launches torchrun itself.",
    )
    log_every: int = Field(
        default=50, ge=1, description="Report loss, lr, grad norm and tokens/s every this many steps."
    )
    checkpoint_every: int = Field(
        default=500,
        ge=0,
        description="Save a resumable checkpoint every this many optimizer steps and at each epoch end "
        "(0 = no checkpoints: for runs of seconds, where writing them costs more than redoing the work).",
    )
    tune: TuneParams = Field(
        default_factory=TuneParams,
        description="Search each candidate's main settings on the validation split with Optuna (TPE, seeded by "
        "train.seed); off by default.",
    )


class EvaluateParams(_Section):
    min_accuracy: float = Field(default=0.5, ge=0, le=1, description="Gate: lowest test accuracy that may be promoted.")
    min_macro_f1: float = Field(default=0.5, ge=0, le=1, description="Gate: lowest test macro-F1 that may be promoted.")
    max_regression: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Gate: the lower bound of the bootstrap interval of macro-F1(challenger) - macro-F1(champion), on "
        "the same test rows, must be >= -max_regression (not worse by more than this, with `confidence`).",
    )
    min_gain: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Gate: if set, that lower bound must be >= min_gain instead "
        "(better than the champion by this much).",
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Confidence of the bootstrap interval and of McNemar's test."
    )
    bootstrap_samples: int = Field(default=1000, ge=100, description="Paired bootstrap resamples of the test rows.")
    batch_size: int = Field(default=128, ge=1, description="Rows per inference batch.")
    slice_columns: list[str] = Field(
        default_factory=list,
        description="Test-split columns to slice by (one slice per value), "
        "besides the text-length quartiles and source.",
    )
    min_slice_rows: int = Field(
        default=30, ge=1, description="Gate: slices with fewer test rows are reported, not judged."
    )
    max_slice_regression: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Gate: on every slice, macro-F1(challenger) must be >= macro-F1(champion) - this; "
        "null = report only.",
    )
    baseline: bool = Field(
        default=True,
        description="Train the reference TF-IDF + logistic regression (model.kind linear with its default "
        "settings: word 1-2 grams, sublinear tf, min_df 2, C 10) on the non-augmented train rows and score it on the "
        "same test rows.",
    )
    min_gain_over_baseline: float | None = Field(
        default=-0.005,
        ge=-1,
        le=1,
        description="Gate: macro-F1(model) - macro-F1(baseline) must be >= this. The default, a small negative "
        "tolerance, closes the gate on a model clearly worse than the baseline; null = report only.",
    )
    max_latency_p95_ms: float | None = Field(
        default=None, gt=0, description="Gate: highest p95 latency of a one-text prediction, in ms; null = report only."
    )
    allow_label_change: bool = Field(
        default=False,
        description="Gate: a model whose label set differs from the champion's cannot be compared with it and is not "
        "promoted unless this is true (then the absolute thresholds alone decide).",
    )
    max_model_mb: float | None = Field(
        default=None, gt=0, description="Gate: largest model bundle on disk, in MB (10^6 bytes); null = report only."
    )

    @field_validator("slice_columns")
    @classmethod
    def _distinct_columns(cls, v: list[str]) -> list[str]:
        if any(not c for c in v) or len(set(v)) != len(v):
            raise ValueError(f"slice_columns must be distinct, non-empty column names, got {v}")
        return v

    @model_validator(mode="after")
    def _baseline_for_its_rule(self) -> EvaluateParams:
        if (
            self.min_gain_over_baseline is not None
            and not self.baseline
            and "min_gain_over_baseline" in self.model_fields_set
        ):  # its default bows to baseline: false
            raise ValueError("min_gain_over_baseline is set but baseline is false: the rule needs the baseline")
        return self


class DeployParams(_Section):
    model_name: str = Field(default="bigmodel-text-classifier", min_length=1, description="Registered model name.")
    champion_alias: str = Field(default="champion", description="Alias moved to a version that passes the gate.")
    challenger_alias: str = Field(default="challenger", description="Alias given to every newly registered version.")
    promote: Literal["auto", "never"] = Field(
        default="auto",
        description="auto: move the champion alias when the gate passes; never: only register (move it "
        "with `bigmodel promote`).",
    )
    promote_experiments: bool = Field(
        default=False,
        description="Experiments (runs under `dvc exp run`, or from a workspace whose code or params differ from the "
        "last git commit) register a version tagged as an experiment and never move the champion, unless this is true.",
    )
    allow_new_registry: bool = Field(
        default=False,
        description="Start a new, empty registry when the tracking database (sqlite) is missing although "
        "reports/deploy.json records a version registered in it (a deleted or moved mlflow.db). "
        "Off: stop with an error.",
    )
    git_commit: bool = Field(
        default=False,
        description="After a `bigmodel run` that registered a version: `dvc push` the data and model, commit "
        "dvc.yaml, dvc.lock, params.yaml, metrics/ and plots/, tag the commit model/<name>/v<version>, and record "
        "commit, tag and remote on the version (what `bigmodel verify-repro` reads). Needs a git repository whose "
        "inputs are committed.",
    )
    dvc_remote: str | None = Field(
        default=None,
        min_length=1,
        description="The DVC remote deploy.git_commit pushes to; null: the repository's default remote, or with none, "
        "a local folder remote at deploy.local_remote.",
    )
    local_remote: str = Field(
        default=".bigmodel/dvc-storage",
        min_length=1,
        description="Folder of the local DVC remote used when the repository has no default remote (relative: to the "
        "workspace). For storage that outlives this machine configure one: `dvc remote add -d store s3://bucket/path`.",
    )


class TrackingParams(_Section):
    uri: str = Field(
        default="sqlite:///mlflow.db", description="MLflow tracking URI; the MLFLOW_TRACKING_URI variable overrides it."
    )
    experiment: str = Field(default="bigmodel", description="MLflow experiment name.")
    artifact_root: str = Field(
        default="mlartifacts",
        description="Where a new experiment keeps artifacts (local path) "
        "with a local store (SQLite); a tracking server (http/https) uses its own artifact root.",
    )


class FlowParams(_Section):
    retries: int = Field(
        default=1, ge=0, description="Retries of a stage that failed for a reason other than bad input or a gate."
    )
    retry_delay_seconds: float = Field(default=5, ge=0, description="Wait between retries.")


def _apprise_url(url: str) -> str:
    # Apprise is imported only when a URL is configured: loading its plugins costs about half a second.
    from bigmodel_core.notify import url_problem

    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    return url


NotifyEvent = Literal["gate_closed", "failure", "promotion"]


class NotifyParams(_Section):
    urls: list[Annotated[str, AfterValidator(_apprise_url)]] = Field(
        default_factory=list,
        description="Apprise URLs that get a message (json://host:port/path, slack://..., mailto://...); ${VAR} is "
        "read from the environment when sending, so secrets stay out of params.yaml; empty = no notifications.",
    )
    on: list[NotifyEvent] = Field(
        default_factory=lambda: list(get_args(NotifyEvent)),
        description="Events that send a message: a quality gate stopped the run, a run failed, a model was promoted.",
    )
    timeout_seconds: float = Field(
        default=10, gt=0, description="Per URL: longest wait to connect, and again for the reply (Apprise cto/rto)."
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_on_key(cls, v: Any) -> Any:
        # YAML 1.1 (PyYAML) reads an unquoted `on:` key as the boolean true. Take it as `on`; if both are there,
        # the string key came from an override (-S notify.on=...) and wins.
        if isinstance(v, dict) and True in v:
            v = dict(v)
            bare = v.pop(True)
            v.setdefault("on", bare)
        return v


class Params(_Section):
    data: DataParams
    clean: CleanParams = CleanParams()
    validate_: ValidateParams = Field(default=ValidateParams(), alias="validate")
    augment: AugmentParams = AugmentParams()
    split: SplitParams = SplitParams()
    tokenizer: TokenizerParams = TokenizerParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    deploy: DeployParams = DeployParams()
    tracking: TrackingParams = TrackingParams()
    flow: FlowParams = FlowParams()
    notify: NotifyParams = NotifyParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, protected_namespaces=())

    @model_validator(mode="after")
    def _across_sections(self) -> Params:
        if self.model.kind == "bag" and self.train.nproc > 1:
            raise ValueError(
                f"train.nproc is {self.train.nproc}, but model.kind bag trains in one process (its sparse "
                "n-gram table does not work with DDP): set train.nproc to 1"
            )
        tuning = self.train.tune.trials > 0 or self.train.tune.minutes is not None
        if self.train.nproc > 1 and (self.model.kind in ("auto", "linear") or tuning):
            what = (
                "tuning (train.tune)"
                if tuning and self.model.kind not in ("auto", "linear")
                else f"model.kind {self.model.kind}"
            )
            raise ValueError(
                f"train.nproc is {self.train.nproc}, but {what} trains in one process (DDP is for one "
                "neural model): set train.nproc to 1"
            )
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


# --------------------------------------------------------------------------- loading
def _format_error(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]).replace(".[", "[")
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
    """Return a copy of raw with each override set; the key must exist in the schema (checked on parse)."""
    out = copy.deepcopy(raw)
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
    return out

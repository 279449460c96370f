"""model: the settings of every model kind, and which kind reads which.

`ModelParams` holds every kind's settings (the zoo reads a resolved ModelParams); params.yaml's model section is
validated as one of the per-kind classes of `kinds.py` (a discriminated union on model.kind), which refuse a key
of another kind naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from bigmodel_core.config.base import _Section

if TYPE_CHECKING:
    from bigmodel_core.config.kinds import Candidate

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


#: The kinds a candidate may be, cheapest first: a tie on validation macro-F1 goes to the earlier one.
CANDIDATE_KINDS = ("linear", "bag", "transformer", "pretrained")
#: Every value of model.kind.
MODEL_KINDS = ("auto", *CANDIDATE_KINDS)
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
#: The model keys every kind takes besides its own: how its candidates (tuning trials too) are chosen.
COMMON_KEYS = ("kind", "selection")

"""clean, augment, split and tokenizer: the sections of the steps between the raw rows and the model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bigmodel_core.config.base import _Section


class CleanParams(_Section):
    unescape_html: bool = Field(default=True, description="Turn HTML entities (&amp;, &#39;) into characters.")
    repair_entities: bool = Field(
        default=True, description="Also repair entities that lost their '&' (AG News: '#39;', 'quot;')."
    )
    strip_html: bool = Field(default=True, description="Replace HTML tags with a space.")
    normalize_whitespace: bool = Field(default=True, description="Collapse runs of whitespace, trim the ends.")
    lowercase: bool = Field(default=False, description="Lowercase the text (the tokenizer may lowercase anyway).")
    max_chars: int = Field(default=4000, gt=0, description="Truncate longer texts to this many characters.")


class AugmentParams(_Section):
    enabled: bool = Field(default=True, description="Make extra train-only variants of training rows.")
    copies: int = Field(default=1, ge=0, le=10, description="Variants per training row.")
    word_dropout: float = Field(default=0.1, ge=0, lt=1, description="Probability of dropping each word.")
    swap_prob: float = Field(default=0.1, ge=0, le=1, description="Probability of swapping each pair of neighbours.")
    seed: int = Field(default=13, description="Seed; each variant's randomness also depends on its row id.")


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

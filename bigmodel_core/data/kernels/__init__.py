"""Compiled loops (numba) over the UTF-8 bytes of a text column, for the per-word work that array passes do
badly: MinHash signatures with the word counts and vocabulary that come with them (validate), and the
word-dropout variants of augment. Each computes exactly the numbers of its row-by-row definition (word hashes
and text keys: hashing.word_hash and text_key; signatures: minhash's docstring; variants: augment.variant;
the mixing function and its constants: hashing.mix), in one pass over the bytes where the array passes they
replace made a dozen over per-word arrays (at a million rows, measured alternating with the numpy version:
validate 1.24x and augment 1.37x less CPU time). tests/test_kernels.py, tests/test_vectorized_text.py and
tests/test_split_augment.py compare them with their definitions.

Everything here is uint64 arithmetic modulo 2^64: a signed operand would make numba compute in float64, so
every constant and operand is cast to uint64 explicitly. Compiled code is cached on disk (cache=True); the
first call in a fresh install compiles for a few seconds.
"""

from __future__ import annotations

from bigmodel_core.data.kernels.base import (
    CASEFOLD,
    CONTROL,
    FOLD_LIMIT,
    FOLDS_OTHERWISE,
    MARKUP,
    REPLACEMENT,
    fold_table,
    gather,
    grown,
    mix,
)
from bigmodel_core.data.kernels.layout import entity_candidates, layout
from bigmodel_core.data.kernels.scan import text_scan
from bigmodel_core.data.kernels.variants import word_variants

__all__ = [
    "CASEFOLD",
    "CONTROL",
    "FOLDS_OTHERWISE",
    "FOLD_LIMIT",
    "MARKUP",
    "REPLACEMENT",
    "entity_candidates",
    "fold_table",
    "gather",
    "grown",
    "layout",
    "mix",
    "text_scan",
    "word_variants",
]

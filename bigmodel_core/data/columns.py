"""Text operations over a whole column, equal to their row-by-row Python definitions.

Pure-ASCII texts (the bulk of most corpora) go through pyarrow's kernels with patterns written to match, on
ASCII, exactly what the Python ones match (Python's \\s, \\d and str.split() are Unicode-aware, RE2's are
ASCII); every other text goes through the Python definition. tests/test_vectorized_text.py checks each one
against its Python definition on adversarial samples.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigmodel_core.data.cleaning import WS_CHARS

_WS_ALL = " " + WS_CHARS  # Python's \s (str.isspace), for RE2


def as_array(texts) -> pa.Array:
    """A large_string array from a pyarrow array, a pandas Series or a list (NaN/None become null)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts.cast(pa.large_string())
    if hasattr(texts, "to_numpy"):  # a pandas Series (Arrow-backed str: no copy to Python strings); NaN -> null
        return pa.array(texts, from_pandas=True).cast(pa.large_string())
    return pa.array(texts, type=pa.large_string())


def _routed(arr: pa.Array, fast: Callable[[pa.Array], pa.Array], slow: Callable[[str], object], dtype) -> np.ndarray:
    """fast() over the ASCII texts, slow() over the others; nulls count as empty text."""
    arr = pc.fill_null(arr, "")
    ascii_ = pc.string_is_ascii(arr).to_numpy(zero_copy_only=False)
    out = np.array(fast(arr).to_numpy(zero_copy_only=False), dtype=dtype)  # a writable copy
    others = np.nonzero(~ascii_)[0]
    if len(others):
        values = pc.take(arr, pa.array(others)).to_pylist()
        out[others] = np.fromiter((slow(t) for t in values), dtype=dtype, count=len(values))
    return out


def word_counts(arr: pa.Array) -> np.ndarray:
    """len(text.split()) per text (0 for null)."""
    return pc.count_substring_regex(pc.fill_null(arr, ""), f"[^{_WS_ALL}]+").to_numpy(zero_copy_only=False).astype(np.int64)


def char_counts(arr: pa.Array) -> np.ndarray:
    """len(text) per text in code points (0 for null)."""
    return pc.utf8_length(pc.fill_null(arr, "")).to_numpy(zero_copy_only=False).astype(np.int64)


def blank(arr: pa.Array) -> np.ndarray:
    """text is None or text.strip() == ''."""
    return pc.match_substring_regex(pc.fill_null(arr, ""), f"^[{_WS_ALL}]*$").to_numpy(zero_copy_only=False)


def contains(arr: pa.Array, python: re.Pattern, re2: str) -> np.ndarray:
    """bool(python.search(text)); re2 must match the same on ASCII text."""
    return _routed(arr, lambda a: pc.match_substring_regex(a, re2), lambda t: python.search(t) is not None, bool)


def normalized(arr: pa.Array) -> list[str]:
    """cleaning.normalize_key per text: case-folded, whitespace runs made one space, stripped."""
    from bigmodel_core.data.cleaning import _WS_RUN, normalize_key

    arr = pc.fill_null(arr, "")
    ascii_ = pc.string_is_ascii(arr).to_numpy(zero_copy_only=False)
    # casefold() is lower() on ASCII
    fast = pc.utf8_trim(pc.replace_substring_regex(pc.ascii_lower(arr), _WS_RUN, " "), " ").to_pylist()
    for i in np.nonzero(~ascii_)[0].tolist():
        fast[i] = normalize_key(arr[i].as_py())
    return fast


def group_keys(arr: pa.Array) -> list[str]:
    """quality.group_key per text: the first 20 hex digits of SHA-1 of the normalised text."""
    return [hashlib.sha1(t.encode()).hexdigest()[:20] for t in normalized(arr)]


def words_lower(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """All words of all texts, lower-cased, flattened; and the word count of each text. Used by the data
    profile (a statistic: Unicode whitespace and lower() as pyarrow defines them)."""
    lists = pc.utf8_split_whitespace(pc.utf8_lower(pc.fill_null(arr, "")))
    return lists.flatten(), pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)

"""Text operations over a whole column, equal to their row-by-row Python definitions.

Whitespace is spelled out as the characters Python's \\s matches, so word splits are exact for every
text in pyarrow; Python's \\d is spelled out the same way (python_class), so the text rules' patterns run
in RE2 on every text. Group keys split and hash in one compiled pass (minhash.Scanner); only casefold() of
non-ASCII text runs in Python.
tests/test_vectorized_text.py checks each one against its Python definition on adversarial samples.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def as_array(texts) -> pa.Array:
    """A large_string array from a pyarrow array, a pandas Series or a list (NaN/None become null)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts.cast(pa.large_string())
    if hasattr(texts, "to_numpy"):  # a pandas Series (Arrow-backed str: no copy to Python strings); NaN -> null
        return as_array(pa.array(texts, from_pandas=True))  # chunked when the Series is
    return pa.array(texts, type=pa.large_string())


def byte_view(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """numpy views of a large_string array's buffers, for the compiled loops (kernels): offsets (len + 1
    int64, into data) and data (the UTF-8 bytes). A null reads as "" (its offsets are equal)."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    raw = arr.buffers()[2]
    return offsets, (np.frombuffer(raw, dtype=np.uint8) if raw is not None and raw.size else np.zeros(1, np.uint8))


def split_words(arr: pa.Array, lower: bool = False) -> tuple[pa.Array, np.ndarray]:
    r"""text.split() (of text.lower() with lower, as pyarrow lower-cases) of every text, flattened into one
    array, and the number of words of each text. Whitespace runs (Python's \s, spelled out for RE2) become
    one space and the text is split on that space: pyarrow 25's utf8_split_whitespace was seen to keep a
    trailing space in a word now and then (a read past the end of the buffer), so it is not used."""
    from bigmodel_core.data.charset import WS_RUN_RE2

    arr = pc.fill_null(as_array(arr), "")
    if lower:
        arr = pc.utf8_lower(arr)
    spaced = pc.utf8_trim(pc.replace_substring_regex(arr, WS_RUN_RE2, " "), " ")
    lists = pc.split_pattern(spaced, " ")
    flat = lists.flatten()
    keep = pc.greater(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)
    offsets = lists.offsets.to_numpy().astype(np.int64)
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    counts = kept_before[offsets[1:] - offsets[0]] - kept_before[offsets[:-1] - offsets[0]]
    return flat.filter(pa.array(keep)), counts


def contains(arr: pa.Array, re2: str) -> np.ndarray:
    """re.search(pattern, text) is not None per text (null: False), where re2 spells the Python pattern
    for RE2 (code points, with Python's Unicode classes written out; see python_class)."""
    return pc.fill_null(pc.match_substring_regex(arr, re2), False).to_numpy(zero_copy_only=False)


@functools.cache
def python_class(test) -> str:
    """The body of an RE2 character class holding exactly the code points where test(chr) is true (e.g.
    str.isdecimal for Python's \\d), as ranges."""
    ranges: list[list[int]] = []
    for c in range(0x110000):
        if test(chr(c)):
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    return "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" if a != b else f"\\x{{{a:x}}}" for a, b in ranges)


def words_lower(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """All words of all texts, lower-cased, flattened; and the word count of each text (the data profile)."""
    return split_words(arr, lower=True)

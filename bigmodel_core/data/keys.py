"""Group keys: the key that makes rows 'the same text' (duplicates, conflicting labels, the split), computed for a
whole column in one compiled pass (minhash.Scanner) and equal, text by text, to quality.group_key (the definition,
pinned by charset: KEY_VERSION)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigmodel_core.data.columns import as_array


def group_keys(arr: pa.Array) -> list[str]:
    """quality.group_key per text: the 80-bit key (hashing.text_key) of the words of the normalised text, in
    hex."""
    hi, lo = group_key_ints(arr)
    return [f"{h:016x}{v:04x}" for h, v in zip(hi.tolist(), lo.tolist(), strict=True)]


def group_key_ints(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """group_keys as two numbers per text: the first 16 hex digits (uint64) and the next 4 (uint16). One
    compiled pass (minhash.Scanner) splits the texts as str.split() does, lower-cased as pyarrow's utf8_lower
    does (as charset pins it), and keys their words; that is the pinned case folding (charset.casefold) except
    for the few characters it flags (kernels.scan.CASEFOLD: ß, ς, ligatures, ...), whose texts are case-folded in
    Python and keyed again (casefold_key_ints)."""
    from bigmodel_core.data import minhash
    from bigmodel_core.data.kernels.scan import CASEFOLD

    arr = pc.fill_null(as_array(arr), "")
    got = minhash.Scanner(1).scan(arr, want=np.zeros(len(arr), dtype=bool))
    redo = np.nonzero(got.flags & CASEFOLD)[0]
    if len(redo):
        got.key_hi[redo], got.key_lo[redo] = casefold_key_ints(arr.take(pa.array(redo, type=pa.int64())))
    return got.key_hi, got.key_lo


def casefold_key_ints(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """group_key_ints of texts case-folded by charset.casefold in Python (for texts the kernel flags)."""
    from bigmodel_core.data.charset import casefold
    from bigmodel_core.data.minhash import Scanner

    folded = pa.array([casefold(t) for t in pc.fill_null(as_array(arr), "").to_pylist()], type=pa.large_string())
    got = Scanner(1).scan(folded, want=np.zeros(len(folded), dtype=bool), lower=False)
    return got.key_hi, got.key_lo


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_keys(hi: np.ndarray, lo: np.ndarray, usable: np.ndarray) -> pa.Array:
    """f"{hi:016x}{lo:04x}" per row ("<NA>" where not usable) as an Arrow string array, digit by digit in
    numpy rather than a Python string per row."""
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits = np.empty((len(hi), 20), dtype=np.uint8)
    digits[:, :16] = _HEX[((hi[:, None] >> shifts) & np.uint64(15)).astype(np.intp)]
    digits[:, 16:] = _HEX[((lo.astype(np.uint64)[:, None] >> shifts[-4:]) & np.uint64(15)).astype(np.intp)]
    keys = pa.LargeStringArray.from_buffers(
        len(hi), pa.py_buffer(np.arange(0, 20 * len(hi) + 1, 20, dtype=np.int64)), pa.py_buffer(digits)
    )
    return keys if usable.all() else pc.if_else(pa.array(usable), keys, "<NA>")

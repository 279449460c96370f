"""Train-only text augmentation: word dropout and neighbour swaps.

Variants are made only for rows whose split will be `train` (the split function is pure, so
augment can ask it), and carry their parent's group key, so they can never reach val or test.

A variant's random numbers come from a counter-based generator (hashing.streams) seeded by the augment
seed, the parent's row id and the copy number, so a column of variants is made in one compiled pass
(variants, kernels.variants.word_variants) and each equals the row-by-row definition (variant), whatever the batch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bigmodel_core.config import AugmentParams, SplitParams
from bigmodel_core.data import hashing
from bigmodel_core.data import split as splitting

_DROP, _CHOICE, _SWAP = 1, 2, 3  # the random streams of one variant


def variant_seeds(row_ids: pa.Array, copy: int, seed: int) -> np.ndarray:
    """The seed of copy `copy` of each parent row: its row id's hash mixed with the augment seed."""
    base = hashing.mix(hashing.string_hashes(row_ids) ^ hashing.mix(np.uint64(seed)))
    return hashing.mix(base ^ hashing.mix(np.uint64(copy) + np.uint64(1)))


def variant(text: str, seed: int, p: AugmentParams) -> str:
    """One variant of a text, word by word (the definition variants() computes for a column). Words are
    the text split on single spaces; each is dropped with probability word_dropout (a text of one word
    keeps it; when all are dropped one random word is kept); then, left to right, each word is swapped with
    the next with probability swap_prob, and a swapped pair is not swapped again."""
    s = np.array([seed], dtype=np.uint64)
    words = text.split(" ")
    if len(words) > 1 and p.word_dropout:
        u = hashing.streams(np.repeat(s, len(words)), _DROP, np.arange(len(words)))
        kept = [w for w, x in zip(words, u, strict=True) if x >= p.word_dropout]
        words = kept or [words[int(hashing.streams(s, _CHOICE, np.zeros(1))[0] * len(words))]]
    u = hashing.streams(np.repeat(s, len(words)), _SWAP, np.arange(len(words)))
    i = 0
    while i < len(words) - 1:
        if u[i] < p.swap_prob:
            words[i], words[i + 1] = words[i + 1], words[i]
            i += 2
        else:
            i += 1
    return " ".join(words)


def variants(texts: pa.Array, seeds: np.ndarray, p: AugmentParams) -> pa.Array:
    """variant(texts[i], seeds[i], p) for every i (nulls as ""), in one compiled pass over the texts' bytes
    (kernels.variants.word_variants)."""
    from bigmodel_core.data.columns import as_array, byte_view
    from bigmodel_core.data.kernels.variants import word_variants

    arr = pc.fill_null(as_array(texts), "")
    n = len(arr)
    offsets, data = byte_view(arr)
    out_offsets = np.empty(n + 1, dtype=np.int64)
    out_data = np.empty(max(int(offsets[-1] - offsets[0]), 1), dtype=np.uint8)
    drop_key, choice_key, swap_key = (np.uint64(hashing.mix(np.uint64(s))) for s in (_DROP, _CHOICE, _SWAP))
    size = word_variants(
        data,
        offsets,
        np.ascontiguousarray(seeds, dtype=np.uint64),
        float(p.word_dropout),
        float(p.swap_prob),
        drop_key,
        choice_key,
        swap_key,
        out_offsets,
        out_data,
    )
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(out_offsets), pa.py_buffer(out_data[:size]))


def augment(
    df: pd.DataFrame, p: AugmentParams, split_params: SplitParams, carve_val: bool = True
) -> tuple[pd.DataFrame, dict]:
    """The rows and, after them, `copies` variants of each row the split will put in train (carve_val: as in
    split.assign)."""
    out = df.copy()
    out["parent_id"] = out["row_id"]
    out["is_augmented"] = False
    if not p.enabled or p.copies == 0:
        return out, {"originals": len(df), "variants": 0}
    will_train = (splitting.assign_frame(df, split_params, carve_val) == "train").to_numpy()
    parents = out[will_train]
    ids = pa.array(parents["row_id"].astype(str), type=pa.large_string())
    texts = pa.array(parents["text"], type=pa.large_string(), from_pandas=True)
    # a parent's variants follow one another, copy 0 first
    seeds = np.stack([variant_seeds(ids, k, p.seed) for k in range(p.copies)], axis=1).ravel()
    at = np.repeat(np.arange(len(parents)), p.copies)
    variants_ = parents.iloc[at].reset_index(drop=True)  # the parents' columns; parent_id is the parent's row_id
    suffixes = pa.array(np.tile([f"-aug{k}" for k in range(p.copies)], len(parents)), type=pa.large_string())
    variants_["row_id"] = pc.binary_join_element_wise(
        pc.take(ids, pa.array(at)), suffixes, pa.scalar("", pa.large_string())
    ).to_pandas()
    variants_["text"] = variants(pc.take(texts, pa.array(at)), seeds, p).to_pandas(types_mapper=None)
    variants_["is_augmented"] = True
    rows = len(variants_)
    result = pd.concat([out, variants_], ignore_index=True) if rows else out
    result = result.astype(
        {
            "text": "str",
            "label": "str",
            "group_key": "str",
            "fixed_split": "str",
            "source_row": "int64",
            "is_augmented": "bool",
        }
    )
    return result, {"originals": len(df), "variants": rows, "train_parents": int(will_train.sum())}

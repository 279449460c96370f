"""Train-only text augmentation: word dropout and neighbour swaps.

Variants are made only for rows whose split will be `train` (the split function is pure, so
augment can ask it), and carry their parent's group key, so they can never reach val or test.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pandas as pd

from bigmodel_core.config import AugmentParams, SplitParams
from bigmodel_core.data import split as splitting


def variant(text: str, rng: random.Random, p: AugmentParams) -> str:
    words = text.split(" ")
    if len(words) > 1 and p.word_dropout:
        kept = [w for w in words if rng.random() >= p.word_dropout]
        words = kept or [rng.choice(words)]
    i = 0
    while i < len(words) - 1:
        if rng.random() < p.swap_prob:
            words[i], words[i + 1] = words[i + 1], words[i]
            i += 2
        else:
            i += 1
    return " ".join(words)


def augment(df: pd.DataFrame, p: AugmentParams, split_params: SplitParams) -> tuple[pd.DataFrame, dict]:
    out = df.copy()
    out["parent_id"] = out["row_id"]
    out["is_augmented"] = False
    if not p.enabled or p.copies == 0:
        return out, {"originals": len(df), "variants": 0}
    will_train = (splitting.assign_frame(df, split_params) == "train").to_numpy()
    parents = df[will_train]
    ids, texts = parents["row_id"].tolist(), parents["text"].tolist()
    new_ids, new_texts = [], []
    for row_id, text in zip(ids, texts):  # a parent's variants follow one another, copy 0 first
        for k in range(p.copies):
            seed = int.from_bytes(hashlib.sha256(f"{p.seed}\0{row_id}\0{k}".encode()).digest()[:8], "big")
            new_ids.append(f"{row_id}-aug{k}")
            new_texts.append(variant(text, random.Random(seed), p))
    # the parents' columns (parent_id is the parent's row_id already), with the variants' ids and texts
    variants = out[will_train].iloc[np.repeat(np.arange(len(ids)), p.copies)].reset_index(drop=True)
    variants["row_id"] = new_ids
    variants["text"] = new_texts
    variants["is_augmented"] = True
    rows = len(variants)
    result = pd.concat([out, variants], ignore_index=True) if rows else out
    result = result.astype({"text": "str", "label": "str", "group_key": "str", "fixed_split": "str", "source_row": "int64", "is_augmented": "bool"})
    return result, {"originals": len(df), "variants": rows, "train_parents": int(will_train.sum())}

"""Train-only text augmentation: word dropout and neighbour swaps.

Variants are made only for rows whose split will be `train` (the split function is pure, so
augment can ask it), and carry their parent's group key, so they can never reach val or test.
"""

from __future__ import annotations

import hashlib
import random

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
    will_train = splitting.assign_frame(df, split_params) == "train"
    rows = []
    for r in df[will_train].itertuples(index=False):
        for k in range(p.copies):
            seed = int.from_bytes(hashlib.sha256(f"{p.seed}\0{r.row_id}\0{k}".encode()).digest()[:8], "big")
            text = variant(r.text, random.Random(seed), p)
            rows.append(
                {
                    **r._asdict(),
                    "row_id": f"{r.row_id}-aug{k}",
                    "text": text,
                    "parent_id": r.row_id,
                    "is_augmented": True,
                }
            )
    variants = pd.DataFrame.from_records(rows, columns=out.columns)
    result = pd.concat([out, variants], ignore_index=True) if rows else out
    result = result.astype({"text": "str", "label": "str", "group_key": "str", "fixed_split": "str", "source_row": "int64", "is_augmented": "bool"})
    return result, {"originals": len(df), "variants": len(rows), "train_parents": int(will_train.sum())}

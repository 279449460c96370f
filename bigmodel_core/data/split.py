"""Stable, leakage-proof split assignment.

A row's split is a function of its own normalised text (its group key) and the salt only:
adding rows never moves an existing row, and exact duplicates always share a split. Each class
gets the configured shares in expectation because the hash does not depend on the label.
Rows with a fixed split keep it: `test` stays test; `train` rows go to train or validation.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from bigmodel_core.config import SplitParams
from bigmodel_core.errors import GateFailed


def bucket(key: str, salt: str) -> float:
    """Uniform number in [0, 1) from the key."""
    h = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign(group_key: str, fixed_split: str | None, p: SplitParams) -> str:
    u = bucket(group_key, p.salt)
    if fixed_split == "test":
        return "test"
    if fixed_split == "train":
        return "val" if u < p.val_fraction else "train"
    if u < p.test_fraction:
        return "test"
    # Rescale the rest so val_fraction is a share of the non-test rows.
    v = (u - p.test_fraction) / (1 - p.test_fraction)
    return "val" if v < p.val_fraction else "train"


def assign_frame(df: pd.DataFrame, p: SplitParams) -> pd.Series:
    fixed = df["fixed_split"].astype("object").where(df["fixed_split"].notna(), None)
    return pd.Series([assign(k, f, p) for k, f in zip(df["group_key"], fixed)], index=df.index, dtype="str")


def check_split(df: pd.DataFrame) -> dict:
    """Invariants of a split table; raises GateFailed naming the broken one. Returns counts."""
    aug_out = df[df["is_augmented"] & (df["split"] != "train")]
    if len(aug_out):
        raise GateFailed(f"split: {len(aug_out)} augmented row(s) outside train, e.g. {aug_out['row_id'].iloc[0]}")
    by_key = df[~df["is_augmented"]].groupby("group_key")["split"].nunique()
    leaked = by_key[by_key > 1]
    if len(leaked):
        raise GateFailed(f"split: {len(leaked)} text(s) appear in more than one split, e.g. group {leaked.index[0]}")
    counts = df.groupby(["split", "label"]).size()
    labels = sorted(df["label"].unique())
    table = {s: {lab: int(counts.get((s, lab), 0)) for lab in labels} for s in ("train", "val", "test")}
    for s, per in table.items():
        empty = [lab for lab, c in per.items() if c == 0]
        if empty:
            raise GateFailed(
                f"split: class(es) {empty} have no rows in {s}; add data or change split fractions"
            )
    return table

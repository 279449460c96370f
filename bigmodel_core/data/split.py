"""Stable, leakage-proof split assignment.

A row's split is a function of its own normalised text (its group key) and the salt only:
adding rows never moves an existing row, and exact duplicates always share a split. Each class
gets the configured shares in expectation because the hash does not depend on the label.
Rows with a fixed split keep it: `test` stays test, `val` stays validation; `train` rows go to train, or
to validation as well when the data has no validation split of its own (`carve_val`): a dataset that brings
its own validation rows (a source with `split: val`, or a `val/` folder) keeps every other row for training
and testing.
"""

from __future__ import annotations

import hashlib
from typing import cast

import numpy as np
import pandas as pd

from bigmodel_core.config import SplitParams
from bigmodel_core.data.schemas import SPLITS
from bigmodel_core.errors import GateFailed


def bucket(key: str, salt: str) -> float:
    """Uniform number in [0, 1) from the key."""
    h = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign(group_key: str, fixed_split: str | None, p: SplitParams, carve_val: bool = True) -> str:
    """The split of one row. carve_val: take val_fraction of the non-test rows for validation (False when the
    data brings validation rows of its own)."""
    u = bucket(group_key, p.salt)
    if fixed_split in ("test", "val"):
        return fixed_split
    if fixed_split == "train":
        return "val" if carve_val and u < p.val_fraction else "train"
    if u < p.test_fraction:
        return "test"
    # Rescale the rest so val_fraction is a share of the non-test rows.
    v = (u - p.test_fraction) / (1 - p.test_fraction)
    return "val" if carve_val and v < p.val_fraction else "train"


def buckets(keys, salt: str) -> np.ndarray:
    """bucket(key, salt) for every key (a list, pandas Series or Arrow array of strings, no nulls): hashlib's
    SHA-256 of each, the arithmetic in numpy (a uint64 made float and divided by 2**64 rounds as Python's
    int / int does)."""
    from bigmodel_core.data.columns import as_array

    arr = as_array(keys)
    if arr.null_count:
        raise ValueError(f"split: {arr.null_count} row(s) have no group key")
    prefix, sha256 = f"{salt}\0".encode(), hashlib.sha256
    heads = b"".join([sha256(prefix + key.encode()).digest()[:8] for key in arr.to_pylist()])
    return np.frombuffer(heads, dtype=">u8").astype(np.float64) / 2**64


def assign_codes(group_keys, fixed_split: np.ndarray, p: SplitParams, carve_val: bool = True) -> np.ndarray:
    """assign() for every row as an index into SPLITS; fixed_split holds 'test', 'val', 'train' or anything else
    (no fixed split)."""
    u = buckets(group_keys, p.salt)
    train, val, test = (np.int8(SPLITS.index(s)) for s in ("train", "val", "test"))
    v = (u - p.test_fraction) / (1 - p.test_fraction)
    to_val = (v < p.val_fraction) & carve_val
    free = np.where(u < p.test_fraction, test, np.where(to_val, val, train))
    fixed_train = np.where((u < p.val_fraction) & carve_val, val, train)
    return np.select(
        [fixed_split == "test", fixed_split == "val", fixed_split == "train"], [test, val, fixed_train], free
    ).astype(np.int8)


def assign_frame(df: pd.DataFrame, p: SplitParams, carve_val: bool = True) -> pd.Series:
    """assign() for every row of a frame with group_key and fixed_split columns."""
    fixed = df["fixed_split"].astype("object").where(df["fixed_split"].notna(), "").to_numpy()
    codes = assign_codes(df["group_key"], fixed, p, carve_val)
    return pd.Series(np.asarray(SPLITS, dtype=object)[codes], index=df.index, dtype="str")


def has_own_val(table_path) -> bool:
    """Whether a stage's input table holds rows with a fixed validation split (then none is carved)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    column = pq.read_table(table_path, columns=["fixed_split"]).column(0)
    return bool(pc.any(pc.equal(column, "val")).as_py())


def check_split(df: pd.DataFrame) -> dict:
    """Invariants of a split table; raises GateFailed naming the broken one. Returns counts."""
    check = SplitCheck()
    check.add(df)
    return check.result()


def _key64(key: str) -> int:
    """A group key as a 64-bit number: validate's keys are hex digests (their first 16 digits), others hashed."""
    try:
        return int(key[:16], 16) if len(key) >= 16 else _hashed(key)
    except ValueError:
        return _hashed(key)


def _hashed(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class SplitCheck:
    """The split invariants over a table seen in parts: no augmented row outside train, no text (group key)
    in two splits, every class in every split. Keeps 9 bytes per original row, not the rows."""

    def __init__(self) -> None:
        self.aug_out, self.aug_example = 0, None
        self.keys: list[np.ndarray] = []
        self.splits: list[np.ndarray] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.labels: set[str] = set()

    def add(self, df: pd.DataFrame) -> None:
        aug_out = df[df["is_augmented"] & (df["split"] != "train")]
        if len(aug_out) and self.aug_example is None:
            self.aug_example = aug_out["row_id"].iloc[0]
        self.aug_out += len(aug_out)
        originals = df[~df["is_augmented"]]
        self.keys.append(
            np.fromiter((_key64(k) for k in originals["group_key"]), dtype=np.uint64, count=len(originals))
        )
        self.splits.append(originals["split"].map({s: i for i, s in enumerate(SPLITS)}).to_numpy(dtype=np.int8))
        for key, n in df.groupby(["split", "label"]).size().items():
            s, lab = cast("tuple[str, str]", key)  # a (split, label) pair: pandas' stubs say Hashable
            self.counts[(s, lab)] = self.counts.get((s, lab), 0) + int(n)
        self.labels.update(df["label"].unique().tolist())

    def result(self) -> dict:
        if self.aug_out:
            raise GateFailed(f"split: {self.aug_out} augmented row(s) outside train, e.g. {self.aug_example}")
        keys = np.concatenate(self.keys) if self.keys else np.empty(0, dtype=np.uint64)
        splits = np.concatenate(self.splits) if self.splits else np.empty(0, dtype=np.int8)
        order = np.lexsort((splits, keys))
        k, sp = keys[order], splits[order]
        leaked = np.unique(k[1:][(k[1:] == k[:-1]) & (sp[1:] != sp[:-1])])
        if len(leaked):
            raise GateFailed(
                f"split: {len(leaked)} text(s) appear in more than one split, e.g. group "
                f"{int(leaked[0]):016x}… (the first 16 digits of its group_key)"
            )
        labels = sorted(self.labels)
        table = {s: {lab: self.counts.get((s, lab), 0) for lab in labels} for s in SPLITS}
        for s, per in table.items():
            empty = [lab for lab, c in per.items() if c == 0]
            if empty:
                raise GateFailed(f"split: class(es) {empty} have no rows in {s}; add data or change split fractions")
        return table

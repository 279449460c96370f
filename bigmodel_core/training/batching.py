"""Encoded texts as ragged arrays, the batch plan of an epoch, and collation into tensors.

Encoded data is kept as flat numpy arrays (values + offsets), not lists of lists: 25k IMDb reviews at
512 tokens are 100 MB as int64 here and several GB as Python ints. A batch plan is a pure function
of (lengths, sizes, seed, epoch), so a resumed run can rebuild the exact batches it was in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class Ragged:
    """Row i is values[offsets[i]:offsets[i+1]] (and weights[...] for weighted bags)."""

    values: np.ndarray
    offsets: np.ndarray
    weights: np.ndarray | None = None

    @classmethod
    def from_lists(cls, rows: list[list[int]], weights: list[list[float]] | None = None) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((v for r in rows for v in r), dtype=np.int64, count=int(offsets[-1]))
        w = None
        if weights is not None:
            w = np.fromiter((v for r in weights for v in r), dtype=np.float32, count=int(offsets[-1]))
        return cls(values, offsets, w)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> list[int]:
        return self.values[self.offsets[i] : self.offsets[i + 1]].tolist()

    def take(self, rows: np.ndarray) -> Ragged:
        """A new Ragged with the given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # index of every element: start of its row + position inside the row
        idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return Ragged(self.values[idx], offsets, None if self.weights is None else self.weights[idx])

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"values": self.values, "offsets": self.offsets}  # savez(**): numpy's stubs want Any
        if self.weights is not None:
            arrays["weights"] = self.weights
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> Ragged:
        with np.load(path) as z:
            return cls(z["values"], z["offsets"], z["weights"] if "weights" in z.files else None)


# --------------------------------------------------------------------------- batch plans
def plan_batches(
    lengths: np.ndarray,
    batch_size: int,
    token_budget: int = 0,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    min_rows: int = 1,
    window_batches: int = 50,
) -> list[np.ndarray]:
    """Row indices of each micro-batch of one epoch, grouped by length so little padding is needed.

    Rows are shuffled, then sorted by length inside windows of `window_batches` batches, cut into
    batches (by count, or so that rows x longest row <= token_budget) and the batches shuffled.
    A batch with fewer than min_rows rows (DDP needs one per process) is merged into its neighbour.
    """
    n = len(lengths)
    if n == 0:
        return []
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    rows_per_window = (token_budget // max(1, int(np.median(lengths))) if token_budget else batch_size) * window_batches
    rows_per_window = max(rows_per_window, batch_size, 1)
    batches: list[np.ndarray] = []
    for w in range(0, n, rows_per_window):
        chunk = order[w : w + rows_per_window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += _cut(chunk, lengths, batch_size, token_budget)
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    if min_rows > 1:
        batches = _merge_small(batches, min_rows)
    return batches


def _cut(sorted_rows: np.ndarray, lengths: np.ndarray, batch_size: int, token_budget: int) -> list[np.ndarray]:
    if not token_budget:
        return [sorted_rows[b : b + batch_size] for b in range(0, len(sorted_rows), batch_size)]
    out, start = [], 0
    for i in range(1, len(sorted_rows) + 1):
        # rows are sorted by length, so the newest row is the longest of the batch
        if i == len(sorted_rows) or (i + 1 - start) * lengths[sorted_rows[i]] > token_budget:
            out.append(sorted_rows[start:i])
            start = i
    return out


def _merge_small(batches: list[np.ndarray], min_rows: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for b in batches:
        if (len(b) < min_rows and out) or (out and len(out[-1]) < min_rows):
            out[-1] = np.concatenate([out[-1], b])
        else:
            out.append(b)
    return out


def padding_efficiency(lengths: np.ndarray, batches: list[np.ndarray], multiple: int = 1) -> float:
    """Real tokens / padded tokens over the plan (1.0 = no padding), with collate_padded's widths."""
    real = padded = 0
    for b in batches:
        ls = lengths[b]
        width = padded_width(int(ls.max()), multiple)
        real += int(ls.sum())
        padded += width * len(b)
    return real / max(1, padded)


def padded_width(longest: int, multiple: int) -> int:
    """Width of a padded batch: rounded up to `multiple` from 64 tokens on (few shapes for torch.compile,
    tensor-core friendly); shorter batches are not rounded, where rounding would cost more than it gives."""
    longest = max(1, longest)
    return -(-longest // multiple) * multiple if multiple > 1 and longest >= 64 else longest


# --------------------------------------------------------------------------- collation
def collate_padded(data: Ragged, rows: np.ndarray, pad_id: int, multiple: int = 8) -> dict:
    """Pad to the longest row (rounded up to `multiple` for rows of 64 tokens or more: see padded_width).

    mask is True on real tokens, or None when no row has padding (lets attention use its fastest kernel).
    """
    sub = data.take(rows)
    lengths = sub.lengths
    width = padded_width(int(lengths.max(initial=1)), multiple)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    cols = np.arange(int(sub.offsets[-1])) - np.repeat(sub.offsets[:-1], lengths)
    ids[np.repeat(np.arange(len(rows)), lengths), cols] = sub.values
    real = np.arange(width)[None, :] < lengths[:, None]
    real[:, 0] = True  # a text that encoded to nothing still has one position to pool
    return {"ids": torch.from_numpy(ids), "mask": None if real.all() else torch.from_numpy(real)}


def collate_bag(data: Ragged, rows: np.ndarray) -> dict:
    """Flat n-gram ids with per-row offsets and weights, the input of nn.EmbeddingBag."""
    sub = data.take(rows)
    weights = sub.weights if sub.weights is not None else np.ones(len(sub.values), dtype=np.float32)
    return {
        "ids": torch.from_numpy(sub.values),
        "offsets": torch.from_numpy(sub.offsets[:-1].copy()),
        "weights": torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)),
    }


def collate(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of ids to (ids, mask) with no rounding; mask is always a tensor. For small ad-hoc batches."""
    batch = collate_padded(Ragged.from_lists(seqs), np.arange(len(seqs)), pad_id, multiple=1)
    mask = batch["mask"] if batch["mask"] is not None else torch.ones_like(batch["ids"], dtype=torch.bool)
    return batch["ids"], mask


@dataclass
class TrainData:
    """What the loop trains on: the encoded train and validation rows, their class ids, and how to batch them."""

    train: Ragged
    train_y: np.ndarray
    val: Ragged
    val_y: np.ndarray
    num_classes: int
    collate: Callable[[Ragged, np.ndarray], dict]  # rows -> the model's keyword arguments (CPU tensors)

"""Turning token id lists into padded tensors."""

from __future__ import annotations

import torch


def collate(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest sequence in the batch; mask is True on real tokens."""
    width = max(1, max((len(s) for s in seqs), default=1))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    mask = ids != pad_id
    mask[:, 0] = True  # a text that cleaned to nothing still attends to one position
    return ids, mask

"""fastText-style classifier: a weighted bag of hashed n-gram vectors, then a linear layer.

The n-gram table is an `nn.EmbeddingBag` with sparse gradients: a step touches only the rows of
the n-grams in its batch, so a million-bucket table trains in seconds on a CPU (SparseAdam).
"""

from __future__ import annotations

import torch
from torch import nn


class BagClassifier(nn.Module):
    def __init__(self, buckets: int, num_classes: int, d_model: int, dropout: float) -> None:
        super().__init__()
        # weights arrive normalised for mean pooling (encoders.NgramHasher), so the bag is always a weighted sum
        self.emb = nn.EmbeddingBag(buckets, d_model, mode="sum", sparse=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, num_classes)
        nn.init.uniform_(self.emb.weight, -1.0 / d_model, 1.0 / d_model)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.emb(ids, offsets, per_sample_weights=weights)))

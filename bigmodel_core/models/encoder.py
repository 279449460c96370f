"""A small Transformer encoder classifier and a bag-of-tokens baseline."""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


class TransformerClassifier(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, d_model: int, n_heads: int, n_layers: int,
                 d_ff: int, dropout: float, max_length: int, pooling: str = "mean", pad_id: int = 0) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.pooling = pooling
        self.tok = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.pos = nn.Embedding(max_length, d_model)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.size(1), device=ids.device)
        h = self.drop(self.tok(ids) + self.pos(pos)[None])
        h = self.encoder(h, src_key_padding_mask=~mask)
        h = self.norm(h)
        pooled = h[:, 0] if self.pooling == "cls" else masked_mean(h, mask)
        return self.head(pooled)


class BagOfTokens(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, d_model: int, dropout: float, pad_id: int = 0) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(masked_mean(self.emb(ids), mask)))

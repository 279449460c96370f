"""The models of bundle format 1 (bigmodel 0.1), kept so that a champion registered by 0.1 can still
be loaded and compared against. New bundles use models/transformer.py and models/bag.py."""

from __future__ import annotations

import torch
from torch import nn

from bigmodel_core.models.transformer import masked_mean


def _full_mask(ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(ids, dtype=torch.bool) if mask is None else mask


class LegacyTransformerClassifier(nn.Module):
    """0.1's encoder: nn.TransformerEncoder (pre-LN, GELU) with learned positions."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        d_ff: int,
        dropout: float,
        max_length: int,
        pooling: str = "mean",
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.tok = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.pos = nn.Embedding(max_length, d_model)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, d_ff, dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = _full_mask(ids, mask)
        pos = torch.arange(ids.size(1), device=ids.device)
        h = self.drop(self.tok(ids) + self.pos(pos)[None])
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        return self.head(h[:, 0] if self.pooling == "cls" else masked_mean(h, mask))


class LegacyBagOfTokens(nn.Module):
    """0.1's 'bag': the mean of subword embeddings."""

    def __init__(self, vocab_size: int, num_classes: int, d_model: int, dropout: float, pad_id: int = 0) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.drop(masked_mean(self.emb(ids), _full_mask(ids, mask))))

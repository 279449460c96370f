"""A pre-LN Transformer encoder classifier, trained from scratch over the trained tokenizer.

Attention is `F.scaled_dot_product_attention`, so PyTorch picks its fused kernels (flash attention
on a GPU when a batch has no padding, memory-efficient attention with a padding mask otherwise).
Sizes go from a few thousand parameters up to BERT-base (d_model 768, 12 layers, 12 heads).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return h.mean(1)
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return h.amax(1)
    return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)


def pool(h: torch.Tensor, mask: torch.Tensor | None, how: str) -> torch.Tensor:
    if how == "cls":
        return h[:, 0]
    if how == "max":
        return masked_max(h, mask)
    return masked_mean(h, mask)


class Block(nn.Module):
    """x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.n_heads, self.attention_dropout = n_heads, attention_dropout
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ff_out(F.gelu(self.ff_in(self.ln2(x)))))


class TransformerClassifier(nn.Module):
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
        attention_dropout: float = 0.0,
        token_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.pooling, self.token_dropout = pooling, token_dropout
        self.tok = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.pos = nn.Embedding(max_length, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout, attention_dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)
        self.apply(self._init)
        for blk in cast(
            "Iterable[Block]", self.blocks
        ):  # residual branches start small so deep stacks train stably (GPT-2's scaling)
            for lin in (blk.proj, blk.ff_out):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * n_layers))
        with torch.no_grad():
            self.tok.weight[pad_id].zero_()

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        pos = torch.arange(ids.size(1), device=ids.device)
        tok = self.tok(ids)
        if self.training and self.token_dropout > 0:  # whole tokens vanish (their position stays)
            keep = torch.rand(ids.shape, device=ids.device) >= self.token_dropout
            tok = tok * keep.unsqueeze(-1).to(tok.dtype)
        h = self.drop(tok + self.pos(pos)[None])
        attn_mask = None if mask is None else mask[:, None, None, :]  # (batch, 1, 1, keys): True = attend
        for blk in self.blocks:
            h = blk(h, attn_mask)
        h = self.norm(h)
        return self.head(self.drop(pool(h, mask, self.pooling)))

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6 x non-embedding weights + attention scores."""
        n = sum(p.numel() for name, p in self.named_parameters() if not name.startswith(("tok.", "pos.")))
        d = self.tok.embedding_dim
        return 6.0 * n + 12.0 * len(self.blocks) * d * seq_len

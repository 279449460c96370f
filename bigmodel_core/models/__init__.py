"""Model zoo: build a classifier from ModelParams."""

from __future__ import annotations

from bigmodel_core.config import ModelParams


def build_model(p: ModelParams, vocab_size: int, num_classes: int, max_length: int, pad_id: int = 0):
    from bigmodel_core.models.encoder import BagOfTokens, TransformerClassifier

    if p.kind == "transformer":
        return TransformerClassifier(
            vocab_size=vocab_size, num_classes=num_classes, d_model=p.d_model, n_heads=p.n_heads,
            n_layers=p.n_layers, d_ff=p.d_ff, dropout=p.dropout, max_length=max_length, pooling=p.pooling, pad_id=pad_id,
        )
    if p.kind == "bag":
        return BagOfTokens(vocab_size=vocab_size, num_classes=num_classes, d_model=p.d_model, dropout=p.dropout, pad_id=pad_id)
    raise ValueError(f"model.kind: unknown kind {p.kind!r}")

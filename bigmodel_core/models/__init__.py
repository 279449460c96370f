"""Model zoo: build a classifier from ModelParams (model.kind: bag, transformer, pretrained).

Every model maps the batch its encoder's collate() makes to logits: model(**batch).
"""

from __future__ import annotations

from bigmodel_core.config import ModelParams


def build_model(p: ModelParams, encoder, labels: list[str], max_length: int):
    if p.kind == "bag":
        from bigmodel_core.models.bag import BagClassifier

        return BagClassifier(p.buckets, len(labels), p.d_model, p.dropout)
    if p.kind == "pretrained":
        from bigmodel_core.models.pretrained import PretrainedClassifier

        assert p.backbone is not None  # ModelParams requires it for kind pretrained
        return PretrainedClassifier.from_backbone(p.backbone, labels)
    from bigmodel_core.models.transformer import TransformerClassifier

    return TransformerClassifier(
        vocab_size=encoder.vocab_size,
        num_classes=len(labels),
        d_model=p.d_model,
        n_heads=p.n_heads,
        n_layers=p.n_layers,
        d_ff=p.d_ff,
        dropout=p.dropout,
        max_length=max_length,
        pooling=p.pooling,
        pad_id=encoder.pad_id,
        attention_dropout=p.attention_dropout,
        token_dropout=p.token_dropout,
    )

"""Model zoo: build a classifier from ModelParams (the kinds: models/registry.py).

Every neural model maps the batch its encoder's collate() makes to logits: model(**batch).
"""

from __future__ import annotations

from bigmodel_core.config import ModelParams


def build_model(p: ModelParams, encoder, labels: list[str], max_length: int):
    """An untrained torch module of the neural kind p.kind."""
    from bigmodel_core.models.registry import kind_of

    kind = kind_of(p.kind)
    if kind.build_model is None:
        raise ValueError(f"model.kind {p.kind!r} is not trained by the torch loop: it has no module to build")
    return kind.build_model(p, encoder, labels, max_length)

"""The model kinds, by name: what each one builds, loads and saves, and how the pipeline treats it.

Every place that used to branch on `model.kind` asks this registry instead, so a new kind (an image CNN, an MLP
on feature vectors) is one more entry here and the modules it names, not an edit to every stage. The kinds and
their settings are declared in the typed config (config: CANDIDATE_KINDS, cheapest first); tests/test_models.py
checks that the two agree. `auto` is not a kind: it picks one of these (stages/train_select.py).

A kind is either *neural* (an encoder turns inputs into tensors and a torch module maps the encoder's batches
to logits; trained by training.loop, its weights saved as a state dict unless it saves itself) or *fitted* in
one call on the train rows (linear: scikit-learn, its own files, no encoder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelKind:
    name: str
    #: trained by the torch loop, from an encoder's batches; False: fitted in one call (`fit`)
    neural: bool
    #: its encoder makes token sequences: batches grouped by length, padding efficiency, tokenizer.max_length
    sequence: bool
    #: trains on augment's variants when model.augmented_rows is null
    augmented_by_default: bool
    #: the model writes its own files (save(directory) / load(directory)); otherwise a state dict (bundle.WEIGHTS)
    saves_itself: bool
    #: (model params, tokenizer params, train texts) -> encoder, fitted on the train split where it learns
    build_encoder: Callable[..., Any] | None = None
    #: (bundle directory, model params, tokenizer params) -> encoder
    load_encoder: Callable[..., Any] | None = None
    #: neural: (model params, encoder, labels, max_length) -> untrained torch module
    build_model: Callable[..., Any] | None = None
    #: (bundle directory) -> model, for kinds that save themselves
    load_model: Callable[..., Any] | None = None
    #: fitted kinds: (params, train texts, train labels) -> model
    fit: Callable[..., Any] | None = None
    #: the packages its served model needs beyond the common ones (mlflow_store pins the installed versions)
    requirements: tuple[str, ...] = ()


# --------------------------------------------------------------------------- transformer (trained from scratch)
def _subword_encoder(model_p, tok_p, texts: list[str]):
    from bigmodel_core.text.encoders import SubwordEncoder

    return SubwordEncoder.train(texts, tok_p)


def _load_subword_encoder(directory: Path, model_p, tok_p):
    from bigmodel_core.text.encoders import SubwordEncoder

    return SubwordEncoder.load(directory, tok_p)


def _transformer(p, encoder, labels: list[str], max_length: int):
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


# --------------------------------------------------------------------------- bag (hashed n-grams, pooled)
def _ngram_hasher(model_p, tok_p, texts: list[str]):
    from bigmodel_core.text.encoders import NgramHasher

    return NgramHasher(model_p, tok_p.lowercase)


def _load_ngram_hasher(directory: Path, model_p, tok_p):
    from bigmodel_core.text.encoders import NgramHasher

    return NgramHasher.load(directory, model_p, tok_p)


def _bag(p, encoder, labels: list[str], max_length: int):
    from bigmodel_core.models.bag import BagClassifier

    return BagClassifier(p.buckets, len(labels), p.d_model, p.dropout)


# --------------------------------------------------------------------------- pretrained (a local backbone)
def _pretrained_encoder(model_p, tok_p, texts: list[str]):
    from bigmodel_core.text.encoders import PretrainedEncoder

    assert model_p.backbone is not None  # the config requires it for kind pretrained
    return PretrainedEncoder.from_backbone(model_p.backbone, tok_p)


def _load_pretrained_encoder(directory: Path, model_p, tok_p):
    from bigmodel_core.text.encoders import PretrainedEncoder

    return PretrainedEncoder.load(directory, tok_p)


def _pretrained(p, encoder, labels: list[str], max_length: int):
    from bigmodel_core.models.pretrained import PretrainedClassifier

    assert p.backbone is not None
    return PretrainedClassifier.from_backbone(p.backbone, labels)


def _load_pretrained(directory: Path):
    from bigmodel_core.models.pretrained import PretrainedClassifier

    return PretrainedClassifier.load(directory)


# --------------------------------------------------------------------------- linear (TF-IDF + LR)
def _fit_linear(params, texts: list[str], labels: list[str]):
    from bigmodel_core.models.linear import LinearText, settings_of

    return LinearText.fit(texts, labels, settings_of(params.model, params.tokenizer.lowercase))


def _load_linear(directory: Path):
    from bigmodel_core.models.linear import LinearText

    return LinearText.load(directory)


KINDS: dict[str, ModelKind] = {
    k.name: k
    for k in (
        ModelKind(
            "linear",
            neural=False,
            sequence=False,
            augmented_by_default=False,
            saves_itself=True,
            load_model=_load_linear,
            fit=_fit_linear,
            requirements=("scikit-learn", "scipy"),
        ),
        ModelKind(
            "bag",
            neural=True,
            sequence=False,
            augmented_by_default=True,
            saves_itself=False,
            build_encoder=_ngram_hasher,
            load_encoder=_load_ngram_hasher,
            build_model=_bag,
            requirements=("scikit-learn", "scipy"),
        ),
        ModelKind(
            "transformer",
            neural=True,
            sequence=True,
            augmented_by_default=True,
            saves_itself=False,
            build_encoder=_subword_encoder,
            load_encoder=_load_subword_encoder,
            build_model=_transformer,
        ),
        ModelKind(
            "pretrained",
            neural=True,
            sequence=True,
            augmented_by_default=True,
            saves_itself=True,
            build_encoder=_pretrained_encoder,
            load_encoder=_load_pretrained_encoder,
            build_model=_pretrained,
            load_model=_load_pretrained,
            requirements=("transformers", "safetensors"),
        ),
    )
}


def kind_of(name: str) -> ModelKind:
    """The registered kind `name`; an unknown one is an error naming the kinds there are."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"model.kind {name!r} is not a model kind (kinds: {', '.join(KINDS)}; or auto)") from None


def build_encoder(model_p, tok_p, train_texts: list[str]):
    """The encoder a neural kind uses, fitted on the train split where it learns anything."""
    make = kind_of(model_p.kind).build_encoder
    if make is None:
        raise ValueError(f"model.kind {model_p.kind!r} has no encoder")
    return make(model_p, tok_p, train_texts)


def load_encoder(directory: Path, model_p, tok_p):
    """The encoder a neural kind saved in a bundle (or a prepared folder)."""
    load = kind_of(model_p.kind).load_encoder
    if load is None:
        raise ValueError(f"model.kind {model_p.kind!r} has no encoder")
    return load(directory, model_p, tok_p)

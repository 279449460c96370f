"""The model-kind registry: one entry per kind the config declares, and each entry builds what its kind is."""

from __future__ import annotations

import pytest

from bigmodel_core.config import CANDIDATE_KINDS, ModelParams, TokenizerParams
from bigmodel_core.models import build_model
from bigmodel_core.models.registry import KINDS, build_encoder, kind_of


def test_the_registry_holds_exactly_the_kinds_the_config_declares():
    assert tuple(KINDS) == CANDIDATE_KINDS  # the same kinds, cheapest first


def test_an_unknown_kind_is_named_with_the_kinds_there_are():
    with pytest.raises(ValueError, match=r"model.kind 'cnn' is not a model kind \(kinds: linear, bag, transformer"):
        kind_of("cnn")


def test_each_kind_is_either_neural_with_a_module_or_fitted_in_one_call():
    for kind in KINDS.values():
        if kind.neural:
            assert kind.build_model and kind.build_encoder and kind.load_encoder and kind.fit is None, kind.name
        else:
            assert kind.fit and kind.build_model is None and kind.build_encoder is None, kind.name
        assert (kind.load_model is not None) == kind.saves_itself, kind.name


@pytest.mark.parametrize(
    ("name", "module", "encoder"),
    [("bag", "BagClassifier", "NgramHasher"), ("transformer", "TransformerClassifier", "SubwordEncoder")],
)
def test_a_neural_kind_builds_its_encoder_and_module(name, module, encoder):
    p = ModelParams(kind=name, d_model=16, n_layers=1, n_heads=2, d_ff=32)
    tok = TokenizerParams(vocab_size=100, max_length=16)
    texts = [f"word{i} and other words number {i % 7}" for i in range(60)]
    enc = build_encoder(p, tok, texts)
    model = build_model(p, enc, ["a", "b", "c"], tok.max_length)
    assert type(enc).__name__ == encoder and type(model).__name__ == module
    data = enc.encode(texts[:4])
    import numpy as np

    batch = enc.collate(data, np.arange(4))
    assert tuple(model(**batch).shape) == (4, 3)
    assert KINDS[name].sequence == (name == "transformer")


def test_linear_is_fitted_and_not_built():
    with pytest.raises(ValueError, match="not trained by the torch loop"):
        build_model(ModelParams(kind="linear"), None, ["a", "b"], 16)
    with pytest.raises(ValueError, match="has no encoder"):
        build_encoder(ModelParams(kind="linear"), TokenizerParams(), ["a b"])


def test_tuning_has_a_search_space_for_every_kind_in_a_fixed_order():
    from bigmodel_core.training.tune import SPACES, space

    assert set(SPACES) == set(KINDS)
    model = ModelParams(kind="linear").model_dump()
    train = {"lr": 0.01, "epochs": 3}
    dist, written = space("linear", model, train, augmented=True)
    assert list(dist) == ["C", "ngrams", "min_df", "sublinear_tf", "char_ngrams", "augmented_rows"]
    assert written["augmented_rows"] is False  # linear trains on the original rows unless told otherwise
    dist, written = space("bag", ModelParams(kind="bag").model_dump(), train, augmented=False)
    assert list(dist) == ["lr", "epochs", "d_model", "ngrams", "char_ngrams"] and written["lr"] == 0.01
    assert list(space("transformer", model, train, augmented=True)[1]) == ["lr", "epochs", "size", "augmented_rows"]

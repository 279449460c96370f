"""Unit tier: ragged arrays, batch plans, collation and the three text encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bigmodel_core.config import ModelParams, TokenizerParams
from bigmodel_core.text.encoders import NgramHasher, SubwordEncoder, keep_tokens
from bigmodel_core.text.tokenizer import CLS
from bigmodel_core.training.batching import Ragged, collate, collate_bag, collate_padded, padding_efficiency, plan_batches

TEXTS = [f"the {w} {v} item" for w in ("red", "blue", "green", "black") for v in ("cat", "dog", "bird", "fish")] * 5


def test_ragged_take_save_and_load(tmp_path):
    r = Ragged.from_lists([[1, 2, 3], [], [4], [5, 6]], weights=[[0.5, 0.25, 0.25], [], [1.0], [0.1, 0.9]])
    assert len(r) == 4 and r.lengths.tolist() == [3, 0, 1, 2]
    sub = r.take(np.array([3, 0, 1]))
    assert [sub.row(i) for i in range(3)] == [[5, 6], [1, 2, 3], []]
    assert sub.weights.tolist() == pytest.approx([0.1, 0.9, 0.5, 0.25, 0.25])
    r.save(tmp_path / "r.npz")
    back = Ragged.load(tmp_path / "r.npz")
    assert back.values.tolist() == r.values.tolist() and back.offsets.tolist() == r.offsets.tolist()
    assert back.weights.tolist() == pytest.approx(r.weights.tolist())


def test_plan_covers_every_row_once_and_depends_only_on_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(1, 300, size=1000)
    a = plan_batches(lengths, 32, seed=1, epoch=1)
    assert sorted(np.concatenate(a).tolist()) == list(range(1000))
    assert all(len(b) <= 32 for b in a)
    again = plan_batches(lengths, 32, seed=1, epoch=1)
    assert [b.tolist() for b in a] == [b.tolist() for b in again]
    other = plan_batches(lengths, 32, seed=1, epoch=2)
    assert [b.tolist() for b in a] != [b.tolist() for b in other]
    # sorted within windows: far less padding than random batches of the same size
    assert padding_efficiency(lengths, a) > 0.9
    random_batches = np.array_split(np.random.default_rng(0).permutation(1000), 1000 // 32)
    assert padding_efficiency(lengths, random_batches) < 0.7


def test_token_budget_caps_rows_times_longest_row():
    lengths = np.random.default_rng(1).integers(5, 500, size=2000)
    plan = plan_batches(lengths, batch_size=1, token_budget=4096, seed=0, epoch=1)
    assert sorted(np.concatenate(plan).tolist()) == list(range(2000))
    assert all(len(b) * lengths[b].max() <= 4096 for b in plan)
    assert max(len(b) for b in plan) > 8 and min(len(b) for b in plan) >= 1  # short rows share a batch


def test_small_batches_are_merged_for_ddp():
    plan = plan_batches(np.full(65, 10), 32, seed=0, epoch=1, min_rows=2)
    assert sorted(np.concatenate(plan).tolist()) == list(range(65)) and min(len(b) for b in plan) >= 2


def test_collate_padded_rounds_width_and_drops_a_mask_without_padding():
    data = Ragged.from_lists([[5, 6, 7], [8], [9, 9, 9], list(range(1, 66))])
    b = collate_padded(data, np.array([0, 1]), pad_id=0, multiple=8)
    assert b["ids"].tolist() == [[5, 6, 7], [8, 0, 0]]  # short rows: no rounding
    assert b["mask"].tolist() == [[True, True, True], [True, False, False]]
    long = collate_padded(data, np.array([3, 1]), pad_id=0, multiple=8)
    assert long["ids"].shape == (2, 72) and long["ids"][0, :65].tolist() == list(range(1, 66))
    assert long["mask"].sum(1).tolist() == [65, 1]
    full = collate_padded(data, np.array([0, 2]), pad_id=0, multiple=1)
    assert full["mask"] is None and full["ids"].tolist() == [[5, 6, 7], [9, 9, 9]]
    ids, mask = collate([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[True, True, True], [True, False, False]]


def test_collate_bag_gives_embeddingbag_inputs():
    data = Ragged.from_lists([[1, 2], [3], [4, 5, 6]], weights=[[0.5, 0.5], [1.0], [0.2, 0.3, 0.5]])
    b = collate_bag(data, np.array([2, 0]))
    assert b["ids"].tolist() == [4, 5, 6, 1, 2] and b["offsets"].tolist() == [0, 3]
    assert b["weights"].tolist() == pytest.approx([0.2, 0.3, 0.5, 0.5, 0.5])


def test_keep_tokens_head_tail_and_both_keep_the_special_token():
    ids = [0] + list(range(1, 21))  # [CLS] then 20 tokens
    assert keep_tokens(ids, 9, "head") == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert keep_tokens(ids, 9, "tail") == [0, 13, 14, 15, 16, 17, 18, 19, 20]
    assert keep_tokens(ids, 9, "head_tail") == [0, 1, 2, 15, 16, 17, 18, 19, 20]
    assert keep_tokens(ids[:5], 9, "head_tail") == ids[:5]
    assert keep_tokens([0, 1, 2, 3, 4, 5, 99], 5, "head_tail", 1, 1) == [0, 3, 4, 5, 99]


@pytest.mark.parametrize("truncation", ["head", "tail", "head_tail"])
def test_subword_encoder_trains_on_given_texts_and_truncates(tmp_path, truncation):
    p = TokenizerParams(vocab_size=200, min_frequency=1, max_length=8, truncation=truncation)
    enc = SubwordEncoder.train(TEXTS, p)
    assert "red" in enc.tokenizer.get_vocab() and enc.tokenizer.token_to_id("zebra") is None
    text = "the red cat item blue dog fish bird green black"
    row = enc.encode([text]).row(0)
    words = [enc.tokenizer.id_to_token(i) for i in row]
    assert len(row) == 8 and words[0] == CLS
    expected = {"head": "the red cat item blue dog fish", "tail": "item blue dog fish bird green black",
                "head_tail": "the blue dog fish bird green black"}  # a quarter of the 7 places from the start
    assert words[1:] == expected[truncation].split()
    enc.save(tmp_path)
    assert SubwordEncoder.load(tmp_path, p).encode([text]).row(0) == row


def test_ngram_hasher_features_weights_and_determinism():
    p = ModelParams(kind="bag", ngrams=2, buckets=1 << 16, counts="raw", bag_pooling="sum")
    h = NgramHasher(p, lowercase=True)
    r = h.encode(["good good film!", "Good good FILM!", ""])
    assert r.row(0) == r.row(1) and r.lengths[2] == 0
    # unigrams good, film, ! and bigrams "good good", "good film", "film !": 6 distinct, 'good' counted twice
    assert r.lengths[0] == 6 and sorted(r.weights[:6].tolist()) == [1, 1, 1, 1, 1, 2]
    mean = NgramHasher(p.model_copy(update={"bag_pooling": "mean", "counts": "log"}), True).encode(["good good film!"])
    assert mean.weights.sum() == pytest.approx(1.0) and mean.weights.max() == pytest.approx((1 + np.log(2)) / (5 + 1 + np.log(2)))
    chars = NgramHasher(p.model_copy(update={"char_ngrams": [3, 4]}), True).encode(["good good film!"])
    assert chars.lengths[0] > 6 and (chars.values < p.buckets).all()
    assert NgramHasher(p, lowercase=False).encode(["Good"]).row(0) != NgramHasher(p, lowercase=False).encode(["good"]).row(0)


def test_bag_batches_feed_the_bag_model():
    from bigmodel_core.models.bag import BagClassifier

    p = ModelParams(kind="bag", buckets=1024, d_model=8)
    h = NgramHasher(p, lowercase=True)
    data = h.encode(["a b c", "d", ""])
    m = BagClassifier(p.buckets, 3, 8, 0.0).eval()
    out = m(**h.collate(data, np.arange(3)))
    assert out.shape == (3, 3)
    # the empty text gets the bias only
    assert torch.allclose(out[2], m.head.bias, atol=1e-6)

import numpy as np
import pytest
import torch

from bigmodel_core.config import ModelParams, TokenizerParams, TrainParams
from bigmodel_core.evaluation.gate import decide
from bigmodel_core.evaluation.metrics import classification_metrics
from bigmodel_core.models import build_model
from bigmodel_core.models.encoder import masked_mean
from bigmodel_core.text.tokenizer import CLS, encode, pad_id, train_tokenizer
from bigmodel_core.training.batching import collate
from bigmodel_core.training.loop import fit, length_bucketed_batches, lr_lambda, seed_everything

TEXTS = [f"the {w} {v} item" for w in ("red", "blue", "green", "black") for v in ("cat", "dog", "bird", "fish")] * 5


def test_tokenizer_trains_on_given_texts_only_and_truncates():
    tok = train_tokenizer(TEXTS, TokenizerParams(vocab_size=200, min_frequency=1, max_length=8))
    vocab = tok.get_vocab()
    assert "red" in vocab and "zebra" not in vocab
    ids = encode(tok, ["the red cat item and more words than eight tokens"])[0]
    assert len(ids) == 8 and ids[0] == tok.token_to_id(CLS)
    # a word never seen in training falls apart into pieces or [UNK]; it is not in the vocabulary whole
    assert tok.token_to_id("zebra") is None


def test_collate_pads_and_masks():
    ids, mask = collate([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    h = torch.tensor([[[1.0], [3.0], [5.0]], [[2.0], [100.0], [100.0]]])
    assert masked_mean(h, mask).squeeze(-1).tolist() == [3.0, 2.0]


@pytest.mark.parametrize("kind", ["transformer", "bag"])
def test_models_give_one_logit_row_per_text_and_ignore_padding(kind):
    torch.manual_seed(0)
    m = build_model(ModelParams(kind=kind, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0), 50, 3, 16).eval()
    ids, mask = collate([[1, 5, 6], [1, 7]], 0)
    out = m(ids, mask)
    assert out.shape == (2, 3)
    wider = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], 1)
    out2 = m(wider, wider != 0)
    assert torch.allclose(out, out2, atol=1e-5)


def test_lr_schedule_warms_up_then_decays():
    f = lr_lambda(total_steps=10, warmup_steps=2)
    assert [round(f(s), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]


def test_length_buckets_cover_every_row_once():
    import random
    lengths = [random.Random(i).randint(1, 50) for i in range(1000)]
    batches = length_bucketed_batches(lengths, 32, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(1000))


def _toy():
    rng = np.random.default_rng(0)
    seqs, y = [], []
    for _ in range(400):
        c = int(rng.integers(0, 2))
        seqs.append([1] + list(rng.integers(2 + 10 * c, 12 + 10 * c, size=6)))
        y.append(c)
    return seqs, np.array(y)


def test_fit_learns_a_separable_task_deterministically():
    seqs, y = _toy()
    p = TrainParams(epochs=3, batch_size=32, lr=3e-3, num_threads=1, patience=0)
    mp = ModelParams(d_model=16, n_heads=2, n_layers=1, d_ff=32)
    results = []
    for _ in range(2):
        seed_everything(p.seed)  # weights come from the global RNG, as in the train stage
        m = build_model(mp, 30, 2, 8)
        m, r = fit(m, seqs[:300], y[:300], seqs[300:], y[300:], p, 0, 2, progress=False)
        results.append(r)
    h = results[0].history
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert results[0].best_val["accuracy"] > 0.95
    assert [x["train_loss"] for x in results[0].history] == [x["train_loss"] for x in results[1].history]
    assert results[0].device == "cpu" and results[0].precision == "fp32"


def test_early_stopping_and_callbacks():
    seqs, y = _toy()
    seen = []
    p = TrainParams(epochs=10, batch_size=64, lr=1e-9, patience=1, num_threads=1)
    m = build_model(ModelParams(d_model=16, n_heads=2, n_layers=1, d_ff=32), 30, 2, 8)
    _, r = fit(m, seqs[:300], y[:300], seqs[300:], y[300:], p, 0, 2, callbacks=[lambda e, row: seen.append(e)], progress=False)
    assert r.stopped_early and len(r.history) < 10 and seen == [h["epoch"] for h in r.history]


def test_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score
    rng = np.random.default_rng(1)
    yt, yp = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    yp[:100] = 3
    m = classification_metrics(yt, yp, num_classes=4, labels=list("abcd"))
    assert m["accuracy"] == pytest.approx(accuracy_score(yt, yp))
    assert m["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro"))
    assert sum(sum(r) for r in m["confusion_matrix"]) == 500 and m["per_class"]["a"]["support"] == int((yt == 0).sum())


def test_gate_floors_and_champion_comparison():
    from bigmodel_core.config import EvaluateParams
    p = EvaluateParams(min_accuracy=0.8, min_macro_f1=0.8, max_regression=0.01)
    assert decide({"accuracy": 0.9, "macro_f1": 0.9}, None, p)["promote"]
    d = decide({"accuracy": 0.9, "macro_f1": 0.9}, {"version": "3", "accuracy": 0.95, "macro_f1": 0.95}, p)
    assert not d["promote"] and d["reasons"] == ["vs_champion: 0.9000 < 0.9400"]
    assert decide({"accuracy": 0.9, "macro_f1": 0.945}, {"version": "3", "accuracy": 0.95, "macro_f1": 0.95}, p)["promote"]
    d = decide({"accuracy": 0.7, "macro_f1": 0.9}, None, p)
    assert not d["promote"] and d["reasons"][0].startswith("min_accuracy")


def test_bpe_tokenizer_and_training_are_reproducible_across_processes(tmp_path):
    """Same data and params give byte-identical tokenizer and weights in two fresh processes."""
    import hashlib
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, io, torch\n"
        "from bigmodel_core.config import ModelParams, TokenizerParams, TrainParams\n"
        "from bigmodel_core.data.demo import generate\n"
        "from bigmodel_core.models import build_model\n"
        "from bigmodel_core.text.tokenizer import encode, pad_id, train_tokenizer\n"
        "from bigmodel_core.training.loop import fit, seed_everything\n"
        "import numpy as np\n"
        "df = generate(600, 7).dropna()\n"
        "df = df[df.label.isin(['sports','business','science','travel'])]\n"
        "texts = df.text.tolist(); y = df.label.map({'sports':0,'business':1,'science':2,'travel':3}).to_numpy()\n"
        "tok = train_tokenizer(texts, TokenizerParams(vocab_size=500, max_length=24))\n"
        "ids = encode(tok, texts)\n"
        "p = TrainParams(epochs=1, num_threads=1)\n"
        "seed_everything(p.seed)\n"
        "m = build_model(ModelParams(d_model=16, n_heads=2, n_layers=1, d_ff=32), tok.get_vocab_size(), 4, 24, pad_id(tok))\n"
        "m, _ = fit(m, ids[:400], y[:400], ids[400:], y[400:], p, pad_id(tok), 4, progress=False)\n"
        "buf = io.BytesIO(); torch.save(m.state_dict(), buf)\n"
        "print(hashlib.sha256(tok.to_str().encode()).hexdigest(), hashlib.sha256(buf.getvalue()).hexdigest())\n"
    )
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc.stdout.split()[-2:])
    assert outs[0] == outs[1]

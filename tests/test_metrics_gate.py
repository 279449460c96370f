"""Unit tier: metrics against scikit-learn, the model gate, and reproducibility across processes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from bigmodel_core.config import EvaluateParams
from bigmodel_core.evaluation.gate import decide
from bigmodel_core.evaluation.metrics import classification_metrics


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
    p = EvaluateParams(min_accuracy=0.8, min_macro_f1=0.8, max_regression=0.01)
    assert decide({"accuracy": 0.9, "macro_f1": 0.9}, None, p)["promote"]
    d = decide({"accuracy": 0.9, "macro_f1": 0.9}, {"version": "3", "accuracy": 0.95, "macro_f1": 0.95}, p)
    assert not d["promote"] and d["reasons"] == ["vs_champion: 0.9000 < 0.9400"]
    assert decide({"accuracy": 0.9, "macro_f1": 0.945}, {"version": "3", "accuracy": 0.95, "macro_f1": 0.95}, p)["promote"]
    d = decide({"accuracy": 0.7, "macro_f1": 0.9}, None, p)
    assert not d["promote"] and d["reasons"][0].startswith("min_accuracy")


REPRO = """
import hashlib, io, torch
import numpy as np
from bigmodel_core.config import ModelParams, TokenizerParams, TrainParams
from bigmodel_core.data.demo import generate
from bigmodel_core.models import build_model
from bigmodel_core.text.encoders import SubwordEncoder
from bigmodel_core.training.loop import TrainData, fit, seed_everything
df = generate(600, 7).dropna()
labels = ['sports', 'business', 'science', 'travel']
df = df[df.label.isin(labels)]
texts, y = df.text.tolist(), df.label.map({l: i for i, l in enumerate(labels)}).to_numpy()
enc = SubwordEncoder.train(texts, TokenizerParams(vocab_size=500, max_length=24))
ids = enc.encode(texts)
idx = np.arange(len(texts))
data = TrainData(ids.take(idx[:400]), y[:400], ids.take(idx[400:]), y[400:], 4, enc.collate)
seed_everything(42)
m = build_model(ModelParams(d_model=16, n_heads=2, n_layers=1, d_ff=32), enc, labels, 24)
m, _ = fit(m, data, TrainParams(epochs=1, num_threads=1), progress=False)
buf = io.BytesIO(); torch.save(m.state_dict(), buf)
print(hashlib.sha256(enc.tokenizer.to_str().encode()).hexdigest(), hashlib.sha256(buf.getvalue()).hexdigest())
"""


def test_bpe_tokenizer_and_training_are_reproducible_across_processes():
    """Same data and params give byte-identical tokenizer and weights in two fresh processes."""
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", REPRO], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc.stdout.split()[-2:])
    assert outs[0] == outs[1]

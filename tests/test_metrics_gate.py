"""Unit tier: metrics against scikit-learn, the model gate, and reproducibility across processes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from bigmodel_core.config import EvaluateParams, parse_params
from bigmodel_core.errors import ConfigError
from bigmodel_core.evaluation.gate import decide
from bigmodel_core.evaluation.metrics import calibration, classification_metrics, pr_curve, roc_curve
from bigmodel_core.evaluation.slices import slice_groups, slice_metrics
from tests.conftest import tiny_params_dict


def test_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(1)
    yt, yp = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    yp[:100] = 3
    m = classification_metrics(yt, yp, num_classes=4, labels=list("abcd"))
    assert m["accuracy"] == pytest.approx(accuracy_score(yt, yp))
    assert m["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro"))
    assert sum(sum(r) for r in m["confusion_matrix"]) == 500 and m["per_class"]["a"]["support"] == int((yt == 0).sum())


def test_gate_floors_and_champion_comparison_needs_paired_predictions():
    p = EvaluateParams(min_accuracy=0.8, min_macro_f1=0.8, max_regression=0.01)
    assert decide({"accuracy": 0.9, "macro_f1": 0.9}, None, p)["promote"]
    d = decide({"accuracy": 0.7, "macro_f1": 0.9}, None, p)
    assert not d["promote"] and d["reasons"] == ["min_accuracy: 0.7000 < 0.8000"]
    # the comparison with a champion is decided on paired predictions (tests/test_promotion.py); without them it refuses
    with pytest.raises(ValueError, match="paired predictions"):
        decide({"accuracy": 0.9, "macro_f1": 0.9, "per_class": {}}, {"version": "3", "accuracy": 0.95, "macro_f1": 0.95}, p)



# --------------------------------------------------------------------------- AUCs, calibration
def test_roc_auc_and_average_precision_match_scikit_learn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    for trial in range(4):
        y = rng.integers(0, 2, 400)
        score = rng.random(400) * 0.7 + y * 0.3
        if trial % 2:
            score = np.round(score, 1)  # many tied scores: ties must move together, as in scikit-learn
        assert roc_curve(y, score)["auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
        assert pr_curve(y, score)["average_precision"] == pytest.approx(average_precision_score(y, score), abs=1e-12)
    y, perfect = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])
    assert roc_curve(y, perfect)["auc"] == 1.0 and pr_curve(y, perfect)["average_precision"] == 1.0
    assert roc_curve(y, 1 - perfect)["auc"] == 0.0
    roc = roc_curve(y, perfect)
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    assert roc_curve(np.ones(4), perfect) is None and roc_curve(np.zeros(4), perfect) is None  # one class: undefined
    assert pr_curve(np.zeros(4), perfect) is None


def test_expected_calibration_error_on_known_cases():
    # one bin: confidence 0.9, 80% right -> ECE 0.1
    assert calibration([0.9] * 100, [1] * 80 + [0] * 20)["ece"] == pytest.approx(0.1)
    # two bins of 50 rows: confidence 0.95 all right (gap 0.05), confidence 0.55 with 40% right (gap 0.15)
    conf = [0.95] * 50 + [0.55] * 50
    right = [1] * 50 + [1] * 20 + [0] * 30
    c = calibration(conf, right, bins=15)
    assert c["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.15)
    full = [b for b in c["bins"] if b["rows"]]
    assert len(c["bins"]) == 15 and [b["bin"] for b in full] == [8, 14]  # 0.55 in (8/15, 9/15], 0.95 in (14/15, 1]
    assert full[0]["accuracy"] == pytest.approx(0.4) and full[1]["confidence"] == pytest.approx(0.95)
    # perfectly calibrated: in each bin the accuracy equals the confidence
    assert calibration([0.5] * 4 + [1.0] * 3, [1, 0, 1, 0, 1, 1, 1])["ece"] == pytest.approx(0.0)


# --------------------------------------------------------------------------- slices
def _frame():
    import pandas as pd

    return pd.DataFrame({"text": [" ".join(["w"] * n) for n in range(1, 9)],  # 1..8 words
                         "source": ["a"] * 5 + ["b"] * 3,
                         "fixed_split": [None, "test"] * 4})


def test_slices_by_length_quartiles_source_and_named_columns():
    dims = slice_groups(_frame(), ["fixed_split"])
    assert list(dims) == ["length", "source", "fixed_split"]
    assert dims["length"]["edges"] == [2.75, 4.5, 6.25]  # quartiles of 1..8
    assert {k: v.tolist() for k, v in dims["length"]["groups"].items()} == {
        "1-2 words": [0, 1], "3-4 words": [2, 3], "5-6 words": [4, 5], "7-8 words": [6, 7]}
    assert {k: v.tolist() for k, v in dims["source"]["groups"].items()} == {"a": [0, 1, 2, 3, 4], "b": [5, 6, 7]}
    assert {k: v.tolist() for k, v in dims["fixed_split"]["groups"].items()} == {"(missing)": [0, 2, 4, 6],
                                                                                 "test": [1, 3, 5, 7]}
    with pytest.raises(ConfigError, match="evaluate.slice_columns: column 'region' is not in the test split"):
        slice_groups(_frame(), ["region"])
    # many texts of one length: equal edges merge, no empty bucket is reported
    import pandas as pd
    same = slice_groups(pd.DataFrame({"text": ["a b c"] * 5 + ["a b c d e f g h i"], "source": ["s"] * 6}), [])
    assert {k: v.tolist() for k, v in same["length"]["groups"].items()} == {"3 words": [0, 1, 2, 3, 4], "4-9 words": [5]}


def test_slice_metrics_for_challenger_and_champion():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    new = y.copy()
    new[[6, 7]] = 1 - y[[6, 7]]  # two errors, both in source b
    out = slice_metrics(slice_groups(_frame(), []), y, new, 2, champion_pred=y)
    b = next(s for s in out["source"]["slices"] if s["slice"] == "b")
    assert b["rows"] == 3 and b["accuracy"] == pytest.approx(1 / 3) and b["champion_accuracy"] == 1.0
    assert b["macro_f1"] == pytest.approx(classification_metrics(y[5:], new[5:], 2)["macro_f1"])
    assert b["macro_f1_difference"] == pytest.approx(b["macro_f1"] - 1.0)
    a = next(s for s in out["source"]["slices"] if s["slice"] == "a")
    assert a["accuracy"] == a["macro_f1"] == 1.0
    assert out["length"]["edges"] == [2.75, 4.5, 6.25]
    assert "champion_macro_f1" not in slice_metrics(slice_groups(_frame(), []), y, new, 2)["source"]["slices"][0]


# --------------------------------------------------------------------------- the budget rules
def _decide(runtime=None, baseline=None, slices=None, champion_pred=None, **rules):
    p = EvaluateParams(min_accuracy=0.0, min_macro_f1=0.0, bootstrap_samples=100, max_regression=1.0, **rules)
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    new = y.copy()
    new[[6, 7]] = 1 - y[[6, 7]]
    m = classification_metrics(y, new, 2)
    champion = None
    if champion_pred is not None:
        champion = {"version": "4", "accuracy": 1.0, "macro_f1": 1.0}
        slices = slice_metrics(slice_groups(_frame(), []), y, new, 2, champion_pred=champion_pred)
    d = decide(m, champion, p, y=y, pred=new, champion_pred=champion_pred, slices=slices, baseline=baseline,
               runtime=runtime)
    return d, {c["rule"]: c for c in d["checks"]}


def test_max_slice_regression_rule():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    d, checks = _decide(champion_pred=y, max_slice_regression=0.05, min_slice_rows=3)
    rule = checks["max_slice_regression"]
    assert rule["enforced"] and not rule["passed"] and not d["promote"]
    assert rule["worst"]["dimension"] == "source" and rule["worst"]["slice"] == "b" and rule["threshold"] == -0.05
    assert rule["slices_judged"] == 2 and rule["slices_too_small"] == 4  # the length buckets hold 2 rows each
    assert [(s["dimension"], s["slice"]) for s in rule["failed_slices"]] == [("source", "b")]
    reason = next(r for r in d["reasons"] if r.startswith("max_slice_regression"))
    assert "slice source=b (3 rows)" in reason and "champion v4" in reason and "1 of 2 fail" in reason
    d, checks = _decide(champion_pred=y, max_slice_regression=0.05, min_slice_rows=4)  # slice b is too small now
    assert checks["max_slice_regression"]["passed"] and checks["max_slice_regression"]["slices_judged"] == 1
    d, checks = _decide(champion_pred=y, max_slice_regression=0.8, min_slice_rows=3)  # a loose bound lets it pass
    assert checks["max_slice_regression"]["passed"]
    d, checks = _decide(champion_pred=y, min_slice_rows=3)  # null: reported, not judged
    rule = checks["max_slice_regression"]
    assert not rule["enforced"] and rule["passed"] and rule["value"] < 0 and rule["threshold"] is None
    assert "max_slice_regression" not in _decide(slices={})[1]  # no champion: nothing to compare with


def test_min_gain_over_baseline_rule():
    base = {"accuracy": 0.7, "macro_f1": 0.7}
    d, checks = _decide(baseline=base, min_gain_over_baseline=0.02)  # challenger macro-F1 0.75
    rule = checks["min_gain_over_baseline"]
    assert rule["passed"] and rule["value"] == pytest.approx(0.05) and rule["baseline_macro_f1"] == 0.7
    d, checks = _decide(baseline=base, min_gain_over_baseline=0.1)
    assert not d["promote"] and d["reasons"] == [
        "min_gain_over_baseline: macro-F1 0.7500 is +0.0500 over the TF-IDF + LR baseline's 0.7000; it must be >= +0.1000"]
    assert _decide(baseline={"accuracy": 0.75, "macro_f1": 0.75}, min_gain_over_baseline=0.0)[0]["promote"]  # a tie
    d, checks = _decide(baseline=base, min_gain_over_baseline=None)  # null: reported, not judged
    assert checks["min_gain_over_baseline"]["passed"] and not checks["min_gain_over_baseline"]["enforced"]
    # the default is a small tolerance: 0.004 below the baseline passes, 0.006 below closes the gate
    d, checks = _decide(baseline=base)
    assert checks["min_gain_over_baseline"]["enforced"] and checks["min_gain_over_baseline"]["threshold"] == -0.005
    assert _decide(baseline={"accuracy": 0.75, "macro_f1": 0.754})[0]["promote"]
    d, checks = _decide(baseline={"accuracy": 0.75, "macro_f1": 0.756})
    assert not d["promote"] and d["reasons"] == [
        "min_gain_over_baseline: macro-F1 0.7500 is -0.0060 over the TF-IDF + LR baseline's 0.7560; it must be >= -0.0050"]
    d, checks = _decide(baseline={"error": "one class"}, min_gain_over_baseline=0.0)
    assert not d["promote"] and "the baseline could not be scored (one class)" in d["reasons"][0]
    with pytest.raises(ConfigError, match="min_gain_over_baseline is set but baseline is false"):
        raw = tiny_params_dict()
        raw["evaluate"].update(baseline=False, min_gain_over_baseline=0.0)
        parse_params(raw)
    raw = tiny_params_dict()  # the default bows to baseline: false (no baseline, no rule)
    raw["evaluate"].pop("min_gain_over_baseline")
    raw["evaluate"].update(baseline=False)
    assert parse_params(raw).evaluate.min_gain_over_baseline == -0.005


def test_latency_and_size_budgets():
    runtime = {"latency_p95_ms": 12.5, "model_mb": 3.2}
    d, checks = _decide(runtime=runtime, max_latency_p95_ms=20, max_model_mb=5)
    assert d["promote"] and checks["max_latency_p95_ms"]["value"] == 12.5 and checks["max_model_mb"]["passed"]
    d, checks = _decide(runtime=runtime, max_latency_p95_ms=10, max_model_mb=3)
    assert not d["promote"] and d["reasons"] == [
        "max_latency_p95_ms: p95 latency of a one-text prediction is 12.50 ms, above the budget of 10 ms",
        "max_model_mb: the model bundle is 3.20 MB, above the budget of 3 MB"]
    d, checks = _decide(runtime=runtime)
    assert d["promote"] and not checks["max_latency_p95_ms"]["enforced"] and not checks["max_model_mb"]["enforced"]


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
m = build_model(ModelParams(kind="transformer", d_model=16, n_heads=2, n_layers=1, d_ff=32), enc, labels, 24)
m, _ = fit(m, data, TrainParams(epochs=1, num_threads=1), progress=False)
buf = io.BytesIO(); torch.save(m.state_dict(), buf)
print(hashlib.sha256(enc.tokenizer.to_str().encode()).hexdigest(), hashlib.sha256(buf.getvalue()).hexdigest())
"""


@pytest.mark.stage
def test_bpe_tokenizer_and_training_are_reproducible_across_processes():
    """Same data and params give byte-identical tokenizer and weights in two fresh processes."""
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", REPRO], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc.stdout.split()[-2:])
    assert outs[0] == outs[1]

"""End-to-end tier: `bigmodel run -S model.kind=linear` and `auto` register a model that MLflow serves from raw
text, `dvc repro` has nothing to do after them, and a forced kind worse than the TF-IDF baseline closes the gate."""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.conftest import dvc, make_workspace, run_cmd, tiny_params_dict
from tests.test_e2e_kinds import serve

pytestmark = pytest.mark.e2e

LABELS = ["sports", "business", "science", "travel"]


def _workspace(tmp_path, **evaluate):
    raw = tiny_params_dict()
    raw["evaluate"].pop("min_gain_over_baseline")  # the default rule judges these runs (-0.005)
    raw["evaluate"].update(evaluate)
    root = make_workspace(tmp_path / "ws", raw)
    dvc(root, "init", "--no-scm", "-q")
    return root


@pytest.mark.parametrize("kind", ["linear", "auto"])
def test_linear_and_auto_run_the_flow_register_serve_and_reproduce(tmp_path, kind):
    root = _workspace(tmp_path)
    proc = run_cmd([sys.executable, "-m", "bigmodel_core.cli", "run", "-S", f"model.kind={kind}"], root, timeout=900)
    assert "registered tiny-model version 1" in proc.stdout and "promoted" in proc.stdout, proc.stdout[-3000:]
    deploy = json.loads((root / "reports/deploy.json").read_text())
    train = json.loads((root / "metrics/train.json").read_text())
    meta = json.loads((root / "models/model/model.json").read_text())
    decision = json.loads((root / "reports/evaluate/decision.json").read_text())
    gain = next(c for c in decision["checks"] if c["rule"] == "min_gain_over_baseline")
    assert gain["enforced"] and gain["passed"] and gain["threshold"] == -0.005
    if kind == "linear":
        assert meta["kind"] == "linear" and train["model_kind"] == "linear" and train["chosen"] is None
        assert gain["value"] == 0  # the linear kind with its defaults is the baseline, on the same rows
        assert sorted(p.name for p in (root / "models/model").iterdir() if p.name.startswith("linear")) == [
            "linear.json", "linear_coef.npy", "linear_idf_0.npy", "linear_intercept.npy"]
    else:
        names = [r["name"] for r in train["candidates"]]
        assert names == ["linear", "bag"] and train["chosen"] in names and meta["kind"] == train["model_kind"]
        chosen = next(r for r in train["candidates"] if r["chosen"])
        assert chosen["val_macro_f1"] == max(r["val_macro_f1"] for r in train["candidates"])
        figures = ", ".join(f"{r['name']} {r['val_macro_f1']:.4f}" for r in train["candidates"])
        assert f"model: {train['chosen']} ({train['model_kind']}), the best of {figures}" in proc.stdout
        card = _artifact(root, deploy["run_id"], "run_card.md")
        assert "## Candidates" in card and f"**{train['chosen']}**" in card
        for r in train["candidates"]:
            assert re.search(rf"\| \**{r['name']}\** \| {r['kind']} \| {r['val_macro_f1']:.4f} \|", card), card
        children = _children(root, deploy["run_id"])
        assert sorted(children) == ["bag", "linear"]
        assert children["bag"].data.metrics["val_macro_f1"] == next(
            r["val_macro_f1"] for r in train["candidates"] if r["name"] == "bag")
    rows = serve(root, deploy["version"])  # mlflow.pyfunc.load_model in a fresh process, raw text in
    assert [r["label"] for r in rows[:2]] == ["sports", "business"]
    for r in rows:
        assert abs(sum(r[f"prob_{lab}"] for lab in LABELS) - 1) < 1e-6
    assert "up to date" in dvc(root, "status").stdout
    assert dvc(root, "repro").stdout.count("Running stage") == 0


def test_a_forced_kind_worse_than_the_baseline_closes_the_gate_by_default(tmp_path):
    """A transformer stopped after 4 optimizer steps is far below TF-IDF + LR on the demo rows. The floors are 0,
    so the baseline rule, at its default, is the one rule that closes the gate."""
    root = _workspace(tmp_path, min_accuracy=0.0, min_macro_f1=0.0)
    proc = run_cmd([sys.executable, "-m", "bigmodel_core.cli", "run", "-S", "model.kind=transformer",
                    "-S", "train.max_steps=4"], root, check=False, timeout=900)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    ev = json.loads((root / "metrics/eval.json").read_text())
    assert ev["baseline_macro_f1"] - ev["macro_f1"] > 0.005 and not ev["promote"]
    decision = json.loads((root / "reports/evaluate/decision.json").read_text())
    assert [c["rule"] for c in decision["checks"] if not c["passed"]] == ["min_gain_over_baseline"]
    reason = (f"min_gain_over_baseline: macro-F1 {ev['macro_f1']:.4f} is {ev['macro_f1'] - ev['baseline_macro_f1']:+.4f} "
              f"over the TF-IDF + LR baseline's {ev['baseline_macro_f1']:.4f}; it must be >= -0.0050")
    assert f"model gate closed: {reason}" in proc.stderr, proc.stderr[-3000:]
    deploy = json.loads((root / "reports/deploy.json").read_text())
    assert deploy["promoted"] is False and reason in deploy["reasons"]


def _client(root):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def _artifact(root, run_id: str, path: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")


def _children(root, run_id: str) -> dict:
    client = _client(root)
    exp = client.get_run(run_id).info.experiment_id
    found = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    return {r.info.run_name: r for r in found}

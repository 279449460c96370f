"""Stage tier: every stage in a temporary workspace, in-process, with tiny params."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from bigmodel_core import stages
from bigmodel_core.config import parse_params
from bigmodel_core.data import schemas
from bigmodel_core.errors import ConfigError, GateFailed
from bigmodel_core.io import read_table
from bigmodel_core.paths import Paths
from tests.conftest import env_for, make_workspace, tiny_params_dict


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run all eight stages once; tests below inspect what they left."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = make_workspace(tmp_path_factory.mktemp("stages") / "ws")
    mp.chdir(root)
    params = parse_params(tiny_params_dict())
    paths = Paths(root)
    reports = {name: stages.get(name).run(params, paths) for name in stages.STAGES}
    yield root, params, paths, reports
    mp.undo()


def test_ingest_and_clean(pipeline):
    root, params, paths, reports = pipeline
    raw = read_table(paths.raw / "rows.parquet", schemas.RAW)
    assert len(raw) == 800 == reports["ingest"]["rows"]
    clean = read_table(paths.clean / "rows.parquet", schemas.CLEAN)
    assert len(clean) == 800 and (clean["row_id"] == raw["row_id"]).all()
    assert not clean["text"].dropna().str.contains("<p>|&amp;", regex=True).any()
    assert clean["text"].dropna().str.len().max() <= params.clean.max_chars
    assert reports["clean"]["truncated_to_max_chars"] >= 1


def test_validate_balances_rows_and_keeps_reasons(pipeline):
    root, params, paths, reports = pipeline
    q = read_table(paths.validated / "quarantine.parquet", schemas.QUARANTINE)
    ok = read_table(paths.validated / "rows.parquet", schemas.VALIDATED)
    report = json.loads(paths.quality_report.read_text())
    assert report["rows_in"] == 800 == len(ok) + len(q)
    # DVC's metrics file holds the headline figures only (dvc exp show / metrics show), the report the rest
    headline = json.loads(paths.quality_metrics.read_text())
    assert headline == {"passed": True, "rows_in": 800, "rows_out": len(ok), "rows_quarantined": len(q),
                        "quarantine_fraction": report["quarantine_fraction"], "warnings": len(report["warnings"]),
                        "classes": len(params.data.labels)}
    assert {"rules", "profile", "class_counts", "drift"} <= set(report)
    # the tiny params quarantine under these rules; near_duplicate is warn there (twins kept in one split)
    assert set(q["rule"]) <= {"empty_text", "missing_label", "unknown_label", "conflicting_labels", "duplicate",
                              "too_short", "control_chars"}
    assert {"empty_text", "unknown_label", "missing_label", "duplicate", "too_short", "control_chars"} <= set(q["rule"])
    assert q["reason"].str.len().min() > 5 and (q["source_row"] >= 1).all()
    assert set(ok["label"]) == set(params.data.labels)


def test_augment_and_split_keep_variants_in_train(pipeline):
    root, params, paths, reports = pipeline
    parts = {s: read_table(paths.split / f"{s}.parquet", schemas.SPLIT) for s in schemas.SPLITS}
    assert parts["val"]["is_augmented"].sum() == 0 and parts["test"]["is_augmented"].sum() == 0
    assert parts["train"]["is_augmented"].sum() == reports["augment"]["variants"] > 0
    keys = {s: set(df["group_key"]) for s, df in parts.items()}
    assert not (keys["train"] & keys["test"]) and not (keys["val"] & keys["test"]) and not (keys["train"] & keys["val"])
    validated = read_table(paths.validated / "rows.parquet", schemas.VALIDATED)
    assert sum(int((~df["is_augmented"]).sum()) for df in parts.values()) == len(validated)


def test_train_writes_bundle_metrics_and_plot(pipeline):
    root, params, paths, reports = pipeline
    assert {p.name for p in paths.model.iterdir()} == {"model.pt", "model.json", "tokenizer.json", "data_profile.json"}
    profile = json.loads((paths.model / "data_profile.json").read_text())  # what the next run's data is compared with
    assert set(profile["label_priors"]) == set(params.data.labels) and abs(sum(profile["label_priors"].values()) - 1) < 1e-5
    m = json.loads(paths.train_metrics.read_text())
    assert m["epochs_run"] == 2 and len(m["history"]) == 2 and m["device"] == "cpu"
    lines = paths.training_plot.read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_loss,val_accuracy,val_macro_f1,lr,tokens_per_second" and len(lines) == 3
    steps = pd.read_csv(paths.training_steps_plot)
    assert list(steps.columns) == ["step", "epoch", "loss", "lr", "grad_norm", "tokens_per_second"]
    assert steps["step"].iloc[-1] == m["steps"] and (steps["loss"] > 0).all()
    assert 0.5 < m["padding_efficiency"] <= 1 and m["processes"] == 1 and m["resumed_from_step"] is None
    assert not (root / ".bigmodel/train").exists()  # checkpoints and encoded data are gone after success
    meta = json.loads((paths.model / "model.json").read_text())
    assert meta["labels"] == list(params.data.labels)


def test_evaluate_and_deploy_register_champion(pipeline):
    root, params, paths, reports = pipeline
    ev = json.loads(paths.eval_metrics.read_text())
    assert 0.3 <= ev["accuracy"] <= 1 and ev["champion_version"] is None and ev["promote"] is True
    # a flat file of scalars for `dvc metrics show/diff`; tables live under reports/evaluate/
    assert all(v is None or isinstance(v, (int, float, str, bool)) for v in ev.values())
    assert {"n_test", "ece", "latency_p50_ms", "latency_p95_ms", "rows_per_second", "model_mb", "parameters",
            "baseline_accuracy", "baseline_macro_f1", "champion_macro_f1"} <= set(ev)
    assert "roc_auc" not in ev and "positive_class" not in ev  # four classes: no binary curves
    assert 0 <= ev["ece"] <= 1 and 0 < ev["latency_p50_ms"] <= ev["latency_p95_ms"] and ev["rows_per_second"] > 0
    model_bytes = sum(f.stat().st_size for f in paths.model.iterdir())
    assert ev["model_mb"] == round(model_bytes / 1e6, 4)
    assert ev["parameters"] == json.loads(paths.train_metrics.read_text())["parameters"]
    assert 0.3 <= ev["baseline_macro_f1"] <= 1
    for name in ("confusion_matrix", "calibration", "training_curves"):
        assert (paths.evaluation / f"{name}.png").stat().st_size > 1000
    assert not (paths.evaluation / "roc_curve.png").exists()
    per_class = json.loads((paths.evaluation / "per_class.json").read_text())
    assert per_class["labels"] == list(params.data.labels) and set(per_class["per_class"]) == set(params.data.labels)
    assert sum(map(sum, per_class["confusion_matrix"])) == ev["n_test"]
    conf = pd.read_csv(paths.confusion_plot)
    assert list(conf.columns) == ["actual", "predicted"] and len(conf) == ev["n_test"]
    assert (conf["actual"] == conf["predicted"]).mean() == pytest.approx(ev["accuracy"])
    # slices: text-length quartiles (edges recorded) and source, each covering every test row once
    slices = json.loads((paths.evaluation / "slices.json").read_text())["dimensions"]
    assert list(slices) == ["length", "source"] and len(slices["length"]["edges"]) == 3
    for dim in slices.values():
        assert sum(s["rows"] for s in dim["slices"]) == ev["n_test"]
    assert [s["slice"] for s in slices["source"]["slices"]] == ["demo"]
    assert slices["source"]["slices"][0]["macro_f1"] == pytest.approx(ev["macro_f1"])
    base = json.loads((paths.evaluation / "baseline.json").read_text())
    test_rows = read_table(paths.split / "test.parquet", schemas.SPLIT)
    train = read_table(paths.split / "train.parquet", schemas.SPLIT)
    assert base["train_rows"] == int((~train["is_augmented"]).sum()) and base["test_rows"] == len(test_rows)
    assert base["macro_f1"] == ev["baseline_macro_f1"]
    runtime = json.loads((paths.evaluation / "runtime.json").read_text())
    assert runtime["latency"]["rows"] == min(200, len(test_rows)) and runtime["size"]["bytes"] == model_bytes
    calib = json.loads((paths.evaluation / "calibration.json").read_text())
    assert len(calib["bins"]) == 15 and sum(b["rows"] for b in calib["bins"]) == ev["n_test"]
    plot = pd.read_csv(paths.calibration_plot)
    assert list(plot.columns) == ["bin", "lower", "upper", "rows", "confidence", "accuracy"]
    assert plot["rows"].sum() == ev["n_test"]
    assert (plot["accuracy"] * plot["rows"]).sum() == pytest.approx(ev["accuracy"] * ev["n_test"])
    assert paths.roc_plot.read_text() == "fpr,tpr,threshold\n" and paths.pr_plot.read_text() == "recall,precision,threshold\n"
    decision = json.loads((paths.evaluation / "decision.json").read_text())
    checks = {c["rule"]: c for c in decision["checks"]}
    assert {"min_gain_over_baseline", "max_latency_p95_ms", "max_model_mb"} <= set(checks)
    assert "max_slice_regression" not in checks  # no champion yet
    assert checks["max_model_mb"]["value"] == ev["model_mb"] and not checks["max_model_mb"]["enforced"]
    d = json.loads(paths.deployment.read_text())
    assert d["version"] == "1" and d["aliases"] == ["challenger", "champion"] and d["promoted"]

    import mlflow
    from bigmodel_core.tracking.store import tracking_uri
    mlflow.set_tracking_uri(tracking_uri(params, root))
    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias("tiny-model", "champion")
    assert str(mv.version) == "1" and mv.tags["bigmodel.gate"] == "passed"
    run = client.get_run(d["run_id"])
    assert run.info.status == "FINISHED"
    # one run from training to registry: the train stage opened it, deploy finished it
    assert json.loads(paths.train_metrics.read_text())["mlflow_run_id"] == d["run_id"]
    assert len(client.get_metric_history(d["run_id"], "step_loss")) >= 2
    assert run.data.metrics["best_val_macro_f1"] == json.loads(paths.train_metrics.read_text())["val_macro_f1"]
    assert run.data.params["train.epochs"] == "2"
    assert len(client.get_metric_history(d["run_id"], "val_macro_f1")) == 2
    assert run.data.metrics["data_rows_in"] == 800
    arts = {a.path for a in client.list_artifacts(d["run_id"], "reports")}
    assert "reports/data_quality.json" in arts and "reports/quarantine.parquet" in arts
    assert {a.path for a in client.list_artifacts(d["run_id"], "plots")} >= {"plots/confusion_matrix.png",
                                                                             "plots/calibration.png"}
    assert {"reports/per_class.json", "reports/slices.json", "reports/baseline.json"} <= arts
    for key in ("ece", "latency_p95_ms", "model_mb", "baseline_macro_f1"):
        assert run.data.metrics[f"test_{key}"] == pytest.approx(ev[key])
    assert run.data.metrics[f"test_f1_{params.data.labels[0]}"] == per_class["per_class"][params.data.labels[0]]["f1"]
    mv_desc = client.get_model_version("tiny-model", "1").description
    assert f"baseline (TF-IDF + LR) macro-F1 {ev['baseline_macro_f1']:.4f}" in mv_desc


def test_champion_loads_in_a_fresh_process_from_raw_text(pipeline):
    root, params, paths, reports = pipeline
    code = (
        "import mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/tiny-model@champion')\n"
        "out = m.predict(pd.DataFrame({'text': ['<b>The striker scored a goal</b>', 'Shares and profit rose']}))\n"
        "print(out.to_json(orient='records'))\n"
        "try:\n"  # an empty text is what training set aside: refused, naming the rule
        "    m.predict(pd.DataFrame({'text': ['<b> </b>']}))\n"
        "except Exception as e:\n"
        "    print('refused', e.error_code, e.message)\n"
    )
    env = env_for(root)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-c", code], cwd=root.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *_, printed, refused = proc.stdout.strip().splitlines()
    assert refused.startswith("refused INVALID_PARAMETER_VALUE text[0] breaks input rule empty_text"), refused
    rows = json.loads(printed)
    assert len(rows) == 2
    for r in rows:
        assert r["label"] in params.data.labels
        probs = [r[f"prob_{l}"] for l in params.data.labels]
        assert abs(sum(probs) - 1) < 1e-4 and r[f"prob_{r['label']}"] == max(probs)


def test_pyfunc_matches_evaluate_predictions(pipeline):
    """Parity: the served model, given the raw texts, predicts what evaluate predicted on the cleaned test split."""
    root, params, paths, reports = pipeline
    from bigmodel_core.tracking.mlflow_store import load_pyfunc
    test = read_table(paths.split / "test.parquet", schemas.SPLIT)
    raw = read_table(paths.raw / "rows.parquet", schemas.RAW).set_index("row_id")
    raw_texts = raw.loc[test["row_id"], "text"].tolist()  # what a user sends: uncleaned text
    assert raw_texts != test["text"].tolist()  # some test rows had HTML or extra whitespace
    served = load_pyfunc(params, root).predict(pd.DataFrame({"text": raw_texts}))
    evaluated = pd.read_csv(paths.confusion_plot)["predicted"].astype(str).tolist()
    assert served["label"].tolist() == evaluated


def test_evaluate_budget_rules_close_the_gate_and_bad_slice_column_stops_it(pipeline):
    root, params, paths, reports = pipeline
    before = paths.eval_metrics.read_bytes()
    raw = tiny_params_dict()
    raw["evaluate"]["slice_columns"] = ["region"]
    with pytest.raises(ConfigError, match="evaluate.slice_columns: column 'region' is not in the test split"):
        stages.get("evaluate").run(parse_params(raw), paths)
    assert paths.eval_metrics.read_bytes() == before  # stopped before writing anything
    raw = tiny_params_dict()
    raw["evaluate"].update(slice_columns=["source_file"], max_model_mb=0.001, max_latency_p95_ms=1e-6,
                           min_gain_over_baseline=0.9, max_regression=1.0)
    ev = stages.get("evaluate").run(parse_params(raw), paths)  # the champion (v1) is this very model
    assert not ev["promote"] and ev["champion"]["version"] == "1"
    assert [r.split(":")[0] for r in ev["reasons"]] == ["min_gain_over_baseline", "max_latency_p95_ms", "max_model_mb"]
    slices = json.loads((paths.evaluation / "slices.json").read_text())["dimensions"]
    assert list(slices) == ["length", "source", "source_file"]
    checks = {c["rule"]: c for c in json.loads((paths.evaluation / "decision.json").read_text())["checks"]}
    assert checks["max_slice_regression"]["value"] == 0 and not checks["max_slice_regression"]["enforced"]
    raw = tiny_params_dict()
    raw["evaluate"]["baseline"] = False
    ev = stages.get("evaluate").run(parse_params(raw), paths)
    assert ev["baseline"] is None and json.loads(paths.eval_metrics.read_text())["baseline_macro_f1"] is None
    assert json.loads((paths.evaluation / "baseline.json").read_text()) == {"enabled": False}
    decision = json.loads((paths.evaluation / "decision.json").read_text())
    assert "min_gain_over_baseline" not in {c["rule"] for c in decision["checks"]}


def test_gate_failure_registers_but_keeps_champion(pipeline):
    root, params, paths, reports = pipeline
    raw = tiny_params_dict()
    raw["train"].update(epochs=1, lr=1e-7)  # a model that has learned nothing
    raw["evaluate"].update(min_accuracy=0.9, min_macro_f1=0.9)
    strict = parse_params(raw)
    stages.get("train").run(strict, paths)
    ev = stages.get("evaluate").run(strict, paths)
    assert ev["promote"] is False and ev["champion"]["version"] == "1"
    assert any(r.startswith("min_accuracy") for r in ev["reasons"])
    assert any(r.startswith("max_regression_vs_champion: macro-F1 difference to champion v1") for r in ev["reasons"])
    decision = json.loads((paths.evaluation / "decision.json").read_text())
    assert {c["rule"] for c in decision["checks"]} == {
        "min_accuracy", "min_macro_f1", "max_regression_vs_champion", "mcnemar_vs_champion",
        "max_slice_regression", "min_gain_over_baseline", "max_latency_p95_ms", "max_model_mb"}
    assert [c["rule"] for c in decision["checks"] if not c["passed"]] == [
        "min_accuracy", "min_macro_f1", "max_regression_vs_champion", "mcnemar_vs_champion"]  # the others report only
    ev_file = json.loads(paths.eval_metrics.read_text())
    assert ev_file["champion_version"] == "1" and ev_file["champion_macro_f1"] == ev["champion"]["macro_f1"]
    slices = json.loads((paths.evaluation / "slices.json").read_text())
    assert slices["champion_version"] == "1"
    assert all("champion_macro_f1" in s for dim in slices["dimensions"].values() for s in dim["slices"])
    boot = decision["comparison"]["bootstrap"]
    assert boot["low"] <= boot["difference"] <= boot["high"] < 0  # an untrained model is surely worse
    with pytest.raises(GateFailed, match=r"model gate closed: min_accuracy.*Registered tiny-model v2 as challenger "
                                         r"for inspection; champion stays v1"):
        stages.get("deploy").run(strict, paths)
    d = json.loads(paths.deployment.read_text())
    assert d["version"] == "2" and d["aliases"] == ["challenger"] and not d["promoted"]
    import mlflow
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("tiny-model", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("tiny-model", "challenger").version) == "2"
    v2 = client.get_model_version("tiny-model", "2")
    assert v2.tags["bigmodel.gate"] == "failed" and v2.tags["bigmodel.compared_with"] == "v1"
    assert "gate closed: min_accuracy" in v2.description and "compared with champion v1" in v2.description
    from bigmodel_core.tracking.registry import ledger

    last = ledger(client, "tiny-model")[-1]
    assert (last["action"], last["from"], last["to"], last["who"]) == ("kept", "1", "2", "pipeline")
    # a retried deploy (same bundle) registers nothing new and closes the gate again
    with pytest.raises(GateFailed):
        stages.get("deploy").run(strict, paths)
    assert len(client.search_model_versions("name = 'tiny-model'")) == 2


@pytest.mark.unit
def test_binary_curves_and_plot_files(tmp_path):
    """Two classes: ROC and PR of the second label, written as CSV for `dvc plots` (values checked by scikit-learn)."""
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    from bigmodel_core.evaluation.metrics import calibration
    from bigmodel_core.stages.evaluate import _binary_curves, _write_plots

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(0.3 * y + 0.7 * rng.random(300), 0, 1)
    probs = np.stack([1 - p1, p1], 1)
    b = _binary_curves(y, probs, ["ham", "spam"])
    assert b["positive"] == "spam"
    assert b["roc"]["auc"] == pytest.approx(roc_auc_score(y, p1)) and b["pr"]["ap"] == pytest.approx(average_precision_score(y, p1))
    paths = Paths(tmp_path)
    labels = np.array(["ham", "spam"])
    _write_plots(paths, labels[y].tolist(), labels[probs.argmax(1)].tolist(), b, calibration(probs.max(1), probs.argmax(1) == y))
    roc, pr = pd.read_csv(paths.roc_plot), pd.read_csv(paths.pr_plot)
    assert (roc.iloc[0]["fpr"], roc.iloc[0]["tpr"], roc.iloc[-1]["fpr"], roc.iloc[-1]["tpr"]) == (0, 0, 1, 1)
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].is_monotonic_increasing
    area = float(((roc["fpr"].diff().fillna(0)) * (roc["tpr"] + roc["tpr"].shift().fillna(0)) / 2).sum())
    assert area == pytest.approx(b["roc"]["auc"])  # every point kept (300 rows < the 1,001-point cap)
    assert pr.iloc[0]["recall"] == 0 and pr.iloc[-1]["recall"] == 1 and pr["recall"].is_monotonic_increasing
    assert pd.read_csv(paths.calibration_plot)["rows"].sum() == 300


def test_cli_predict_and_dag(pipeline):
    from typer.testing import CliRunner

    from bigmodel_core.cli import app

    root, params, paths, reports = pipeline
    runner = CliRunner()
    res = runner.invoke(app, ["predict", "The striker scored a goal", "Shares and profit rose"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].split()[0] == "label" and len(lines) == 3
    assert all(l.split()[0] in params.data.labels for l in lines[1:])
    res = runner.invoke(app, ["predict", "x", "--model-uri", "models:/tiny-model@nosuchalias"])
    assert res.exit_code == 1 and "models:/tiny-model@nosuchalias: cannot load model" in res.output
    res = runner.invoke(app, ["dag"])
    assert res.exit_code == 0 and res.output.splitlines()[0].split()[0] == "ingest"


def test_streaming_stages_give_the_same_rows_batch_by_batch(pipeline, tmp_path, monkeypatch):
    """clean, validate, augment and split stream their input in record batches: with batches of 7 rows the
    outputs hold the same rows (order aside) and the reports the same figures as with one batch."""
    import shutil

    from bigmodel_core import io

    root, params, paths, reports = pipeline
    small = Paths(tmp_path / "ws")
    shutil.copytree(root / "data/raw", small.root / "data/raw")
    monkeypatch.setattr(io, "BATCH_ROWS", 7)
    monkeypatch.chdir(small.root)
    got = {name: stages.get(name).run(params, small) for name in ("clean", "validate", "augment", "split")}
    by_id = lambda df: df.sort_values("row_id").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(by_id(pd.read_parquet(small.clean / "rows.parquet")),
                                  by_id(pd.read_parquet(paths.clean / "rows.parquet")))
    for f in ("rows.parquet", "quarantine.parquet"):
        pd.testing.assert_frame_equal(by_id(pd.read_parquet(small.validated / f)),
                                      by_id(pd.read_parquet(paths.validated / f)))
    pd.testing.assert_frame_equal(by_id(pd.read_parquet(small.augmented / "rows.parquet")),
                                  by_id(pd.read_parquet(paths.augmented / "rows.parquet")))
    for s in schemas.SPLITS:
        pd.testing.assert_frame_equal(by_id(pd.read_parquet(small.split / f"{s}.parquet")),
                                      by_id(pd.read_parquet(paths.split / f"{s}.parquet")))
    # drift depends on the registry (a champion exists by now, not when the pipeline ran), not on batches
    without_drift = lambda r: {k: v for k, v in r.items() if k != "drift"}  # noqa: E731
    assert {k: without_drift(v) for k, v in got.items()} == \
        {name: without_drift(reports[name]) for name in ("clean", "validate", "augment", "split")}
    assert got["validate"]["rows_quarantined"] > 0 and got["validate"]["rules"]["near_duplicate"]["rows"] > 0
    import pyarrow.parquet as pq
    assert pq.ParquetFile(small.split / "train.parquet").metadata.num_row_groups > 10  # it did stream


@pytest.mark.unit
def test_split_check_sees_a_leak_across_batches():
    from bigmodel_core.data.split import SplitCheck

    def part(key, split, label):
        return pd.DataFrame({"row_id": [f"r{key}{split}"], "group_key": [key], "split": [split], "label": [label],
                             "is_augmented": [False]})

    check = SplitCheck()
    for s in schemas.SPLITS:
        check.add(part(f"{s}0000000000000000000", s, "a"))
    check.add(part("ab12" * 5, "train", "a"))
    check.add(part("ab12" * 5, "test", "a"))  # the same text, another batch, another split
    with pytest.raises(GateFailed, match=r"1 text\(s\) appear in more than one split, e.g. group ab12ab12ab12ab12"):
        check.result()

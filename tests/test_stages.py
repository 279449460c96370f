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
from bigmodel_core.errors import GateFailed
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
    report = json.loads(paths.quality_metrics.read_text())
    assert report["rows_in"] == 800 == len(ok) + len(q)
    assert set(q["rule"]) <= {"empty_text", "missing_label", "unknown_label", "conflicting_labels", "duplicate"}
    assert {"empty_text", "unknown_label", "missing_label", "duplicate"} <= set(q["rule"])
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
    assert {p.name for p in paths.model.iterdir()} == {"model.pt", "model.json", "tokenizer.json"}
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
    assert 0.3 <= ev["accuracy"] <= 1 and ev["champion"] is None and ev["promote"] is True
    assert (paths.evaluation / "confusion_matrix.png").stat().st_size > 1000
    conf = pd.read_csv(paths.confusion_plot)
    assert list(conf.columns) == ["actual", "predicted"] and len(conf) == ev["n_test"]
    d = json.loads(paths.deployment.read_text())
    assert d["version"] == "1" and d["aliases"] == ["challenger", "champion"] and d["promoted"]

    import mlflow
    from bigmodel_core.tracking.mlflow_store import tracking_uri
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
    assert {a.path for a in client.list_artifacts(d["run_id"], "plots")} >= {"plots/confusion_matrix.png"}


def test_champion_loads_in_a_fresh_process_from_raw_text(pipeline):
    root, params, paths, reports = pipeline
    code = (
        "import mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/tiny-model@champion')\n"
        "out = m.predict(pd.DataFrame({'text': ['<b>The striker scored a goal</b>', 'Shares and profit rose', '']}))\n"
        "print(out.to_json(orient='records'))\n"
    )
    env = env_for(root)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-c", code], cwd=root.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(rows) == 3
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
    assert {c["rule"] for c in decision["checks"]} == {"min_accuracy", "min_macro_f1", "max_regression_vs_champion",
                                                      "mcnemar_vs_champion"}
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

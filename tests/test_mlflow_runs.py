"""The pipeline's MLflow run as an MLflow user sees it: one run per execution under either runner, a FAILED
status with the reason when a gate stops it, the best epoch's figures as labelled summary metrics, the
splits as datasets, and the data-quality report and run card readable in the UI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from bigmodel_core.config import parse_params
from bigmodel_core.io import sha256_file
from bigmodel_core.tracking import pipeline_run
from bigmodel_core.tracking.live import MlflowLive
from bigmodel_core.tracking.pipeline_run import close_run, open_run
from bigmodel_core.reporting.report_html import data_quality_html, markdown_html
from tests.conftest import dvc, make_workspace, tiny_params_dict

ENV = ("MLFLOW_TRACKING_URI", "BIGMODEL_MLFLOW_RUN_ID", "BIGMODEL_FLOW_RUN_ID", "BIGMODEL_FLOW_RUN_NAME",
       "BIGMODEL_FLOW_RUN_URL", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")


@pytest.fixture
def clean_env(monkeypatch):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def client_for(root: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def all_runs(client, name: str = "bigmodel") -> dict:
    exp = client.get_experiment_by_name(name)
    return {r.info.run_id: r for r in client.search_runs([exp.experiment_id], max_results=1000)} if exp else {}


def read_artifact(client, run_id: str, path: str) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()


def artifact_paths(client, run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, folder)}


QUALITY = {"passed": True, "rows_in": 10, "rows_out": 8, "rows_quarantined": 2, "quarantine_fraction": 0.2,
           "rules": {"duplicate": {"policy": "quarantine", "rows": 2, "fraction": 0.2, "max_fraction": 0.5,
                                   "examples": [{"source_file": "a.csv", "source_row": 3, "text": "<b>dup</b>",
                                                 "label": "sports"}]}},
           "class_counts": {"business": 4, "sports": 4}, "failures": []}


# --------------------------------------------------------------------------- open_run / close_run, unit
def test_open_and_close_record_name_link_status_reason_report_and_card(tmp_path, clean_env):
    root = tmp_path
    params = parse_params(tiny_params_dict())
    (root / "reports").mkdir()
    (root / "reports/data_quality.json").write_text(json.dumps(QUALITY))
    (root / "data/validated").mkdir(parents=True)
    pd.DataFrame({"rule": ["duplicate"], "reason": ["exact duplicate of another row"], "source_file": ["a.csv"],
                  "source_row": [3], "text": ["<b>dup</b>"], "label": ["sports"]}
                 ).to_parquet(root / "data/validated/quarantine.parquet")
    name, url = "retrain-1a2b3c4d-20261124-031200", "http://127.0.0.1:4200/runs/flow-run/f00d"
    run_id = open_run(params, root, name, {"bigmodel.flow_run_id": "f00d", "bigmodel.flow_run_url": url})
    client = client_for(root)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.info.run_name == name
    assert run.data.tags["bigmodel.run_name"] == name and run.data.tags["bigmodel.flow_run_id"] == "f00d"
    assert run.data.tags["bigmodel.flow_run_url"] == url
    assert f"Prefect flow run: [{name}]({url})" in run.data.tags["mlflow.note.content"]
    assert run.data.params["train.epochs"] == "2" and run.data.params["deploy.model_name"] == "tiny-model"
    assert run.info.experiment_id == client.get_experiment_by_name(params.tracking.experiment).experiment_id

    reason = "model gate closed: min_accuracy: 0.41 < 0.99. Registered tiny-model v2 as challenger"
    card = "# retrain: gate closed\n\n| stage | result |\n| --- | --- |\n| train | ran |\n\n- **Stopped:** `deploy`\n"
    time.sleep(0.01)
    close_run(params, root, run_id, "FAILED", reason, card)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.info.end_time >= run.info.start_time
    assert run.data.tags["bigmodel.stopped_by"] == "model gate" and run.data.tags["bigmodel.failure_reason"] == reason
    assert run.data.tags["mlflow.note.content"].startswith(f"**Stopped by model gate:** {reason}")
    assert {"run_card.md", "run_card.html", "reports"} <= artifact_paths(client, run_id)
    assert read_artifact(client, run_id, "run_card.md") == card
    page = read_artifact(client, run_id, "run_card.html")
    assert "<h1>retrain: gate closed</h1>" in page and "<th>stage</th>" in page and "<td>train</td>" in page
    assert "<li><strong>Stopped:</strong> <code>deploy</code></li>" in page and "---" not in page
    assert artifact_paths(client, run_id, "reports") == {"reports/data_quality.html", "reports/data_quality.json"}
    assert json.loads(read_artifact(client, run_id, "reports/data_quality.json")) == QUALITY
    dq = read_artifact(client, run_id, "reports/data_quality.html")
    assert "PASSED" in dq and "exact duplicate of another row" in dq and "&lt;b&gt;dup&lt;/b&gt;" in dq
    assert "<b>dup</b>" not in dq  # row text is escaped, never markup

    # a reason longer than MLflow's tag limit is cut to it; a report already attached is not replaced
    (root / "reports/data_quality.json").write_text(json.dumps({**QUALITY, "rows_in": 99}))
    close_run(params, root, run_id, "KILLED", "x" * 9000)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["bigmodel.stopped_by"] == "cancelled"
    assert len(run.data.tags["bigmodel.failure_reason"]) == 8000
    assert json.loads(read_artifact(client, run_id, "reports/data_quality.json"))["rows_in"] == 10
    with pytest.raises(ValueError, match="status must be one of"):
        close_run(params, root, run_id, "DONE")


def test_dvc_experiments_name_the_run_and_plain_runs_are_marked_as_no_flow(tmp_path, clean_env):
    params = parse_params(tiny_params_dict())
    assert pipeline_run.default_run_name().startswith("retrain-")
    clean_env.setenv("DVC_EXP_NAME", "lucky-lr")
    assert pipeline_run.default_run_name() == "lucky-lr"
    run = client_for(tmp_path).get_run(open_run(params, tmp_path, pipeline_run.default_run_name(), {}))
    assert run.info.run_name == "lucky-lr" and run.data.tags["bigmodel.dvc_experiment"] == "lucky-lr"
    assert run.data.tags["bigmodel.flow_run_id"] == "none" and "bigmodel.flow_run_url" not in run.data.tags
    assert "DVC experiment: lucky-lr" in run.data.tags["mlflow.note.content"]
    clean_env.setenv("BIGMODEL_FLOW_RUN_NAME", "retrain-0badf00d-20261124-031200")
    assert pipeline_run.default_run_name() == "retrain-0badf00d-20261124-031200"  # the flow's name comes first


def test_unreachable_tracking_warns_once_and_never_raises(tmp_path, clean_env, capsys):
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    clean_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    clean_env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    params = parse_params(tiny_params_dict())
    assert open_run(params, tmp_path, "retrain-x", {}) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "MLflow tracking unavailable" in out[0]
    close_run(params, tmp_path, "0" * 32, "FAILED", "data gate failed: only 3 rows pass")
    assert "could not" in capsys.readouterr().out


def test_training_logs_into_the_flows_run_and_leaves_closing_to_the_flow(tmp_path, clean_env):
    params = parse_params(tiny_params_dict())
    flow_run = open_run(params, tmp_path, "retrain-flow", {"bigmodel.flow_run_id": "f00d"})
    clean_env.setenv("BIGMODEL_MLFLOW_RUN_ID", flow_run)
    live = MlflowLive.open(params, tmp_path, resume_run_id="an-old-crashed-run")
    assert live is not None and live.run_id == flow_run and not live.owns_run
    live.on_epoch(1, {"epoch": 1, "train_loss": 1.0, "val_macro_f1": 0.6})
    live.on_epoch(2, {"epoch": 2, "train_loss": 0.8, "val_macro_f1": 0.5})
    live.finish("FINISHED", {"best_epoch": 1, "best_val_macro_f1": 0.6}, summary_step=1,
                tags={"bigmodel.summary": "best epoch 1"})
    client = client_for(tmp_path)
    run = client.get_run(flow_run)
    assert run.info.status == "RUNNING" and run.info.end_time is None  # the flow ends it
    assert [(m.step, m.value) for m in client.get_metric_history(flow_run, "best_val_macro_f1")] == [(1, 0.6)]
    assert [m.value for m in client.get_metric_history(flow_run, "val_macro_f1")] == [0.6, 0.5]
    assert "best epoch 1" in run.data.tags["mlflow.note.content"]
    live.finish("FAILED", reason="train: RuntimeError: boom")
    run = client.get_run(flow_run)
    assert run.info.status == "RUNNING" and "bigmodel.failure_reason" not in run.data.tags
    assert list(all_runs(client)) == [flow_run]
    # a flow run id from another store: train opens a run of its own rather than losing the metrics
    clean_env.setenv("BIGMODEL_MLFLOW_RUN_ID", "0" * 32)
    other = MlflowLive.open(params, tmp_path)
    assert other is not None and other.owns_run and other.run_id != flow_run


@pytest.mark.unit
def test_summary_metrics_are_the_best_epochs_and_say_so():
    figures, sentence = pipeline_run.summary_metrics(
        {"best_epoch": 2, "epochs_run": 4, "stopped_early": True, "val_accuracy": 0.9, "val_macro_f1": 0.8,
         "val_loss": 0.3})
    assert figures == {"best_epoch": 2.0, "best_val_accuracy": 0.9, "best_val_macro_f1": 0.8, "best_val_loss": 0.3}
    assert "best epoch's (epoch 2 of 4, training stopped early)" in sentence and "last point is epoch 4" in sentence


@pytest.mark.unit
def test_pages_escape_their_content_and_show_a_failed_gate():
    failed = {**QUALITY, "passed": False, "failures": ["only 8 rows pass, min_rows is 50 <script>"]}
    page = data_quality_html(failed, note="this run's failure")
    assert "FAILED" in page and "min_rows is 50 &lt;script&gt;" in page and "<script>" not in page
    assert "<td>duplicate</td><td>quarantine</td><td class=\"num\">2</td>" in page
    md = markdown_html("## A [link](https://example.org/x) & <tag>\n\n1. one\n2. two\n\n```\n<raw>\n```\n")
    assert '<h2>A <a href="https://example.org/x">link</a> &amp; &lt;tag&gt;</h2>' in md
    assert "<ol><li>one</li><li>two</li></ol>" in md and "<pre>&lt;raw&gt;</pre>" in md


# --------------------------------------------------------------------------- dvc repro, end to end
@pytest.fixture(scope="module")
def repro_ws(tmp_path_factory):
    """The tiny pipeline under plain `dvc repro`, once; the tests below change params and repro again."""
    mp = pytest.MonkeyPatch()
    for var in ENV:
        mp.delenv(var, raising=False)
    root = make_workspace(tmp_path_factory.mktemp("mlflow-runs") / "ws")
    dvc(root, "init", "--no-scm", "-q")
    dvc(root, "config", "core.analytics", "false")
    dvc(root, "repro")
    yield root
    mp.undo()


def set_params(root: Path, **changes) -> None:
    """Start from the tiny params and apply section.key=value changes."""
    raw = tiny_params_dict()
    for key, value in changes.items():
        section, name = key.split("__")
        raw[section][name] = value
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def new_runs(client, before: dict) -> list:
    return [r for rid, r in all_runs(client).items() if rid not in before]


@pytest.mark.e2e
def test_a_passing_dvc_repro_is_one_finished_run_with_summary_datasets_and_reports(repro_ws):
    root = repro_ws
    client = client_for(root)
    runs = all_runs(client)
    assert len(runs) == 1
    run = next(iter(runs.values()))
    train = json.loads((root / "metrics/train.json").read_text())
    deploy = json.loads((root / "reports/deploy.json").read_text())
    assert train["mlflow_run_id"] == deploy["run_id"] == run.info.run_id
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("retrain-")
    assert run.info.end_time >= run.info.start_time
    assert run.data.tags["bigmodel.gate"] == "passed" and run.data.tags["bigmodel.model_version"] == "tiny-model v1"

    # summary metrics: the best epoch's, labelled; the per-epoch series keep every epoch
    best = train["best_epoch"]
    best_row = next(h for h in train["history"] if h["epoch"] == best)
    m = run.data.metrics
    assert m["best_epoch"] == best and m["best_val_macro_f1"] == pytest.approx(train["val_macro_f1"])
    assert m["best_val_macro_f1"] == pytest.approx(best_row["val_macro_f1"])
    assert m["best_val_accuracy"] == pytest.approx(train["val_accuracy"])
    assert m["best_val_loss"] == pytest.approx(train["val_loss"])
    assert [p.step for p in client.get_metric_history(run.info.run_id, "best_val_macro_f1")] == [best]
    series = client.get_metric_history(run.info.run_id, "val_macro_f1")
    assert [p.value for p in sorted(series, key=lambda p: p.step)] == pytest.approx(
        [h["val_macro_f1"] for h in train["history"]])
    summary = f"best epoch's (epoch {best} of {train['epochs_run']})"
    assert summary in run.data.tags["bigmodel.summary"] and summary in run.data.tags["mlflow.note.content"]
    assert "test accuracy" in run.data.tags["mlflow.note.content"]

    # the splits are the run's datasets, with their row counts and file hashes
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "testing"} and len(run.inputs.dataset_inputs) == 3
    for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
        path = root / "data/split" / f"{split}.parquet"
        ds = inputs[context]
        assert ds.name == split and ds.digest == sha256_file(path)[:16]
        assert json.loads(ds.profile)["num_rows"] == pq.read_metadata(path).num_rows == len(pd.read_parquet(path))
        assert json.loads(ds.source)["uri"] == str(path.resolve())
        assert {c["name"] for c in json.loads(ds.schema)["mlflow_colspec"]} >= {"text", "label"}

    # reports readable in the UI: the data-quality page, the plots as PNG
    reports = artifact_paths(client, run.info.run_id, "reports")
    assert {"reports/data_quality.html", "reports/data_quality.json"} <= reports
    page = read_artifact(client, run.info.run_id, "reports/data_quality.html")
    quality = json.loads((root / "reports/data_quality.json").read_text())
    assert "PASSED" in page and f"{quality['rows_in']:,}" in page and "<table>" in page
    plots = artifact_paths(client, run.info.run_id, "plots")
    assert {"plots/confusion_matrix.png", "plots/training_curves.png", "plots/calibration.png"} <= plots


@pytest.mark.e2e
def test_a_closed_model_gate_leaves_one_failed_run_with_the_rule(repro_ws):
    root = repro_ws
    client = client_for(root)
    before = all_runs(client)
    # a new model, and a gate it cannot pass whatever its accuracy: a size budget no model meets
    set_params(root, evaluate__max_model_mb=0.001, train__seed=11)
    out = dvc(root, "repro", check=False)
    assert out.returncode != 0 and "model gate closed" in out.stdout + out.stderr
    added = new_runs(client, before)
    assert len(added) == 1
    run = added[0]
    assert run.info.status == "FAILED" and run.info.end_time >= run.info.start_time
    assert run.data.tags["bigmodel.stopped_by"] == "model gate" and run.data.tags["bigmodel.gate"] == "failed"
    assert "max_model_mb" in run.data.tags["bigmodel.failure_reason"]
    assert run.data.tags["bigmodel.failure_reason"].startswith("model gate closed: ")
    assert run.data.tags["mlflow.note.content"].startswith("**Stopped by model gate:**")
    version = json.loads((root / "reports/deploy.json").read_text())["version"]
    assert run.data.tags["bigmodel.model_version"] == f"tiny-model v{version}"  # registered for inspection
    assert json.loads((root / "metrics/train.json").read_text())["mlflow_run_id"] == run.info.run_id
    assert "best_val_macro_f1" in run.data.metrics and "test_accuracy" in run.data.metrics
    assert all(client.get_run(rid).info.status == "FINISHED" for rid in before)  # earlier runs untouched


@pytest.mark.e2e
def test_a_closed_data_gate_leaves_a_failed_run_with_its_report(repro_ws):
    root = repro_ws
    client = client_for(root)
    before = all_runs(client)
    good_report = (root / "reports/data_quality.json").read_text()
    set_params(root, validate__min_rows=1_000_000)
    out = dvc(root, "repro", check=False)
    assert out.returncode != 0 and "data gate failed" in out.stdout + out.stderr
    added = new_runs(client, before)
    assert len(added) == 1
    run = added[0]
    assert run.info.status == "FAILED" and run.info.end_time >= run.info.start_time
    assert run.data.tags["bigmodel.stopped_by"] == "data gate"
    reason = run.data.tags["bigmodel.failure_reason"]
    assert reason.startswith("data gate failed: ") and "min_rows is 1000000" in reason
    assert run.data.params["validate.min_rows"] == "1000000"
    assert {"reports/data_quality.html", "reports/data_quality.json"} == artifact_paths(client, run.info.run_id, "reports")
    report = json.loads(read_artifact(client, run.info.run_id, "reports/data_quality.json"))
    assert report["passed"] is False and any("min_rows is 1000000" in f for f in report["failures"])
    page = read_artifact(client, run.info.run_id, "reports/data_quality.html")
    assert "FAILED" in page and "min_rows is 1000000" in page and "Why the gate closed" in page
    assert (root / "reports/data_quality.json").read_text() == good_report  # the last good report stays


@pytest.mark.e2e
def test_under_the_flow_every_stage_logs_into_the_flows_run(repro_ws, monkeypatch):
    """What the flow does, by hand: open a run, run the stages with its id in the environment, close it."""
    root = repro_ws
    client = client_for(root)
    set_params(root, train__seed=12, evaluate__max_regression=1.0)  # a new model that the gate lets through
    params = parse_params(yaml.safe_load((root / "params.yaml").read_text()))
    before = all_runs(client)
    flow_run = open_run(params, root, "retrain-1a2b3c4d-20261124-031200", {"bigmodel.flow_run_id": "f00d"})
    monkeypatch.setenv("BIGMODEL_MLFLOW_RUN_ID", flow_run)
    monkeypatch.setenv("BIGMODEL_FLOW_RUN_ID", "f00d")
    out = dvc(root, "repro")
    assert "Running stage 'train'" in out.stdout and "Running stage 'deploy'" in out.stdout
    assert [r.info.run_id for r in new_runs(client, before)] == [flow_run]  # no run of their own
    run = client.get_run(flow_run)
    assert run.info.status == "FINISHED"  # deploy's context ended it; the flow's close sets the final word
    train = json.loads((root / "metrics/train.json").read_text())
    assert train["mlflow_run_id"] == flow_run and json.loads((root / "reports/deploy.json").read_text())["run_id"] == flow_run
    assert run.data.metrics["best_val_macro_f1"] == pytest.approx(train["val_macro_f1"])
    assert len(client.get_metric_history(flow_run, "step_loss")) >= 2 and "test_macro_f1" in run.data.metrics
    version = json.loads((root / "reports/deploy.json").read_text())["version"]
    assert run.data.tags["bigmodel.model_version"] == f"tiny-model v{version}" and len(run.inputs.dataset_inputs) == 3
    assert not (root / ".bigmodel/train/mlflow_run.json").exists()
    deploy_end = run.info.end_time
    time.sleep(0.01)
    close_run(params, root, flow_run, "FINISHED", card_markdown="# retrain-1a2b3c4d: completed\n")
    run = client.get_run(flow_run)
    assert run.info.status == "FINISHED" and run.info.end_time > deploy_end
    assert "bigmodel.failure_reason" not in run.data.tags and "run_card.html" in artifact_paths(client, flow_run)
    first_end = run.info.end_time

    # the next flow run finds train up to date and deploy forced: deploy logs into the new flow run, not the old one
    second = open_run(params, root, "retrain-1a2b3c4d-20261124-041200", {"bigmodel.flow_run_id": "beef"})
    monkeypatch.setenv("BIGMODEL_MLFLOW_RUN_ID", second)
    out = dvc(root, "repro", "--single-item", "--force", "deploy")
    assert "Running stage 'deploy'" in out.stdout and "Running stage 'train'" not in out.stdout
    run = client.get_run(second)
    assert run.data.tags["bigmodel.trained_in_run"] == flow_run and run.data.tags["bigmodel.model_run"] == flow_run
    assert run.data.tags["bigmodel.model_version"] == f"tiny-model v{version}"  # the same bundle, not registered again
    assert run.data.metrics["best_val_macro_f1"] == pytest.approx(train["val_macro_f1"])
    assert [p.step for p in client.get_metric_history(second, "best_val_macro_f1")] == [train["best_epoch"]]
    assert len(client.get_metric_history(second, "val_macro_f1")) == train["epochs_run"]
    assert "test_macro_f1" in run.data.metrics and len(run.inputs.dataset_inputs) == 3
    assert "reports/data_quality.html" in artifact_paths(client, second, "reports")
    assert json.loads((root / "reports/deploy.json").read_text())["run_id"] == second
    first = client.get_run(flow_run)
    assert first.info.status == "FINISHED" and first.info.end_time == first_end  # the first run is left alone

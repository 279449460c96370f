"""End-to-end tier: `dvc repro` on a tiny config re-runs exactly what changed."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.conftest import dvc

pytestmark = pytest.mark.e2e


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def registry_versions(root, name="tiny-model"):
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    return sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'")), client


def edit_params(root, section, key, value):
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def test_dvc_repro_runs_dag_then_only_what_changed(dvc_workspace):
    root = dvc_workspace
    first = dvc(root, "repro")
    assert ran(first.stdout) == ["ingest", "clean", "validate", "augment", "split", "train", "evaluate", "deploy"]
    assert "up to date" in dvc(root, "status").stdout
    versions, client = registry_versions(root)
    assert versions == [1]
    assert str(client.get_model_version_by_alias("tiny-model", "champion").version) == "1"

    again = dvc(root, "repro")
    assert ran(again.stdout) == []
    assert registry_versions(root)[0] == [1]

    metrics = json.loads(dvc(root, "metrics", "show", "--json").stdout)
    assert any("metrics/eval.json" in str(v) for v in metrics.values())

    edit_params(root, "train", "epochs", 3)
    # this test is about what re-runs, not the gate: on ~110 test rows one changed prediction moves macro-F1
    # by ~0.009, so the champion comparison is widened to let either outcome through
    edit_params(root, "evaluate", "max_regression", 1.0)
    assert ran(dvc(root, "repro").stdout) == ["train", "evaluate", "deploy"]
    assert json.loads((root / "metrics/train.json").read_text())["epochs_run"] == 3
    assert registry_versions(root)[0] == [1, 2]

    edit_params(root, "clean", "lowercase", True)
    assert ran(dvc(root, "repro").stdout) == ["clean", "validate", "augment", "split", "train", "evaluate", "deploy"]
    assert "up to date" in dvc(root, "status").stdout
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params.yaml"]["train.epochs"] == 3  # declared by key
    assert lock["stages"]["clean"]["params"]["params.yaml"]["clean"]["lowercase"] is True


def test_dvc_exp_run_registers_an_experiment_and_never_sets_the_champion(workspace):
    from tests.conftest import run_cmd

    root = workspace
    git = lambda *a: run_cmd(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], root)  # noqa: E731
    git("init", "-q")
    (root / ".gitignore").write_text("mlflow.db*\nmlartifacts/\n.bigmodel/\n.prefect/\n")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    git("add", "-A")
    git("commit", "-qm", "a committed project")
    out = dvc(root, "exp", "run", "-n", "try-it")
    assert ran(out.stdout)[-1] == "deploy"
    versions, client = registry_versions(root)
    assert versions == [1]  # registered for inspection ...
    mv = client.get_model_version("tiny-model", "1")
    assert mv.tags["bigmodel.experiment"].startswith("dvc exp run") and "experiment: dvc exp run" in mv.description
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):  # ... but no champion, although the gate passed
        client.get_model_version_by_alias("tiny-model", "champion")
    assert mv.tags["bigmodel.gate"] == "passed"

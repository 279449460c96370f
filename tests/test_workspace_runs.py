"""One run per workspace, and "nothing to do" answered without work: real `bigmodel run` and `dvc repro` processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, dvc, env_for, make_workspace, run_cmd
from tests.test_e2e_dvc import registry_versions

pytestmark = pytest.mark.e2e

BIGMODEL = str(Path(BIN) / "bigmodel")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("runs") / "ws")
    dvc(root, "init", "--no-scm", "-q")
    return root


def _start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([BIGMODEL, "run", *args], cwd=root, env=env_for(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_concurrent_runs_one_waits_and_the_workspace_stays_consistent(ws):
    first = _start(ws)
    lock = ws / ".bigmodel/run.lock"
    deadline = time.time() + 60
    while time.time() < deadline and not (lock.exists() and lock.read_text()):
        time.sleep(0.2)  # the first run holds the workspace
    holder = json.loads(lock.read_text())
    assert holder["what"] == "bigmodel run" and holder["pid"] == first.pid
    second = _start(ws)
    out1, err1 = first.communicate(timeout=600)
    out2, err2 = second.communicate(timeout=600)
    assert first.returncode == 0, out1 + err1
    assert second.returncode == 0, out2 + err2
    assert f"waiting for bigmodel run (pid {first.pid}" in err2
    # the second run started after the first finished, so it found nothing to do
    assert "nothing to do" in out2
    assert "registered tiny-model version 1" in out1
    assert registry_versions(ws)[0] == [1]
    status = dvc(ws, "status", "--json").stdout.strip()
    assert json.loads(status.splitlines()[-1]) == {}  # dvc.lock matches every output
    assert lock.read_text() == ""  # released: nobody named as holder


def test_no_wait_and_a_plain_dvc_repro_refuse_while_a_run_holds_the_workspace(ws):
    from bigmodel_core.pipeline.workspace import exclusive

    before = (ws / "dvc.lock").read_text()
    params = (ws / "params.yaml").read_text()
    with exclusive(ws, "test holder", wait=True):
        del_env = __import__("os").environ.pop("BIGMODEL_WORKSPACE_LOCK")  # the children must not inherit it
        try:
            proc = run_cmd([BIGMODEL, "run", "--no-wait", "-S", "train.epochs=3"], ws, check=False)
            assert proc.returncode == 4, proc.stdout + proc.stderr
            errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1
            assert f"another run holds this workspace: test holder (pid {__import__('os').getpid()}" in errors[0]
            # a dvc repro of its own: the first stage it runs refuses, naming the holder, with no advice to delete locks
            (ws / "params.yaml").write_text(params.replace("epochs: 2", "epochs: 1"))
            repro = dvc(ws, "repro", check=False)
            text = repro.stdout + repro.stderr
            assert repro.returncode != 0
            assert "another run holds this workspace: test holder" in text
            assert "manually remove" not in text and "rwlock" not in text
        finally:
            __import__("os").environ["BIGMODEL_WORKSPACE_LOCK"] = del_env
    (ws / "params.yaml").write_text(params)
    assert (ws / "dvc.lock").read_text() == before  # nothing was recorded by the refused runs
    assert registry_versions(ws)[0] == [1]


def test_nothing_to_do_ends_without_a_prefect_server_and_says_so(ws):
    proc = run_cmd([BIGMODEL, "run"], ws)
    assert "nothing to do: every stage is up to date" in proc.stdout
    assert "prefect:" not in proc.stdout  # no server was started for it
    assert registry_versions(ws)[0] == [1]


def test_run_has_no_params_option_that_other_runners_would_ignore(ws):
    proc = run_cmd([BIGMODEL, "run", "--params", "other.yaml"], ws, check=False)
    assert proc.returncode == 2
    assert "No such option: --params" in proc.stderr


def test_a_deleted_registry_is_not_replaced_by_an_empty_one_silently(ws):
    """Runs last in this module: it deletes the workspace's mlflow.db."""
    assert json.loads((ws / "reports/deploy.json").read_text())["version"] == "1"
    for f in ws.glob("mlflow.db*"):
        f.unlink()
    proc = run_cmd([BIGMODEL, "run", "--force"], ws, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert "tracking database mlflow.db is missing, but reports/deploy.json records tiny-model v1" in errors[0]
    assert "deploy.allow_new_registry: true" in errors[0]
    assert not (ws / "mlflow.db").exists()  # no empty registry was created on the way
    assert json.loads((ws / "reports/deploy.json").read_text())["version"] == "1"
    # said on purpose, a new registry starts at version 1
    proc = run_cmd([BIGMODEL, "run", "-S", "deploy.allow_new_registry=true"], ws)
    assert registry_versions(ws)[0] == [1]

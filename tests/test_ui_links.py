"""Acceptance: a run made without any UI up is browsable later, with working links, through `bigmodel ui`.

The user's path: `bigmodel ui` once on ports of their choosing (4200 and 5000 are often taken), Ctrl-C; then
`bigmodel run` with no UI up (a temporary Prefect server records the flow run in the workspace's database);
later `bigmodel ui` again, with no options. That UI must show the flow run with one task run per stage, and
the links the run recorded (the MLflow run's bigmodel.flow_run_url, the run card's MLflow link) must lead to
that run on the servers `bigmodel ui` serves.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN, dvc, env_for, make_workspace, run_cmd

pytestmark = pytest.mark.e2e

BIGMODEL = str(Path(BIN) / "bigmodel")
STAGES = ("ingest", "clean", "validate", "augment", "split", "train", "evaluate", "deploy")
STARTUP_TIMEOUT = 300  # MLflow alone takes ~30 s to start on a loaded 2-core machine
BROWSER = {"Accept": "text/html,application/xhtml+xml"}  # a page request, as a browser sends it


def free_ports(n: int) -> list[int]:
    from tests.test_ui_browser import free_ports as pick

    return pick(n)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class UI:
    """`bigmodel ui` running in a workspace, as a user starts it in a terminal."""

    def __init__(self, ws: Path, log: Path, *args: str, env: dict | None = None):
        self.ws, self.log = ws, log
        self.record = ws / ".prefect" / "ui-server.json"
        with open(log, "w") as out:
            self.proc = subprocess.Popen([BIGMODEL, "ui", *args], cwd=ws, env=env or env_for(ws),
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_default_sigint)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> dict:
        deadline = time.time() + STARTUP_TIMEOUT
        while True:
            assert self.proc.poll() is None, f"bigmodel ui exited {self.proc.returncode}:\n{self.text()[-4000:]}"
            assert time.time() < deadline, f"bigmodel ui not ready after {STARTUP_TIMEOUT}s:\n{self.text()[-4000:]}"
            if self.record.exists():
                info = json.loads(self.record.read_text())
                if _ok(f"{info['mlflow_url']}/health"):
                    return info
            time.sleep(1)

    def ctrl_c(self) -> int:
        """SIGINT to its process group, as a terminal's Ctrl-C; returns its exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"bigmodel ui still running 120s after SIGINT:\n{self.text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _port_free(port: int) -> bool:
    from tests.test_ui_browser import port_free

    return port_free(port)


def test_a_run_made_without_a_ui_is_browsable_later_through_bigmodel_ui(tmp_path):
    import mlflow

    ws = make_workspace(tmp_path / "ws")
    dvc(ws, "init", "--no-scm", "-q")
    dvc(ws, "config", "core.analytics", "false")
    mlflow_port, prefect_port = free_ports(2)
    mlflow_base, prefect_base = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{prefect_port}"

    # 1. `bigmodel ui` once, on ports of the user's choosing; Ctrl-C stops both servers
    first = UI(ws, tmp_path / "ui-1.log", "--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port))
    try:
        info = first.wait_ready()
        assert info["api_url"] == f"{prefect_base}/api" and info["ui_url"] == prefect_base
        assert info["mlflow_url"] == mlflow_base
        assert _ok(f"{prefect_base}/api/health")
        assert first.ctrl_c() == 130
    finally:
        first.kill()
    assert not first.record.exists(), "the record outlived bigmodel ui"
    assert _port_free(mlflow_port) and _port_free(prefect_port), "a server outlived bigmodel ui"

    # 2. a run with no UI up: a temporary Prefect server on the workspace's database
    done = run_cmd([BIGMODEL, "run"], ws)
    assert "prefect: a temporary Prefect server on" in done.stdout, done.stdout[-3000:]
    assert "registered tiny-model version 1" in done.stdout, done.stdout[-3000:]
    assert "look further: bigmodel ui" in done.stdout
    name = re.search(r"== bigmodel retrain: (\S+) ==", done.stdout).group(1)

    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("bigmodel")
    (run,) = client.search_runs([exp.experiment_id], filter_string=f"tags.`bigmodel.run_name` = '{name}'")
    flow_run_id = run.data.tags["bigmodel.flow_run_id"]
    # the recorded links name the addresses `bigmodel ui` serves, not the temporary server's
    assert run.data.tags["bigmodel.flow_run_url"] == f"{prefect_base}/runs/flow-run/{flow_run_id}"
    mlflow_link = f"{mlflow_base}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    card = Path(client.download_artifacts(run.info.run_id, "run_card.md", str(tmp_path))).read_text()
    assert f"**MLflow run:** [{run.info.run_id}]({mlflow_link})" in card, card

    # 3. later: `bigmodel ui` with no options serves where those links point
    later = UI(ws, tmp_path / "ui-2.log")
    try:
        info = later.wait_ready()
        assert (info["ui_url"], info["mlflow_url"]) == (prefect_base, mlflow_base)
        said = later.text()
        assert (f"MLflow UI:  {mlflow_base}/#/experiments/{exp.experiment_id}/runs?viewStateShareKey=bigmodel-headline"
                "&workflowType=machine_learning") in said
        assert f"Prefect UI: {prefect_base}" in said
        api = info["api_url"]

        # the flow run, with one task run per stage (each named after it) and the dvc-status check
        reply = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=30)
        assert reply.status_code == 200, reply.text
        assert (reply.json()["name"], reply.json()["state_type"]) == (name, "COMPLETED")
        reply = httpx.post(f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}, timeout=30)
        assert reply.status_code == 200, reply.text
        tasks = reply.json()
        stage_runs = sorted(t["name"] for t in tasks if t["name"] in STAGES)
        assert stage_runs == sorted(STAGES), [t["name"] for t in tasks]
        assert [t["name"] for t in tasks if t["name"].startswith("dvc-status")], [t["name"] for t in tasks]
        assert len(tasks) == len(STAGES) + 1, [t["name"] for t in tasks]
        assert {t["state_type"] for t in tasks} == {"COMPLETED"}, [(t["name"], t["state_type"]) for t in tasks]

        # the Prefect link (MLflow tag) opens the flow run's page; the run card there holds the MLflow link
        page = httpx.get(run.data.tags["bigmodel.flow_run_url"], headers=BROWSER, timeout=30)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.status_code
        reply = httpx.post(f"{api}/artifacts/filter", timeout=30, json={
            "artifacts": {"key": {"any_": ["run-card"]}, "flow_run_id": {"any_": [flow_run_id]}}})
        assert reply.status_code == 200, reply.text
        (prefect_card,) = reply.json()
        assert mlflow_link in prefect_card["data"]

        # the MLflow link's server has that run in that experiment (the page is its single-page app)
        page = httpx.get(mlflow_link.split("#", 1)[0], headers=BROWSER, timeout=30)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.status_code
        reply = httpx.get(f"{mlflow_base}/api/2.0/mlflow/runs/get", params={"run_id": run.info.run_id}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["run"]["info"]["experiment_id"] == exp.experiment_id
        tags = {t["key"]: t["value"] for t in reply.json()["run"]["data"]["tags"]}
        assert tags["bigmodel.flow_run_url"] == f"{prefect_base}/runs/flow-run/{flow_run_id}"

        # MLflow 3: the experiment is one of model training, and says which metrics to compare runs by
        reply = httpx.get(f"{mlflow_base}/api/2.0/mlflow/experiments/get", params={"experiment_id": exp.experiment_id},
                          timeout=30)
        exp_tags = {t["key"]: t["value"] for t in reply.json()["experiment"]["tags"]}
        assert exp_tags["mlflow.experimentKind"] == "custom_model_development"
        assert "`test_macro_f1`" in exp_tags["mlflow.note.content"]
        # the registered model says what it classifies, into which labels, and where it was trained
        reply = httpx.get(f"{mlflow_base}/api/2.0/mlflow/registered-models/get", params={"name": "tiny-model"},
                          timeout=30)
        description = reply.json()["registered_model"]["description"]
        assert description.startswith(
            "Text classifier: assigns one of 4 labels (sports, business, science, travel) to a text.")
        assert f"in the workspace {ws.resolve()} on " in description and "demo (builtin:demo)" in description

        assert later.ctrl_c() == 130
    finally:
        later.kill()
    assert not later.record.exists()
    assert _port_free(mlflow_port) and _port_free(prefect_port)

"""Acceptance: `bigmodel schedule --interval 1m` fires by itself, and the run it makes executes the DAG.

Nothing here starts a run: the Prefect server's scheduler creates the flow runs of the deployment and the
served flow picks them up. The only thing the tests change is Prefect's own setting for how often the
scheduler looks (PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS, 60 s by default), so the first run comes
within a minute or two. Both servers a user meets are covered: the temporary one `bigmodel schedule` starts
when none is up, and the workspace's own, started by `bigmodel ui`.
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

from tests.conftest import BIN, dvc, env_for, make_workspace
from tests.test_e2e_dvc import registry_versions

pytestmark = pytest.mark.e2e

BIGMODEL = str(Path(BIN) / "bigmodel")
STAGES = ("ingest", "clean", "validate", "augment", "split", "train", "evaluate", "deploy")
#: Prefect's scheduler loop, lowered from its 60 s for the test (the only setting changed)
SCHEDULER = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
FIRE_TIMEOUT = 900  # the first tick (<= 60 s), the runner's poll, and a whole tiny run on a loaded 2-core machine


def _workspace(tmp_path: Path) -> Path:
    ws = make_workspace(tmp_path / "ws")
    dvc(ws, "init", "--no-scm", "-q")
    dvc(ws, "config", "core.analytics", "false")
    return ws


def _start(args: list[str], ws: Path, log: Path, env: dict) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(args, cwd=ws, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _stop(proc: subprocess.Popen, log: Path) -> int:
    """Ctrl-C, as in the terminal the command runs in; its exit code."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        pytest.fail(f"{proc.args} still running 180s after SIGINT:\n{log.read_text()[-3000:]}")


def _wait_for(pattern: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> re.Match:
    deadline = time.time() + timeout
    while True:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        assert proc.poll() is None, f"{proc.args} exited {proc.returncode}:\n{log.read_text()[-4000:]}"
        assert time.time() < deadline, f"no {pattern!r} after {timeout:g}s:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)


def _fired_run(api: str, deployment: str, proc: subprocess.Popen, log: Path) -> dict:
    """The first run of `deployment` that the scheduler made, once it has completed (nothing triggers one here)."""
    deadline = time.time() + FIRE_TIMEOUT
    dep = None
    while True:
        assert proc.poll() is None, f"bigmodel schedule exited {proc.returncode}:\n{log.read_text()[-4000:]}"
        assert time.time() < deadline, f"no completed scheduled run after {FIRE_TIMEOUT}s:\n{log.read_text()[-4000:]}"
        if dep is None:
            reply = httpx.get(f"{api}/deployments/name/retrain/{deployment}", timeout=30)
            dep = reply.json() if reply.status_code == 200 else None
        if dep is not None:
            reply = httpx.post(f"{api}/flow_runs/filter", timeout=30, json={
                "flow_runs": {"deployment_id": {"any_": [dep["id"]]}, "state": {"type": {"any_": [
                    "RUNNING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED"]}}},
                "sort": "EXPECTED_START_TIME_ASC"})
            assert reply.status_code == 200, reply.text
            runs = reply.json()
            bad = [r for r in runs if r["state_type"] in ("FAILED", "CRASHED", "CANCELLED")]
            assert not bad, f"scheduled run {bad[0]['name']} ended {bad[0]['state_type']}:\n{log.read_text()[-4000:]}"
            if runs and runs[0]["state_type"] == "COMPLETED":
                return {**runs[0], "deployment": dep}
        time.sleep(2)


def _assert_the_run_executed_the_dag(api: str, run: dict, ws: Path) -> None:
    dep = run["deployment"]
    assert [s["schedule"]["interval"] for s in dep["schedules"]] == [60.0]
    assert run["auto_scheduled"] is True, "the run was not made by the scheduler"
    assert run["name"].startswith("retrain-") and "model:tiny-model" in run["tags"]
    assert registry_versions(ws)[0] == [1]
    assert json.loads(dvc(ws, "status", "--json").stdout.strip().splitlines()[-1]) == {}, "dvc status is not clean"
    messages, offset = [], 0
    while True:
        reply = httpx.post(f"{api}/logs/filter", timeout=30, json={
            "logs": {"flow_run_id": {"any_": [run["id"]]}}, "sort": "TIMESTAMP_ASC", "limit": 200, "offset": offset})
        assert reply.status_code == 200, reply.text
        messages += [entry["message"] for entry in reply.json()]
        if len(reply.json()) < 200:
            break
        offset += 200
    for stage in STAGES:
        assert any(m.startswith(f"{stage} | ") for m in messages), f"no '{stage} | ' line in the run's logs"
    assert any(m.startswith("train | epoch 1") for m in messages)
    reply = httpx.post(f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [run["id"]]}}}, timeout=30)
    assert sorted(t["name"] for t in reply.json() if t["name"] in STAGES) == sorted(STAGES)


def test_a_schedule_fires_by_itself_on_the_temporary_server(tmp_path):
    ws = _workspace(tmp_path)
    log = tmp_path / "schedule.log"
    proc = _start([BIGMODEL, "schedule", "--interval", "1m", "--name", "every-minute"], ws, log,
                  {**env_for(ws), **SCHEDULER})
    try:
        api = _wait_for(r"prefect: temporary server (\S+) up", proc, log).group(1)
        run = _fired_run(api, "every-minute", proc, log)
        _assert_the_run_executed_the_dag(api, run, ws)
    finally:
        code = _stop(proc, log)
    assert code == 0, log.read_text()[-3000:]
    assert "stopped serving retrain/every-minute (Ctrl-C); its schedule is paused" in log.read_text()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/health", timeout=5)  # the temporary server stopped with the command


def test_a_schedule_fires_by_itself_on_the_workspace_server_of_bigmodel_ui(tmp_path):
    from tests.test_ui_links import UI, free_ports

    ws = _workspace(tmp_path)
    mlflow_port, prefect_port = free_ports(2)
    ui = UI(ws, tmp_path / "ui.log", "--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port),
            env={**env_for(ws), **SCHEDULER})
    try:
        api = ui.wait_ready()["api_url"]
        log = tmp_path / "schedule.log"
        proc = _start([BIGMODEL, "schedule", "--interval", "1m", "--name", "every-minute"], ws, log, env_for(ws))
        try:
            _wait_for(re.escape(f"prefect: the workspace's Prefect server {api} (bigmodel ui)"), proc, log)
            run = _fired_run(api, "every-minute", proc, log)
            _assert_the_run_executed_the_dag(api, run, ws)
        finally:
            code = _stop(proc, log)
        assert code == 0, log.read_text()[-3000:]
        assert "stopped serving retrain/every-minute (Ctrl-C); its schedule is paused" in log.read_text()
        assert "temporary server" not in log.read_text()
        assert httpx.get(f"{api}/deployments/name/retrain/every-minute", timeout=30).json()["paused"] is True
        assert ui.ctrl_c() == 130
    finally:
        ui.kill()

"""`bigmodel schedule` serves the flow as a Prefect deployment; a triggered run executes the DAG and is findable:
named after what it does, tagged with the model, every stage's lines in its logs, a run card artifact."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, dvc, env_for, make_workspace, run_cmd
from tests.test_e2e_dvc import registry_versions

pytestmark = pytest.mark.e2e

BIGMODEL = str(Path(BIN) / "bigmodel")


@pytest.fixture(scope="module")
def api_url():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


def test_bad_schedule_is_refused_with_one_line():
    proc = run_cmd([BIGMODEL, "schedule", "--cron", "61 * * * *"], Path.cwd(), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --cron '61 * * * *'")
    proc = run_cmd([BIGMODEL, "schedule", "--interval", "10s"], Path.cwd(), check=False)
    assert proc.returncode == 2 and "at least 60 seconds" in proc.stderr
    proc = run_cmd([BIGMODEL, "schedule"], Path.cwd(), check=False)
    assert proc.returncode == 2 and "one of --cron EXPR or --interval EVERY" in proc.stderr


def test_scheduled_deployment_exists_and_a_triggered_run_executes_the_dag(tmp_path, api_url):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.deployments import run_deployment

    ws = make_workspace(tmp_path / "ws")
    dvc(ws, "init", "--no-scm", "-q")
    env = {**env_for(ws), "PREFECT_API_URL": api_url}
    server = subprocess.Popen([BIGMODEL, "schedule", "--interval", "2h", "--name", "nightly", "-S", "train.epochs=1"],
                              cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with get_client(sync_client=True) as client:
            deadline, deployment = time.time() + 180, None
            while deployment is None and time.time() < deadline:
                assert server.poll() is None, server.stdout.read()
                try:
                    deployment = client.read_deployment_by_name("retrain/nightly")
                except Exception:
                    time.sleep(1)
            assert deployment is not None, "the deployment never appeared"
            assert [s.schedule.interval.total_seconds() for s in deployment.schedules] == [7200.0]
            assert all(s.active for s in deployment.schedules)
            assert deployment.parameters == {"root": str(ws), "set_params": ["train.epochs=1"], "force": False}
            assert {"bigmodel", "model:tiny-model"} <= set(deployment.tags)

            flow_run = run_deployment("retrain/nightly", timeout=900)
            assert flow_run.state.is_completed(), flow_run.state
            assert flow_run.name.startswith("retrain-") and len(flow_run.name.split("-")) == 4
            assert "model:tiny-model" in flow_run.tags
            # the override was applied by the run, and the DAG ran
            assert "epochs: 1" in (ws / "params.yaml").read_text()
            assert registry_versions(ws)[0] == [1]
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
            text = "\n".join(log.message for log in logs)
            for stage in ("ingest", "validate", "train", "deploy"):
                assert f"{stage} | " in text, f"no {stage} lines in the flow run's logs"
            assert "epoch 1" in text
            cards = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
            card = next(a for a in cards if a.key == "run-card")
            assert card.type == "markdown"
            assert f"# {flow_run.name}: completed" in card.data
            assert "| train | ran |" in card.data and "**Registered:** tiny-model version 1" in card.data
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def test_prefect_yaml_deploys_the_flow_to_a_process_pool_with_its_schedule(tmp_path, api_url):
    from prefect.client.orchestration import get_client

    from tests.conftest import REPO

    env = {**env_for(tmp_path), "PREFECT_API_URL": api_url}
    prefect = str(Path(BIN) / "prefect")
    proc = subprocess.run([prefect, "work-pool", "create", "bigmodel", "--type", "process"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = subprocess.run([prefect, "--no-prompt", "deploy", "--all"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "Deployment 'retrain/weekly' successfully created" in out, out[-3000:]
    # Prefect 3.8.8 ended here with a 422 from /workers/filter (its client sent limit=null); 3.9.1 does not
    assert proc.returncode == 0 and "422" not in out, out[-3000:]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain/weekly")
        assert deployment.work_pool_name == "bigmodel"
        assert deployment.entrypoint == "flows/retrain.py:retrain"
        assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [("0 3 * * 1", "UTC")]
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]

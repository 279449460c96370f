"""The flow against real servers, started as a user starts them, each on a free loopback port: an `mlflow
server` (SQLite backend, local artifact root) reached through MLFLOW_TRACKING_URI, and a `prefect server
start` reached through PREFECT_API_URL."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BIN, dvc, env_for, make_workspace

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} not up after {seconds} s:\n{log.read_text()[-3000:]}")


def serve(cmd: list[str], home: Path, health: str):
    """Start a server process logging into home/server.log; yields once `health` answers 200."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=home, stdout=out, stderr=subprocess.STDOUT,
                                env={**env_for(home), "PREFECT_HOME": str(home)})
    try:
        wait_for(health, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def prefect_server(tmp_path):
    port = free_port()
    home = tmp_path / "prefect-server"
    for _ in serve([str(Path(BIN) / "prefect"), "--no-prompt", "server", "start", "--host", "127.0.0.1",
                    "--port", str(port), "--no-ui"], home, f"http://127.0.0.1:{port}/api/health"):
        yield f"http://127.0.0.1:{port}/api"


@pytest.fixture
def mlflow_server(tmp_path):
    store = tmp_path / "server"
    port = free_port()
    for _ in serve([str(Path(BIN) / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                    "--artifacts-destination", str(store / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                    "--workers", "1"], store, f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}", store


def test_the_flow_registers_and_promotes_on_a_real_mlflow_server(tmp_path, mlflow_server):
    import mlflow

    uri, store = mlflow_server
    root = make_workspace(tmp_path / "ws")
    dvc(root, "init", "--no-scm", "-q")
    env = {**env_for(root), "MLFLOW_TRACKING_URI": uri}
    run = subprocess.run([str(Path(BIN) / "bigmodel"), "run"], cwd=root, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not (root / "mlflow.db").exists()  # nothing went to the workspace's own SQLite store
    client = mlflow.MlflowClient(tracking_uri=uri)
    champion = client.get_model_version_by_alias("tiny-model", "champion")
    assert champion.version == "1"
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["test_macro_f1"] >= 0.3
    # the artifacts went through the server into its artifact root, and the champion loads from there
    assert any((store / "artifacts").rglob("MLmodel"))
    probe = subprocess.run([sys.executable, "-c", (
        "import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]);"
        "m = mlflow.pyfunc.load_model('models:/tiny-model@champion');"
        "print(m.predict(__import__('pandas').DataFrame({'text': ['a test sentence']}))['label'].iloc[0])"), uri],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0 and probe.stdout.strip(), probe.stderr[-3000:]


def test_the_flow_runs_on_a_real_prefect_server(tmp_path, prefect_server):
    """With PREFECT_API_URL set, `bigmodel run` uses that server (no temporary one of its own): the flow run
    is there, completed, and the MLflow run names it."""
    from tests.test_e2e_dvc import registry_versions

    root = make_workspace(tmp_path / "ws")
    dvc(root, "init", "--no-scm", "-q")
    env = {**env_for(root), "PREFECT_API_URL": prefect_server}
    run = subprocess.run([str(Path(BIN) / "bigmodel"), "run"], cwd=root, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not (root / ".prefect/server.log").exists()  # no temporary server was started
    probe = subprocess.run([sys.executable, "-c", (
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.sorting import FlowRunSort\n"
        "with get_client(sync_client=True) as c:\n"  # explicit limit, offset and sort: see README, Known limits
        "    for r in c.read_flow_runs(limit=10, offset=0, sort=FlowRunSort.START_TIME_DESC):\n"
        "        print(r.id, r.state_type.value)\n")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    runs = [line.split() for line in probe.stdout.strip().splitlines()]
    assert len(runs) == 1 and runs[0][1] == "COMPLETED", probe.stdout
    versions, client = registry_versions(root)
    assert versions == [1]
    champion = client.get_model_version_by_alias("tiny-model", "champion")
    assert client.get_run(champion.run_id).data.tags["bigmodel.flow_run_id"] == runs[0][0]

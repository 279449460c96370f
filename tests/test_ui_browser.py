"""Acceptance: what `make ui` serves, as a real (headless) browser renders it.

A tiny workspace gets the repo's Makefile and `make ui` on two free, non-default ports; `bigmodel run`
then runs twice in it (a champion, then a run whose model gate is closed), reporting both flow runs to
that Prefect server. Debian's chromium renders the Prefect UI (the flow run's logs, the run card) and the
MLflow UI (the gate-failed run: Failed, and why). Screenshots are kept in $BIGMODEL_TEST_ARTIFACTS, or
.test-artifacts/ui/ in the repo. Stopping `make ui` must leave no process behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, REPO, dvc, env_for, make_workspace, run_cmd

CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium not installed: apt-get install chromium"),
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the processes of `make ui`"),
]

BIGMODEL = str(Path(BIN) / "bigmodel")
VENV = Path(sys.executable).parents[1]  # the shared venv (REPO/.venv) that `make ui` in the workspace uses
STAMP = VENV / ".bigmodel-installed"
ARTIFACTS = Path(os.environ["BIGMODEL_TEST_ARTIFACTS"]) if os.environ.get("BIGMODEL_TEST_ARTIFACTS") \
    else REPO / ".test-artifacts" / "ui"
STARTUP_TIMEOUT = 300  # MLflow alone takes ~30 s to start on a loaded 2-core machine


# --------------------------------------------------------------------------- helpers
def free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1, none of them the defaults (4200, 5000)."""
    held, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
            port = s.getsockname()[1]
            if port not in (4200, 5000) and port not in ports:
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def port_free(port: int) -> bool:
    try:
        socket.create_server(("127.0.0.1", port)).close()
        return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def session_pids(sid: int) -> list[int]:
    """Live processes (zombies excluded) in session `sid`: everything `make ui` started stays in it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class _Text(HTMLParser):
    """The visible text of an HTML document (scripts and styles left out), whitespace collapsed."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "noscript"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style", "noscript") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts)).strip()


def chromium(tmp: Path, url: str, *args: str, budget_ms: int = 15000, height: int = 1000) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size=1400,{height}",
           f"--user-data-dir={profile}", "--no-first-run", "--hide-scrollbars",
           f"--virtual-time-budget={budget_ms}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


def rendered_text(tmp: Path, url: str, *expected: str, name: str, height: int = 1000) -> str:
    """The page's text once chromium has rendered it; a longer virtual-time budget is tried while
    something expected is missing (a loaded machine can be slow to answer the page's API calls).
    The last text is saved next to the screenshots for when an assertion fails.

    height: the window's; lists that load more rows as their end scrolls into view (Prefect's logs)
    load them all in a window taller than the whole list."""
    text = ""
    for budget in (15000, 30000, 60000):
        proc = chromium(tmp, url, "--dump-dom", budget_ms=budget, height=height)
        assert proc.returncode == 0, f"chromium --dump-dom {url} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        text = html_text(proc.stdout)
        if all(e in text for e in expected):
            break
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.txt").write_text(f"{url}\n\n{text}\n")
    return text


def screenshot(tmp: Path, url: str, name: str, height: int = 1000) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.unlink(missing_ok=True)
    proc = chromium(tmp, url, f"--screenshot={path}", budget_ms=20000, height=height)
    assert proc.returncode == 0, f"chromium --screenshot {url} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert path.exists() and path.stat().st_size > 10_000, f"{path}: missing or too small to show the page"
    return path


# --------------------------------------------------------------------------- fixtures
class UI:
    """`make ui` running in a workspace: ports, process, log."""

    def __init__(self, ws: Path, prefect_port: int, mlflow_port: int, proc: subprocess.Popen, log: Path):
        self.ws, self.prefect_port, self.mlflow_port, self.proc, self.log = ws, prefect_port, mlflow_port, proc, log
        self.prefect = f"http://127.0.0.1:{prefect_port}"
        self.api = f"{self.prefect}/api"
        self.mlflow = f"http://127.0.0.1:{mlflow_port}"
        self.record = ws / ".prefect" / "ui-server.json"


def stamp_prerequisites() -> list[str]:
    """The files the Makefile's install stamp depends on, read from the Makefile itself (a list kept here
    went stale when setup.py joined it)."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("$(STAMP):"):
            names = line.split(":", 1)[1].split()
            assert names and all((REPO / n).is_file() for n in names), line
            return names
    raise AssertionError("the Makefile has no `$(STAMP):` rule")


def make_ui_workspace(root: Path) -> Path:
    """A tiny DVC workspace that can run the repo's Makefile against the shared venv without reinstalling."""
    ws = make_workspace(root)
    dvc(ws, "init", "--no-scm", "-q")
    dvc(ws, "config", "core.analytics", "false")
    (ws / ".venv").symlink_to(VENV, target_is_directory=True)
    assert STAMP.exists(), f"{STAMP} missing: `make install` has not run in the repo"
    older = STAMP.stat().st_mtime - 10
    # the stamp's prerequisites, older than it: a newer one would make `make ui` reinstall the shared venv
    # as an editable install of this workspace
    for name in stamp_prerequisites():
        shutil.copy(REPO / name, ws / name)
        os.utime(ws / name, (older, older))
    return ws


def _default_sigint() -> None:
    """Ctrl-C as in a terminal: where pytest itself was started in the background by a non-interactive
    shell, SIGINT is ignored and every child would inherit that (bash cannot trap a signal ignored on entry)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    ws = make_ui_workspace(root / "ws")
    prefect_port, mlflow_port = free_ports(2)
    env = env_for(ws)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # when pytest runs under `make test`
        env.pop(name, None)
    log = root / "make-ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["make", "ui", f"PREFECT_PORT={prefect_port}", f"MLFLOW_PORT={mlflow_port}"],
                                cwd=ws, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_default_sigint)
    handle = UI(ws, prefect_port, mlflow_port, proc, log)
    try:
        deadline = time.time() + STARTUP_TIMEOUT
        while not (handle.record.exists() and http_ok(f"{handle.mlflow}/health")):
            assert proc.poll() is None, f"make ui exited {proc.returncode}:\n{tail(log)}"
            assert time.time() < deadline, f"make ui not ready after {STARTUP_TIMEOUT}s:\n{tail(log)}"
            time.sleep(1)
        assert "uv pip install" not in log.read_text(), f"make ui reinstalled the shared venv:\n{tail(log)}"
        yield handle
    finally:
        # normally test_stopping_make_ui_leaves_nothing_running has stopped it; this is the safety net
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for pid in session_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def flow_runs(api: str) -> list[dict]:
    import httpx

    reply = httpx.post(f"{api}/flow_runs/filter", json={"limit": 50, "offset": 0, "sort": "START_TIME_DESC"}, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def run_card_artifacts(api: str, flow_run_id: str) -> list[dict]:
    import httpx

    body = {"limit": 10, "offset": 0, "sort": "CREATED_DESC",
            "artifacts": {"key": {"any_": ["run-card"]}, "flow_run_id": {"any_": [flow_run_id]}}}
    reply = httpx.post(f"{api}/artifacts/filter", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def flow_run_logs(api: str, flow_run_id: str) -> list[str]:
    import httpx

    messages, offset = [], 0
    while True:
        body = {"limit": 200, "offset": offset, "sort": "TIMESTAMP_ASC",
                "logs": {"flow_run_id": {"any_": [flow_run_id]}}}
        reply = httpx.post(f"{api}/logs/filter", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        page = [entry["message"] for entry in reply.json()]
        messages += page
        if len(page) < 200:
            return messages
        offset += 200


def mlflow_runs(ui: UI) -> tuple[str, list[dict]]:
    """The experiment id and the runs of the workspace's experiment, through the MLflow server's REST API."""
    import httpx

    name = yaml.safe_load((ui.ws / "params.yaml").read_text())["tracking"]["experiment"]
    reply = httpx.get(f"{ui.mlflow}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}, timeout=30)
    assert reply.status_code == 200, reply.text
    exp = reply.json()["experiment"]["experiment_id"]
    reply = httpx.post(f"{ui.mlflow}/api/2.0/mlflow/runs/search", json={"experiment_ids": [exp], "max_results": 100},
                       timeout=30)
    assert reply.status_code == 200, reply.text
    return exp, reply.json().get("runs", [])


def tags_of(run: dict) -> dict:
    return {t["key"]: t.get("value", "") for t in run["data"].get("tags", [])}


@pytest.fixture(scope="module")
def runs(ui):
    """A passing run (the first champion), then a retrain whose model gate is closed: both reported to `make ui`."""
    reported = f"prefect: the workspace's Prefect server {ui.api} (bigmodel ui)"  # make ui runs bigmodel ui
    first = run_cmd([BIGMODEL, "run"], ui.ws)
    assert reported in first.stdout, first.stdout[-3000:]
    assert "registered tiny-model version 1" in first.stdout
    name = re.search(r"== bigmodel retrain: (\S+) ==", first.stdout).group(1)

    # another seed retrains (a new model reaches the gate); one epoch and a perfect-accuracy floor close it
    gated = run_cmd([BIGMODEL, "run", "-S", "train.seed=7", "-S", "train.epochs=1", "-S", "evaluate.min_accuracy=1.0"],
                    ui.ws, check=False)
    out = gated.stdout + gated.stderr
    assert gated.returncode == 3, f"exit {gated.returncode}\n{out[-4000:]}"
    assert reported in gated.stdout, out[-3000:]
    assert "model gate closed: min_accuracy" in gated.stderr, out[-3000:]

    listed = flow_runs(ui.api)
    assert [r["state_type"] for r in listed] == ["FAILED", "COMPLETED"], [(r["name"], r["state_type"]) for r in listed]
    failed, passed = listed
    assert passed["name"] == name
    return {"passed": passed, "failed": failed}


# --------------------------------------------------------------------------- tests
def collapsed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_prefect_ui_shows_the_flow_runs_stage_logs(ui, runs):
    passed = runs["passed"]
    logs = [collapsed(m) for m in flow_run_logs(ui.api, passed["id"])]
    assert any(m.startswith("train | epoch 1") for m in logs), "the API has no 'train | epoch 1' log line"
    stages = ("ingest", "clean", "validate", "augment", "split", "train", "evaluate", "deploy")
    firsts = {stage: next((m for m in logs if m.startswith(f"{stage} | ")), None) for stage in stages}
    assert all(firsts.values()), f"stages without a log line in the API: {[s for s, m in firsts.items() if not m]}"
    last = [m for m in logs if m.startswith("deploy | ")][-1]  # proves every page of the list was loaded

    # the Logs tab is the flow run page's default; it loads the list page by page as its end comes into view
    url = f"{ui.prefect}/runs/flow-run/{passed['id']}"
    text = rendered_text(ui.ws.parent, url, passed["name"], "train | epoch 1", last[:60],
                         name="prefect-flow-run-logs", height=20000)
    assert passed["name"] in text and "Completed" in text and "Logs" in text
    for line in ("train | epoch 1", "train | epoch 2", *(m[:60] for m in firsts.values()), last[:60]):
        assert line in text, f"log line {line!r} not shown on {url}"
    screenshot(ui.ws.parent, url, "prefect-flow-run-logs", height=2400)

    failed = runs["failed"]
    url = f"{ui.prefect}/runs/flow-run/{failed['id']}"
    text = rendered_text(ui.ws.parent, url, failed["name"], "model gate closed: min_accuracy",
                         name="prefect-failed-flow-run", height=20000)
    assert "Failed" in text and "model gate closed: min_accuracy" in text


def test_prefect_ui_shows_the_run_card(ui, runs):
    passed = runs["passed"]
    cards = run_card_artifacts(ui.api, passed["id"])
    assert len(cards) == 1, f"expected one run-card artifact for {passed['name']}, found {len(cards)}"
    card = cards[0]
    assert card["type"] == "markdown"
    assert card["data"].startswith(f"# {passed['name']}: completed")
    assert "| stage | result | seconds |" in card["data"]

    # the flow run's page lists its artifacts, and the artifact's own page renders the card
    url = f"{ui.prefect}/artifacts/artifact/{card['id']}"
    text = rendered_text(ui.ws.parent, url, f"{passed['name']}: completed", "stage result seconds",
                         name="prefect-run-card")
    assert f"{passed['name']}: completed" in text
    assert "stage result seconds" in text  # the table's header, rendered
    for stage in ("ingest", "clean", "validate", "augment", "split", "train", "evaluate", "deploy"):
        assert re.search(rf"\b{stage} ran \d+\.\d\b", text), f"run card row for {stage} not shown on {url}"
    assert "run-card" in text  # the artifact's key
    screenshot(ui.ws.parent, url, "prefect-run-card")


def test_mlflow_ui_shows_the_gate_failed_run_as_failed_with_its_reason(ui, runs):
    exp, found = mlflow_runs(ui)
    failed = [r for r in found if tags_of(r).get("bigmodel.flow_run_id") == runs["failed"]["id"]]
    assert len(failed) == 1, f"no single MLflow run tagged with flow run {runs['failed']['id']}"
    run = failed[0]
    tags = tags_of(run)
    assert run["info"]["status"] == "FAILED"
    reason = tags.get("bigmodel.failure_reason", "")
    assert "min_accuracy" in reason, tags

    run_id = run["info"]["run_id"]
    url = f"{ui.mlflow}/#/experiments/{exp}/runs/{run_id}"
    text = rendered_text(ui.ws.parent, url, run_id, "bigmodel.failure_reason", reason[:60], name="mlflow-failed-run")
    assert run_id in text
    assert re.search(r"Status\s+Failed", text), f"status Failed not shown on {url}"
    assert "bigmodel.failure_reason" in text and reason[:60] in text, f"the failure reason is not shown on {url}"
    screenshot(ui.ws.parent, url, "mlflow-failed-run")


def test_mlflow_ui_opens_the_experiment_on_its_runs_with_the_headline_metrics(ui, runs):
    """The link `bigmodel ui` prints opens the runs table in the model-training view, headline metrics as
    columns, not MLflow 3's GenAI overview (which a bare experiment link opens, whatever the experiment's tags)."""
    found = re.search(r"^MLflow UI:  (\S+)$", ui.log.read_text(errors="replace"), re.M)
    assert found, f"no 'MLflow UI:' line:\n{tail(ui.log)}"
    url = found.group(1)
    exp, _ = mlflow_runs(ui)
    assert url == (f"{ui.mlflow}/#/experiments/{exp}/runs?viewStateShareKey=bigmodel-headline"
                   "&workflowType=machine_learning")
    text = rendered_text(ui.ws.parent, url, runs["passed"]["name"], "test_macro_f1", name="mlflow-experiment-runs")
    assert "bigmodel: headline metrics" in text  # the saved view is the one shown
    for column in ("test_macro_f1", "test_accuracy", "best_val_macro_f1", "data_rows_quarantined"):
        assert column in text, f"column {column} not shown on {url}"
    assert runs["passed"]["name"] in text and runs["failed"]["name"] in text
    assert "Token Usage" not in text and "Traces 0" not in text  # not the GenAI overview
    screenshot(ui.ws.parent, url, "mlflow-experiment-runs")


def test_stopping_make_ui_leaves_nothing_running(ui, runs):
    proc = ui.proc
    assert proc.poll() is None, f"make ui died early:\n{tail(ui.log)}"
    assert session_pids(proc.pid), "no process of make ui found"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make ui still running 120s after SIGINT:\n{tail(ui.log)}")
    deadline = time.time() + 60
    while session_pids(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    left = session_pids(proc.pid)
    assert not left, "still running after make ui stopped: " + "; ".join(
        (Path(f"/proc/{p}/cmdline").read_text(errors="replace").replace("\0", " ")[:200]
         if Path(f"/proc/{p}/cmdline").exists() else str(p)) for p in left)
    assert not ui.record.exists(), f"{ui.record} left behind"
    assert port_free(ui.prefect_port) and port_free(ui.mlflow_port)
    for name in ("prefect-flow-run-logs", "prefect-run-card", "mlflow-failed-run", "mlflow-experiment-runs"):
        shot = ARTIFACTS / f"{name}.png"
        assert shot.exists() and shot.stat().st_size > 10_000, f"{shot} missing or too small"

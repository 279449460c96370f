"""Which Prefect API a command talks to, and how Prefect logs, decided before Prefect is imported.

In order: PREFECT_API_URL when the user set one (a team server); else the workspace's own server that
`bigmodel ui` started (it records itself in .prefect/ui-server.json), so runs show up there live and no
second server starts; else a temporary server on the workspace's database (.prefect/prefect.db), started by the
command in a process group of its own (a terminal's Ctrl-C does not kill it while the run records its end), with a
start-up timeout sized for a loaded 2-core machine, and stopped when the command ends, however it ends.

The temporary server of `bigmodel run` runs the services that record a flow run (in Prefect 3 task runs
arrive as events, which the task-run recorder writes) and none of the others; before it stops, the
command waits until the task runs are written. Its runs are browsed later with `bigmodel ui`, on the same
database, so PREFECT_UI_URL (the links Prefect and bigmodel record) names that UI's address.

Logs: every stage line goes to the Prefect API at INFO (the UI shows it under each task run). The
console gets only the flow's own progress lines and the command's one-line `error:`; Prefect's records
(a failed task's traceback among them) stay in the UI, or show on the console too with --verbose.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from uuid import UUID

from bigmodel_core.pipeline import prefect_db
from bigmodel_core.pipeline.interrupts import dies_with_parent

#: seconds a temporary Prefect server may take to start (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS wins)
STARTUP_TIMEOUT = 180


#: The services a temporary server for `bigmodel run` leaves off (Prefect's settings
#: PREFECT_SERVER_SERVICES_<NAME>_ENABLED): scheduling, late and cancelled runs, automations, workers'
#: heartbeats. It keeps RUN_SERVER_ON: task_run_recorder (task runs and their states), event_persister (the
#: events the UI shows), db_vacuum (hourly), event_logger (off by default). tests/test_orchestration.py checks
#: both lists against Prefect's own, so a service a new Prefect adds is decided on, not run by accident.
RUN_SERVER_OFF = (
    "scheduler",
    "late_runs",
    "foreman",
    "cancellation_cleanup",
    "pause_expirations",
    "repossessor",
    "cleanup_reconciler",
    "triggers",
)
RUN_SERVER_ON = ("task_run_recorder", "event_persister", "db_vacuum", "event_logger")
#: seconds `bigmodel run` waits, at most, for its temporary server to write the last task runs
RECORD_TIMEOUT = 30.0


def workspace_server(root: Path) -> str | None:
    """The API URL of the Prefect server `bigmodel ui` runs for this workspace, if it is up."""
    from bigmodel_core.pipeline.ui import running

    info = running(root)
    return str(info["api_url"]).rstrip("/") if info else None


def configure(root: Path, verbose: bool = False) -> str:
    """Set Prefect's environment for this process; return which server will be used, in words."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = (
        "INFO" if verbose else os.environ.get("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    )
    if os.environ.get("PREFECT_API_URL"):
        return f"Prefect server {os.environ['PREFECT_API_URL']} (PREFECT_API_URL)"
    os.environ.setdefault("PREFECT_HOME", str(Path(root).resolve() / ".prefect"))
    url = workspace_server(root)
    if url:
        os.environ["PREFECT_API_URL"] = url
        return f"the workspace's Prefect server {url} (bigmodel ui)"
    return (
        f"a temporary Prefect server on {os.environ['PREFECT_HOME']}/prefect.db (start-up timeout "
        f"{_startup_timeout():g}s)"
    )


def _startup_timeout() -> float:
    return float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or STARTUP_TIMEOUT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refresh_prefect_settings() -> None:
    if "prefect.context" in sys.modules:  # Prefect read its settings at import: make it see the new URL
        sys.modules["prefect.context"].refresh_global_settings_context()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    from bigmodel_core.pipeline.interrupts import stop_group

    stop_group(proc, first=signal.SIGTERM)


@contextmanager
def api_server(root: Path, services: bool = False) -> Iterator[str | None]:
    """Within the block Prefect talks to a server: the configured one, or a temporary one started here.

    The temporary one is `prefect server start` on a free loopback port, in a session of its own, logging to
    .prefect/server.log, with every service when `services` (a served schedule needs the scheduler), else with
    only those that record a run (RUN_SERVER_ON; RUN_SERVER_OFF are off); it is stopped on the way out (and at
    exit, should the block be skipped), once what the run sent is written."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from bigmodel_core.pipeline.ui import addresses

    home = Path(os.environ.get("PREFECT_HOME") or Path(root).resolve() / ".prefect")
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    cmd = [
        str(Path(sys.executable).parent / "prefect"),
        "--no-prompt",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-ui",
        "--log-level",
        "ERROR",
    ]
    if not Path(cmd[0]).exists():
        cmd[0:1] = [sys.executable, "-m", "prefect"]
    env = {**os.environ, "PREFECT_HOME": str(home)}
    if not services:
        for name in RUN_SERVER_OFF:  # a setting the user exported wins
            env.setdefault(f"PREFECT_SERVER_SERVICES_{name.upper()}_ENABLED", "false")
    # a new home starts from the migrated database of an earlier start (prefect_db), else keeps its own for the next
    new_db = not (home / prefect_db.DB_NAME).exists() and not prefect_db.seed(home)
    log_path = home / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=dies_with_parent(),
        )
    atexit.register(_stop, proc)
    ui_url_set = "PREFECT_UI_URL" not in os.environ
    started = time.time()
    try:
        _wait_healthy(proc, url, log_path)
        if new_db:
            prefect_db.keep(home)
        os.environ["PREFECT_API_URL"] = url
        if ui_url_set:  # this database is browsed later with `bigmodel ui`: links name its address
            os.environ["PREFECT_UI_URL"] = addresses(root).prefect
        _refresh_prefect_settings()
        yield url
    finally:
        stopping = sys.exc_info()[0] is not None  # an error or an interruption: wait less for the record
        _drain_prefect(timeout=3.0 if stopping else 10.0)  # logs and events still queued go to the server
        if not services and proc.poll() is None and os.environ.get("PREFECT_API_URL") == url:
            # (a served schedule's runs were recorded while it served; what Ctrl-C cut short stays unfinished)
            _wait_recorded(url, started, timeout=5.0 if stopping else RECORD_TIMEOUT)
        os.environ.pop("PREFECT_API_URL", None)
        if ui_url_set:
            os.environ.pop("PREFECT_UI_URL", None)
        _refresh_prefect_settings()
        _stop(proc)
        atexit.unregister(_stop)


def _post(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _wait_recorded(url: str, since: float, timeout: float = RECORD_TIMEOUT) -> None:
    """Wait until the server has written the task runs of the flow runs started since `since`: each in a final
    state, their number unchanged between two looks. Task-run states reach Prefect 3's server as events that
    its task-run recorder writes a moment later; a server stopped before that would lose the last ones."""
    from datetime import datetime, timezone

    after = datetime.fromtimestamp(since - 1, timezone.utc).isoformat()
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            flows = _post(f"{url}/flow_runs/filter", {"flow_runs": {"start_time": {"after_": after}}, "limit": 200})
            if not flows:
                return
            tasks = _post(
                f"{url}/task_runs/filter", {"flow_runs": {"id": {"any_": [f["id"] for f in flows]}}, "limit": 200}
            )
        except (OSError, ValueError):
            return  # the server is gone or cannot say: nothing more to wait for
        seen = sorted((t["id"], t.get("state_type")) for t in tasks)
        if seen == last and all(state in _FINAL for _, state in seen):
            return
        last = seen
        time.sleep(0.3)


def _drain_prefect(timeout: float = 10.0) -> None:
    if "prefect.logging.handlers" in sys.modules:
        with suppress(Exception):
            sys.modules["prefect.logging.handlers"].APILogWorker.drain_all(timeout=timeout)
    if "prefect.events.worker" in sys.modules:
        with suppress(Exception):
            sys.modules["prefect.events.worker"].EventsWorker.drain_all(timeout=timeout)


def _wait_healthy(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    from bigmodel_core.errors import BigmodelError
    from bigmodel_core.pipeline.ui import healthy

    timeout = _startup_timeout()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise BigmodelError(
                f"the temporary Prefect server exited with {proc.returncode} while starting: "
                f"{tail[0]} (log: {log_path})"
            )
        if healthy(f"{url}/health"):
            return
        time.sleep(0.2)
    raise BigmodelError(
        f"the temporary Prefect server did not answer {url}/health within {timeout:g}s "
        f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS raises it; log: {log_path})"
    )


def crash_flow_runs(messages: dict[str, str]) -> set[str]:
    """Mark flow runs whose process died while they ran (flow run id -> why) Crashed, with their task runs still
    Running or Pending, on the server this process talks to; a flow run already in a final state, or unknown
    to this server, is left as it is. Returns the ids dealt with; server trouble is printed, never raised."""
    if not messages:
        return set()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import TaskRunSort
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    done: set[str] = set()
    try:
        with get_client(sync_client=True) as client:
            for run_id, why in messages.items():
                try:
                    run = client.read_flow_run(UUID(run_id))
                except ObjectNotFound:  # recorded by another Prefect server: not ours to change
                    done.add(run_id)
                    continue
                if run.state is not None and run.state.is_final():
                    done.add(run_id)
                    continue
                open_tasks = client.read_task_runs(  # sort, limit and offset given: the server rejects nulls
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                    task_run_filter=TaskRunFilter(
                        state=TaskRunFilterState(
                            type=TaskRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                        )
                    ),
                    sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                    limit=200,
                    offset=0,
                )
                for task_run in open_tasks:
                    client.set_task_run_state(task_run.id, Crashed(message=why), force=True)
                client.set_flow_run_state(run.id, Crashed(message=why), force=True)
                print(f"prefect: flow run {run.name} ({run_id}) marked Crashed: {why}", flush=True)
                done.add(run_id)
    except Exception as e:
        print(
            f"prefect: could not mark the flow runs of dead processes Crashed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})",
            flush=True,
        )
    return done

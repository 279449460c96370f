"""`bigmodel ui`: the MLflow UI and the Prefect UI on this workspace's own state, and the addresses links name.

    bigmodel ui                                   # MLflow on :5000, Prefect on :4200 (127.0.0.1 only)
    bigmodel ui --mlflow-port 5001 --prefect-port 4201

Both servers bind 127.0.0.1 and run in process groups of their own; Ctrl-C (or SIGTERM, or the terminal
closing) stops both, and either one exiting stops the other. While the Prefect server answers, the record
`.prefect/ui-server.json` ({"api_url", "pid", "ui_url", "mlflow_url"}) tells `bigmodel run` in this
workspace to report there; it is removed when the servers stop.

Links: a run recorded in the workspace's own databases (mlflow.db, .prefect/prefect.db) is browsed later
with `bigmodel ui`, so the links a run records (the MLflow run's bigmodel.flow_run_url tag, the run card's
MLflow link) name the addresses `bigmodel ui` serves: those of the one running now, else the ports it was
last started with in this workspace (kept in .bigmodel/ui.json), else the defaults. A run on a team server
(PREFECT_API_URL, an http(s) MLflow tracking URI) links to that server instead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bigmodel_core.errors import BigmodelError

HOST = "127.0.0.1"
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_PREFECT_PORT = 4200
#: MLflow 3's UI opens an experiment on its GenAI views unless told otherwise: links ask for its runs view
MLFLOW_VIEW = "workflowType=machine_learning"


def record_path(root: Path) -> Path:
    """Where `bigmodel ui` records its running Prefect server (whatever PREFECT_HOME says)."""
    return Path(root) / ".prefect" / "ui-server.json"


def ports_path(root: Path) -> Path:
    """The ports `bigmodel ui` was last started with in this workspace (kept after it stops)."""
    return Path(root) / ".bigmodel" / "ui.json"


@dataclass(frozen=True)
class Addresses:
    """Base URLs (no trailing slash) of the workspace's UIs."""

    mlflow: str
    prefect: str

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect}/api"


def _url(port: int) -> str:
    return f"http://{HOST}:{int(port)}"


def _read_json(path: Path) -> dict | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def running(root: Path) -> dict | None:
    """The record of the `bigmodel ui` running for this workspace, if its Prefect server lives and answers."""
    from bigmodel_core.pipeline.interrupts import alive

    info = _read_json(record_path(root))
    if info is None:
        return None
    try:
        url, pid = str(info["api_url"]).rstrip("/"), int(info["pid"])
    except (TypeError, KeyError, ValueError):
        return None
    if not alive(pid):
        return None
    return info if healthy(f"{url}/health") else None


def saved_ports(root: Path) -> tuple[int, int]:
    """(MLflow port, Prefect port): those `bigmodel ui` last used here, else the defaults."""
    saved = _read_json(ports_path(root)) or {}
    ports = []
    for key, default in (("mlflow_port", DEFAULT_MLFLOW_PORT), ("prefect_port", DEFAULT_PREFECT_PORT)):
        try:
            port = int(saved.get(key, default))
        except (TypeError, ValueError):
            port = default
        ports.append(port if 0 < port < 65536 else default)
    return ports[0], ports[1]


def addresses(root: Path) -> Addresses:
    """Where the user browses this workspace's state: the running `bigmodel ui`, else where it will serve."""
    live = running(root)
    if live and live.get("ui_url") and live.get("mlflow_url"):
        return Addresses(mlflow=str(live["mlflow_url"]).rstrip("/"), prefect=str(live["ui_url"]).rstrip("/"))
    mlflow_port, prefect_port = saved_ports(root)
    return Addresses(mlflow=_url(mlflow_port), prefect=_url(prefect_port))


def _remote_tracking(params) -> str | None:
    """The MLflow tracking server's URL when runs are tracked on one (MLFLOW_TRACKING_URI or tracking.uri)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.tracking.uri
    return uri.rstrip("/") if uri.split(":", 1)[0] in ("http", "https") else None


def mlflow_ui_url(params, root: Path) -> str:
    """Base URL of the MLflow UI that shows this workspace's runs: BIGMODEL_MLFLOW_UI_URL, else the tracking
    server (whose UI is at its own address), else the workspace's `bigmodel ui`."""
    return (
        os.environ.get("BIGMODEL_MLFLOW_UI_URL", "").rstrip("/") or _remote_tracking(params) or addresses(root).mlflow
    )


def mlflow_run_link(base: str, experiment_id: str | None, run_id: str) -> str:
    if experiment_id is None:
        return f"{base}/#/runs/{run_id}?{MLFLOW_VIEW}"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{MLFLOW_VIEW}"


def mlflow_experiment_link(base: str, experiment_id: str) -> str:
    """The experiment's runs table (not MLflow 3's GenAI overview), in the view with the headline metrics."""
    from bigmodel_core.tracking.store import HEADLINE_VIEW

    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={HEADLINE_VIEW[0]}&{MLFLOW_VIEW}"


# --------------------------------------------------------------------------- serving
def port_in_use(port: int) -> bool:
    try:
        socket.create_server((HOST, int(port))).close()
        return False
    except OSError:
        return True


def _own_group():
    """A pre-exec hook: the child leads a process group of its own (a terminal's Ctrl-C reaches only
    `bigmodel ui`, which stops the groups in order) and gets SIGTERM should `bigmodel ui` die unannounced."""
    from bigmodel_core.pipeline.interrupts import dies_with_parent

    dies = dies_with_parent()

    def hook() -> None:
        os.setpgid(0, 0)
        if dies is not None:
            dies()

    return hook


def _bin(name: str) -> list[str]:
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", name]


def _write_record(root: Path, info: dict) -> None:
    path = record_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


def _save_ports(root: Path, mlflow_port: int, prefect_port: int) -> None:
    path = ports_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"mlflow_port": int(mlflow_port), "prefect_port": int(prefect_port)}) + "\n")
    os.replace(tmp, path)


def healthy(url: str) -> bool:
    """Whether a server answers 200 at `url` (its health endpoint) within 2 s: the one check every wait for a
    Prefect server (here and in orchestration) makes."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _experiment_id(params, root: Path) -> str | None:
    try:
        from bigmodel_core.tracking.store import experiment_id

        return experiment_id(params, root)
    except Exception:  # the link to the experiment is a convenience: the UI serves without it
        return None


def serve(root: Path, params, mlflow_port: int | None, prefect_port: int | None, say: Callable[[str], None]) -> int:
    """Run both UIs until a signal or until one of them exits; returns the command's exit code."""
    from bigmodel_core.pipeline.interrupts import Interrupted, raise_on_signals, stop_group
    from bigmodel_core.tracking.store import tracking_uri

    root = Path(root).resolve()
    saved = saved_ports(root)
    mlflow_port = saved[0] if mlflow_port is None else mlflow_port
    prefect_port = saved[1] if prefect_port is None else prefect_port
    remote = _remote_tracking(params)
    wanted = [prefect_port] + ([] if remote else [mlflow_port])
    if len(set(wanted)) < len(wanted):
        raise BigmodelError(f"--mlflow-port and --prefect-port are both {prefect_port}: give two different ports")
    for port in wanted:
        if port_in_use(port):
            raise BigmodelError(
                f"port {port} on {HOST} is already in use; choose others: "
                "bigmodel ui --mlflow-port 5001 --prefect-port 4201"
            )
    live = running(root)
    if live:
        raise BigmodelError(
            f"a `bigmodel ui` already serves this workspace (Prefect at {live['api_url']}, pid "
            f"{live['pid']}); stop it first (Ctrl-C in its terminal)"
        )
    home = Path(os.environ.get("PREFECT_HOME") or root / ".prefect")
    home.mkdir(parents=True, exist_ok=True)
    mlflow_url, prefect_url = (remote or _url(mlflow_port)), _url(prefect_port)
    api_url = f"{prefect_url}/api"
    if not remote:
        backend = tracking_uri(params, root)  # the workspace's database (created if new, checked if missing)
    _save_ports(root, mlflow_port, prefect_port)
    procs: dict[str, subprocess.Popen] = {}
    code, failed = 0, None
    try:
        with raise_on_signals():
            # before MLflow's server starts: a new database gets its tables from one process, not two at once
            exp = _experiment_id(params, root)
            say(
                f"MLflow UI:  {mlflow_experiment_link(mlflow_url, exp) if exp else mlflow_url}"
                + ("  (the tracking server's own UI; not started here)" if remote else "")
            )
            say(f"Prefect UI: {prefect_url}")
            say("(Ctrl-C stops both)")
            if not remote:
                procs["MLflow UI"] = subprocess.Popen(
                    [*_bin("mlflow"), "ui", "--backend-store-uri", backend, "--host", HOST, "--port", str(mlflow_port)],
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_own_group(),
                )
            env = {
                **os.environ,
                "PREFECT_HOME": str(home),
                "PREFECT_API_URL": api_url,
                # the address the browser calls; without it the UI calls port 4200 whatever --port says
                "PREFECT_UI_API_URL": api_url,
            }
            env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
            env.pop("PREFECT_UI_URL", None)
            from bigmodel_core.pipeline import prefect_db

            # a new home starts from the migrated database of an earlier start, else keeps its own for the next
            new_db = not (home / prefect_db.DB_NAME).exists() and not prefect_db.seed(home)
            procs["Prefect server"] = prefect = subprocess.Popen(
                [*_bin("prefect"), "--no-prompt", "server", "start", "--host", HOST, "--port", str(prefect_port)],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                preexec_fn=_own_group(),
            )
            recorded = False
            while failed is None:
                failed = next(
                    (
                        f"the {name} exited with {proc.returncode}; the other was stopped"
                        for name, proc in procs.items()
                        if proc.poll() is not None
                    ),
                    None,
                )
                if failed is None and not recorded and healthy(f"{api_url}/health"):
                    if new_db:
                        prefect_db.keep(home)
                    _write_record(
                        root, {"api_url": api_url, "pid": prefect.pid, "ui_url": prefect_url, "mlflow_url": mlflow_url}
                    )
                    recorded = True
                    say(f"Prefect server at {api_url} recorded in {record_path(root)}")
                time.sleep(0.5)
    except Interrupted as e:
        code = e.exit_code
    finally:
        # a second Ctrl-C must not cut the stopping short
        saved_handlers = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            info = _read_json(record_path(root))
            if info and "Prefect server" in procs and info.get("pid") == procs["Prefect server"].pid:
                record_path(root).unlink(missing_ok=True)
            for proc in procs.values():
                if proc.poll() is None:
                    stop_group(proc, first=signal.SIGTERM)
        finally:
            for s, handler in saved_handlers.items():
                signal.signal(s, handler)
    if failed:
        raise BigmodelError(failed)
    return code

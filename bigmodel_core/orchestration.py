"""Which Prefect API a command talks to, and how Prefect logs, decided before Prefect is imported.

In order: PREFECT_API_URL when the user set one (a team server); else the workspace's own server that
`make ui` started (it records itself in .prefect/ui-server.json), so runs show up there live and no
second server starts; else a temporary server on the workspace's database (.prefect/prefect.db) with a
start-up timeout sized for a loaded 2-core machine (Prefect's default of 20 s is not).

Logs: every stage line goes to the Prefect API at INFO (the UI shows it under each task run). The
console gets only the flow's own progress lines and the command's one-line `error:`; Prefect's records
(a failed task's traceback among them) stay in the UI, or show on the console too with --verbose.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

#: seconds a temporary Prefect server may take to start (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS wins)
STARTUP_TIMEOUT = 180


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def workspace_server(root: Path) -> str | None:
    """The API URL of the Prefect server `make ui` runs for this workspace, if it is up."""
    try:  # `make ui` always writes its record here, whatever PREFECT_HOME says
        info = json.loads((Path(root) / ".prefect" / "ui-server.json").read_text())
        url, pid = str(info["api_url"]).rstrip("/"), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(pid):
        return None
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return url if r.status == 200 else None
    except OSError:
        return None


def configure(root: Path, verbose: bool = False) -> str:
    """Set Prefect's environment for this process; return which server will be used, in words."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO" if verbose else os.environ.get(
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    if os.environ.get("PREFECT_API_URL"):
        return f"Prefect server {os.environ['PREFECT_API_URL']} (PREFECT_API_URL)"
    os.environ.setdefault("PREFECT_HOME", str(Path(root).resolve() / ".prefect"))
    url = workspace_server(root)
    if url:
        os.environ["PREFECT_API_URL"] = url
        return f"the workspace's Prefect server {url} (make ui)"
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(STARTUP_TIMEOUT))
    return (f"a temporary Prefect server on {os.environ['PREFECT_HOME']}/prefect.db (start-up timeout "
            f"{os.environ['PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS']}s)")

"""Tests never write into the user's Prefect database or mlflow.db.

`make run` keeps Prefect's database in the repo's .prefect/ and MLflow's in mlflow.db; a user's shell
may point MLFLOW_TRACKING_URI or PREFECT_API_URL at real servers. The test process gets a throwaway
PREFECT_HOME and none of those variables (conftest), every workspace command gets its own Prefect
home (`env_for`), and `make test` no longer exports PREFECT_HOME at all.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, USER_STATE_VARS, env_for

# Where the user's own state lives: the repo (make run, make ui) and Prefect's default home.
USER_PLACES = (REPO, Path.home() / ".prefect")


def inside(path: str | Path, parent: Path) -> bool:
    return Path(path).resolve().is_relative_to(parent.resolve())


@pytest.mark.unit
def test_the_test_process_has_a_prefect_home_of_its_own_and_no_tracking_server():
    home = os.environ["PREFECT_HOME"]
    assert not any(inside(home, place) for place in USER_PLACES), home
    assert not set(USER_STATE_VARS) & set(os.environ)
    # Prefect read its settings when the flows were imported at collection; they follow the new home
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    assert inside(settings.home, Path(home))
    assert settings.api.url is None  # in-process flows use an ephemeral server on that home's database


def test_a_workspace_command_keeps_its_flow_runs_in_the_workspace(tmp_path, monkeypatch):
    """What `make test` used to pass down (PREFECT_HOME=<repo>/.prefect) and what a user may have set
    no longer reaches a command run in a test workspace: a real flow run lands in <workspace>/.prefect."""
    monkeypatch.setenv("PREFECT_HOME", str(REPO / ".prefect"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{REPO / 'mlflow.db'}")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens on the discard port
    ws = tmp_path / "ws"
    ws.mkdir()

    env = env_for(ws)
    assert env["PREFECT_HOME"] == str(ws.resolve() / ".prefect")
    assert not set(USER_STATE_VARS) & set(env)

    name = f"isolation-probe-{uuid.uuid4().hex[:8]}"
    probe = (
        "import json\n"
        "from prefect import flow\n"
        "from prefect.settings import get_current_settings\n"
        f"@flow(name={name!r})\n"
        "def probe():\n"
        "    return 42\n"
        "assert probe() == 42\n"
        "s = get_current_settings()\n"
        "print(json.dumps({'home': str(s.home), 'db': s.server.database.connection_url.get_secret_value()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert inside(seen["home"], ws) and str(ws.resolve()) in seen["db"], seen

    with sqlite3.connect(ws / ".prefect" / "prefect.db") as con:
        assert con.execute("select count(*) from flow where name = ?", (name,)).fetchone() == (1,)
    user_db = REPO / ".prefect" / "prefect.db"
    if user_db.exists():  # read-only: the user's database may be in use
        con = sqlite3.connect(f"file:{user_db}?mode=ro", uri=True, timeout=30)
        try:
            assert con.execute("select count(*) from flow where name = ?", (name,)).fetchone() == (0,)
        finally:
            con.close()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_gives_prefect_home_to_run_ui_repro_but_not_to_test(tmp_path):
    """The commands each target starts, replaced by stubs that print the PREFECT_HOME they were given."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("python", "bigmodel", "dvc"):
        (fake / tool).write_text(f'#!/bin/sh\necho "{tool} PREFECT_HOME=[$PREFECT_HOME]"\n')
        (fake / tool).chmod(0o755)
    stamp = tmp_path / "installed"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    proc = subprocess.run(["make", "-s", "-C", str(REPO), "test", "run", "repro", f"BIN={fake}", f"STAMP={stamp}",
                           "-o", str(stamp)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "python PREFECT_HOME=[]",
        f"bigmodel PREFECT_HOME=[{REPO}/.prefect]",
        f"dvc PREFECT_HOME=[{REPO}/.prefect]",
    ]

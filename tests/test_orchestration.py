"""Which Prefect services the temporary server of `bigmodel run` runs; where the workspace's UIs are; `bigmodel ui`
refusing a port in use; the pins of the key packages (pyproject's ranges against constraints.txt)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO, env_for, write_params, tiny_params_dict


def test_every_prefect_service_is_decided_on_for_the_temporary_server(monkeypatch):
    from prefect.settings import Settings
    from prefect.settings.models.server.services import ServerServicesSettings

    from bigmodel_core.pipeline.orchestration import RUN_SERVER_OFF, RUN_SERVER_ON

    services = set(ServerServicesSettings.model_fields)
    assert set(RUN_SERVER_OFF) | set(RUN_SERVER_ON) == services, "a Prefect service neither kept nor left off"
    assert not set(RUN_SERVER_OFF) & set(RUN_SERVER_ON)
    assert "task_run_recorder" in RUN_SERVER_ON  # task runs are written from events by this service
    # the variables api_server sets are Prefect's own names for these settings
    for name in RUN_SERVER_OFF:
        monkeypatch.setenv(f"PREFECT_SERVER_SERVICES_{name.upper()}_ENABLED", "false")
    settings = Settings().server.services
    assert [name for name in RUN_SERVER_OFF if getattr(settings, name).enabled] == []
    assert settings.task_run_recorder.enabled and settings.event_persister.enabled


@pytest.mark.stage
def test_the_workspace_ui_addresses_default_then_follow_the_ports_last_used(tmp_path, monkeypatch):
    from bigmodel_core.config import load_params
    from bigmodel_core.pipeline.ui import _save_ports, _write_record, addresses, mlflow_ui_url, running

    monkeypatch.delenv("BIGMODEL_MLFLOW_UI_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a = addresses(tmp_path)
    assert (a.mlflow, a.prefect, a.prefect_api) == ("http://127.0.0.1:5000", "http://127.0.0.1:4200",
                                                    "http://127.0.0.1:4200/api")
    _save_ports(tmp_path, 5123, 4321)
    assert json.loads((tmp_path / ".bigmodel/ui.json").read_text()) == {"mlflow_port": 5123, "prefect_port": 4321}
    assert addresses(tmp_path) == type(a)("http://127.0.0.1:5123", "http://127.0.0.1:4321")
    # a record left by a `bigmodel ui` that is gone (no such process) does not count
    dead = subprocess.Popen(["true"])
    dead.wait()
    _write_record(tmp_path, {"api_url": "http://127.0.0.1:9/api", "pid": dead.pid, "ui_url": "http://127.0.0.1:9",
                             "mlflow_url": "http://127.0.0.1:8"})
    assert running(tmp_path) is None and addresses(tmp_path).prefect == "http://127.0.0.1:4321"

    params = load_params(write_params(tmp_path, tiny_params_dict()))
    assert mlflow_ui_url(params, tmp_path) == "http://127.0.0.1:5123"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com/")  # a team's tracking server: its UI
    assert mlflow_ui_url(params, tmp_path) == "https://mlflow.example.com"
    monkeypatch.setenv("BIGMODEL_MLFLOW_UI_URL", "http://proxy.example.com/mlflow/")
    assert mlflow_ui_url(params, tmp_path) == "http://proxy.example.com/mlflow"


@pytest.mark.e2e
def test_bigmodel_ui_refuses_a_port_in_use_before_starting_anything(tmp_path):
    write_params(tmp_path, tiny_params_dict())
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        proc = subprocess.run([str(Path(BIN) / "bigmodel"), "ui", "--prefect-port", str(port), "--mlflow-port",
                               str(free)], cwd=tmp_path, env=env_for(tmp_path), capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (f"error: port {port} on 127.0.0.1 is already in use; choose others: "
                                   "bigmodel ui --mlflow-port 5001 --prefect-port 4201")
    assert proc.stdout == ""
    assert not (tmp_path / ".prefect/ui-server.json").exists() and not (tmp_path / "mlflow.db").exists()


def _constraint(name: str) -> str:
    found = re.search(rf"^{re.escape(name)}==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    assert found, f"{name} is not pinned in constraints.txt"
    return found.group(1)


@pytest.mark.parametrize("name", ["prefect", "mlflow", "dvc", "sqlalchemy", "fastapi"])
def test_the_ranges_a_plain_install_resolves_admit_the_tested_versions(name):
    """pyproject's range (fastapi: Prefect's own, which is what governs it) holds constraints.txt's version, and
    this environment runs that version: an own-repository install with -c constraints.txt gets what is tested."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement
    from packaging.version import Version

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    pinned = Version(_constraint(name))
    assert Version(version(name)) == pinned, f"installed {name} {version(name)}, constraints.txt says {pinned}"
    ours = {Requirement(r).name.lower(): Requirement(r)
            for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    if name in ours:
        assert ours[name].specifier.contains(pinned), f"pyproject's {ours[name]} excludes the tested {name} {pinned}"
    else:  # a transitive pin: the range that governs it is its dependant's
        owner = {"sqlalchemy": "prefect", "fastapi": "prefect"}[name]
        reqs = [Requirement(r) for r in requires(owner) if Requirement(r).name.lower() == name and not Requirement(r).marker]
        assert reqs and all(r.specifier.contains(pinned) for r in reqs), reqs
    if name == "prefect":  # 3.8.8's scheduler never inserted a scheduled run (SQLAlchemy 2.1)
        assert not ours["prefect"].specifier.contains("3.8.8")

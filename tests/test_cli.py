"""The `bigmodel` command itself: help that shows flags as flags, --version, a taken port, required reasons."""

from __future__ import annotations

import socket
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bigmodel_core.cli import app
from tests.conftest import BIN, env_for, tiny_params_dict

BIGMODEL = str(Path(BIN) / "bigmodel")


def _bigmodel(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([BIGMODEL, *args], cwd=cwd, env=env_for(cwd), capture_output=True, text=True,
                          timeout=timeout)


def _commands(group=app) -> list[list[str]]:
    """Every command path of the CLI (`run`, `report data`, ...), from typer's own registry."""
    paths = []
    for command in group.registered_commands:
        paths.append([command.name or command.callback.__name__.replace("_", "-")])
    for sub in group.registered_groups:
        paths += [[sub.name, *path] for path in _commands(sub.typer_instance)]
    return paths


def test_help_shows_boolean_flags_as_flags_everywhere():
    runner = CliRunner()
    commands = _commands()
    assert ["run"] in commands and ["report", "data"] in commands and len(commands) >= 13
    for path in [[], *commands]:
        res = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        assert "<bool>" not in res.output and "BOOLEAN" not in res.output, (path, res.output)
    flags = runner.invoke(app, ["run", "--help"], terminal_width=200).output
    line = next(line for line in flags.splitlines() if "--force" in line)
    assert line.split("--force", 1)[1].split()[0] == "Re-run"  # the flag, then straight its help


def test_help_of_the_real_command_has_no_bool_placeholders(tmp_path):
    for args in (["--help"], ["run", "--help"], ["serve", "--help"]):
        proc = _bigmodel(tmp_path, *args)
        assert proc.returncode == 0 and "<bool>" not in proc.stdout, proc.stdout


def test_version_prints_the_installed_version(tmp_path):
    proc = _bigmodel(tmp_path, "--version")
    assert proc.returncode == 0 and proc.stdout == f"bigmodel {version('bigmodel')}\n" and proc.stderr == ""


def test_serve_on_a_taken_port_says_so_before_anything_else(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict(), sort_keys=False))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _bigmodel(tmp_path, "serve", "--port", str(port))
    assert proc.returncode == 4, proc.stdout + proc.stderr  # not 3, the gates' code (uvicorn's startup failure)
    assert proc.stdout == "" and "serving" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: 127.0.0.1:{port} is already in use by another process: nothing was started; stop what listens "
        f"there, or choose another port (bigmodel serve --port {port + 1})"]
    # nothing was made in the directory on the way (no tracking database, no downloaded model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("command", [["rollback"], ["promote", "1"]])
def test_promote_and_rollback_require_a_reason(tmp_path, command):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict(), sort_keys=False))
    proc = _bigmodel(tmp_path, *command)
    assert proc.returncode == 2 and "Missing option '--reason'" in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no registry was opened


# (arguments, the one line on stderr): errors that stop a command before it does any work; each exits 2
QUICK_ERRORS = [
    (["init", "nope"], "error: nope: not a directory (create it first, e.g. a git repository: git init nope)"),
    (["schedule"], "error: give one of --cron EXPR or --interval EVERY"),
    (["predict"], 'error: nothing to classify: bigmodel predict "some text" ... or --input FILE --output FILE'),
    (["predict", "--input", "a.csv"], "error: --input and --output go together: bigmodel predict --input FILE --output FILE"),
    (["report", "data"], "error: reports/data_quality.json: no data-quality report yet (run `bigmodel run` or "
                         "`bigmodel stage validate` first)"),
    (["stage", "nope"], "error: unknown stage 'nope'; stages are: ingest, clean, validate, augment, split, train, "
                        "evaluate, deploy"),
    (["run", "-S", "train.epochs=abc"], "error: params.yaml: train.epochs: Input should be a valid integer, unable to "
                                        "parse string as an integer, got 'abc'"),
    (["dag", "--file", "missing.yaml"], "error: missing.yaml: not found (run from the workspace root)"),
]


@pytest.mark.parametrize("args, line", QUICK_ERRORS, ids=[" ".join(a) for a, _ in QUICK_ERRORS])
def test_an_error_is_one_line_and_its_exit_code(tmp_path, args, line):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict(), sort_keys=False))
    proc = _bigmodel(tmp_path, *args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n")
    res = CliRunner().invoke(app, args, catch_exceptions=False) if args[0] in ("schedule", "predict") else None
    if res is not None:  # in-process (what tests and embedders use) the same line and code
        assert res.exit_code == 2 and line in res.output

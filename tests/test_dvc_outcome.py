"""How a stage's DVC run ended, read from the outcome file `bigmodel_core.pipeline.dvc_run` writes, not from DVC's
console text: the stage's own exit code and one-line error, ran or up to date, DVC's lock held by another command.

The e2e tests run the real thing (DVC's Python API in a child process, `bigmodel stage` under it) in a DVC workspace;
the unit tests drive the stage task's decisions with outcome files written by hand."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from bigmodel_core.pipeline.dvc_run import Outcome, report_stage_outcome, take_stage_outcome_path
from tests.conftest import dvc, env_for, make_workspace

LOCKED = "another DVC command kept this workspace locked for two minutes (.dvc/tmp/lock); nothing was changed"


@pytest.fixture
def ws(tmp_path) -> Path:
    root = make_workspace(tmp_path / "ws")
    dvc(root, "init", "--no-scm", "-q")
    return root


def _dvc_run(root: Path, stage: str, *more: str) -> tuple[subprocess.CompletedProcess, Outcome | None]:
    path = root.parent / "outcome.json"
    path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bigmodel_core.pipeline.dvc_run", stage, "--outcome", str(path), *more]
    proc = subprocess.run(cmd, cwd=root, env=env_for(root), capture_output=True, text=True, timeout=600)
    return proc, Outcome.read(path)


def _bad_lr(root: Path) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["train"]["lr"] = -1.0
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def test_a_stage_that_runs_then_is_up_to_date_then_is_forced(ws):
    proc, outcome = _dvc_run(ws, "ingest")
    assert outcome == Outcome("ingest", ran=True), proc.stdout + proc.stderr
    assert proc.returncode == 0
    assert "Running stage 'ingest'" in proc.stdout and "stage ingest: done in" in proc.stdout  # both still stream
    assert "ingest" in yaml.safe_load((ws / "dvc.lock").read_text())["stages"]  # DVC recorded it
    proc, outcome = _dvc_run(ws, "ingest")
    assert outcome == Outcome("ingest", ran=False), proc.stdout + proc.stderr
    assert "stage ingest: done" not in proc.stdout
    proc, outcome = _dvc_run(ws, "ingest", "--force")
    assert outcome == Outcome("ingest", ran=True), proc.stdout + proc.stderr
    assert not list(ws.parent.glob("outcome.json*.stage"))  # the stage's own report is gone with the run


def test_a_stage_that_refuses_its_params_reports_exit_2_and_its_own_message(ws):
    _bad_lr(ws)
    proc, outcome = _dvc_run(ws, "ingest")
    assert outcome is not None, proc.stdout + proc.stderr
    assert proc.returncode == 2 and outcome.exit_code == 2 and outcome.stage_failed and not outcome.ran
    assert outcome.error is not None and outcome.error.startswith("params.yaml: train.lr")
    assert "greater than 0" in outcome.error and "\n" not in outcome.error
    assert f"error: {outcome.error}" in proc.stderr  # the stage's own line, as the stage printed it
    assert "ingest" not in yaml.safe_load((ws / "dvc.lock").read_text() if (ws / "dvc.lock").exists() else "{}") \
        .get("stages", {})


def test_dvc_s_own_failure_is_exit_1_with_its_exception_not_a_stage_report(ws):
    proc, outcome = _dvc_run(ws, "no-such-stage")
    assert outcome is not None and outcome.exit_code == 1 and proc.returncode == 1
    assert not outcome.stage_failed and not outcome.ran and not outcome.lock_busy
    assert "no-such-stage" in (outcome.error or "")


def test_a_held_dvc_lock_is_reported_as_busy_and_nothing_runs(ws):
    import zc.lockfile  # what DVC locks its repository with

    (ws / ".dvc/tmp").mkdir(parents=True, exist_ok=True)
    held = zc.lockfile.LockFile(str(ws / ".dvc/tmp/lock"))
    try:
        proc, outcome = _dvc_run(ws, "ingest")
    finally:
        held.close()
    assert outcome is not None and outcome.lock_busy and outcome.exit_code == 1 and not outcome.ran, proc.stderr
    assert not (ws / "data/raw").exists() and not (ws / "dvc.lock").exists()
    assert _dvc_run(ws, "ingest")[1] == Outcome("ingest", ran=True)  # free again: it runs


def test_the_stage_task_raises_the_stage_s_code_and_message_and_logs_every_line(ws):
    from bigmodel_tasks.dvc_stage import StageFailed, reproduce_stage

    _bad_lr(ws)
    records: list[str] = []
    logger = logging.getLogger("test-dvc-outcome")
    handler = _ListHandler(records)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(StageFailed) as e:
            reproduce_stage("ingest", str(ws), False, env_for(ws), logger)
    finally:
        logger.removeHandler(handler)
    assert e.value.stage == "ingest" and e.value.exit_code == 2
    assert e.value.message.startswith("params.yaml: train.lr") and "greater than 0" in e.value.message
    assert any(r.startswith("ingest | error: params.yaml: train.lr") for r in records)  # streamed to the task log
    assert any(r.startswith("ingest | Running stage 'ingest'") for r in records)


def test_the_stage_task_waits_for_a_lock_taken_after_its_check_then_runs(ws, monkeypatch):
    import zc.lockfile

    from bigmodel_tasks import dvc_stage

    monkeypatch.setattr(dvc_stage, "wait_for_dvc", lambda root, say: 0.0)  # the lock is taken after this check
    (ws / ".dvc/tmp").mkdir(parents=True, exist_ok=True)
    held = zc.lockfile.LockFile(str(ws / ".dvc/tmp/lock"))
    threading.Timer(6.0, held.close).start()  # the other command ends while the stage task retries
    result = dvc_stage.reproduce_stage("ingest", str(ws), False, env_for(ws), logging.getLogger("test"))
    assert result["ran"] is True and result["seconds"] > 6.0
    assert "ingest" in yaml.safe_load((ws / "dvc.lock").read_text())["stages"]


# ----------------------------------------------------------------------------------------- unit: outcome handling


class _ListHandler(logging.Handler):
    def __init__(self, records: list[str]) -> None:
        super().__init__(logging.INFO)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def _fake_runs(monkeypatch, outcomes: list[dict | None], code: int = 1) -> list[list[str]]:
    """Replace the child process: each call writes the next outcome (None: writes nothing) where it was told to."""
    from bigmodel_tasks import dvc_stage

    calls: list[list[str]] = []

    def run(cmd, root, env, stage, logger):
        calls.append(cmd)
        said = outcomes[min(len(calls), len(outcomes)) - 1]
        if said is not None:
            Path(cmd[cmd.index("--outcome") + 1]).write_text(json.dumps(said))
        return (said or {}).get("exit_code", code), "last line of the output"

    monkeypatch.setattr(dvc_stage, "_run_logged", run)
    monkeypatch.setattr(dvc_stage, "wait_for_dvc", lambda root, say: 0.0)
    monkeypatch.setattr(dvc_stage, "_env", lambda extra: {})
    monkeypatch.setattr(dvc_stage.time, "sleep", lambda s: None)
    return calls


@pytest.mark.unit
@pytest.mark.parametrize("ran", [True, False])
def test_ran_comes_from_the_outcome(tmp_path, monkeypatch, ran):
    from bigmodel_tasks.dvc_stage import reproduce_stage

    calls = _fake_runs(monkeypatch, [{"stage": "clean", "ran": ran, "exit_code": 0}])
    result = reproduce_stage("clean", str(tmp_path), True, None, logging.getLogger("t"))
    assert result["stage"] == "clean" and result["ran"] is ran
    assert calls[0][1:4] == ["-m", "bigmodel_core.pipeline.dvc_run", "clean"] and calls[0][-1] == "--force"


@pytest.mark.unit
@pytest.mark.parametrize("code", [2, 3, 130, 143])
def test_the_stage_s_own_exit_code_and_message_are_raised_and_not_retried(tmp_path, monkeypatch, code):
    from bigmodel_tasks.dvc_stage import StageFailed, reproduce_stage, retry_if_transient

    _fake_runs(monkeypatch, [{"stage": "validate", "exit_code": code, "error": "data gate failed: min_rows is 10000",
                              "stage_failed": True}])
    with pytest.raises(StageFailed) as e:
        reproduce_stage("validate", str(tmp_path), False, None, logging.getLogger("t"))
    assert (e.value.stage, e.value.exit_code, e.value.message) == ("validate", code,
                                                                   "data gate failed: min_rows is 10000")
    assert not retry_if_transient(None, None, _Failed(e.value))


@pytest.mark.unit
def test_a_failure_of_the_stage_s_environment_is_retried(tmp_path, monkeypatch):
    from bigmodel_tasks.dvc_stage import StageFailed, reproduce_stage, retry_if_transient

    _fake_runs(monkeypatch, [{"stage": "ingest", "exit_code": 1, "error": "stage ingest: disk full (OSError)",
                              "stage_failed": True}])
    with pytest.raises(StageFailed) as e:
        reproduce_stage("ingest", str(tmp_path), False, None, logging.getLogger("t"))
    assert e.value.exit_code == 1 and e.value.message == "stage ingest: disk full (OSError)"
    assert retry_if_transient(None, None, _Failed(e.value))


@pytest.mark.unit
def test_a_busy_lock_is_tried_again_until_it_is_free(tmp_path, monkeypatch):
    from bigmodel_tasks.dvc_stage import reproduce_stage

    busy = {"stage": "train", "exit_code": 1, "error": "Unable to acquire lock", "lock_busy": True}
    calls = _fake_runs(monkeypatch, [busy, busy, {"stage": "train", "ran": True, "exit_code": 0}])
    records: list[str] = []
    logger = logging.getLogger("test-dvc-outcome-busy")
    logger.setLevel(logging.INFO)
    logger.addHandler(_ListHandler(records))
    assert reproduce_stage("train", str(tmp_path), False, None, logger)["ran"] is True
    assert len(calls) == 3
    assert records == ["another DVC command took .dvc/tmp/lock as train started; trying again once it is free"]


@pytest.mark.unit
def test_a_lock_held_past_the_patience_fails_with_its_own_message(tmp_path, monkeypatch):
    from bigmodel_tasks import dvc_stage

    monkeypatch.setattr(dvc_stage, "LOCK_PATIENCE_SECONDS", 0.0)
    calls = _fake_runs(monkeypatch, [{"stage": "train", "exit_code": 1, "error": "Unable to acquire lock. ...",
                                      "lock_busy": True}])
    with pytest.raises(dvc_stage.StageFailed) as e:
        dvc_stage.reproduce_stage("train", str(tmp_path), False, None, logging.getLogger("t"))
    assert e.value.message == LOCKED and e.value.exit_code == 1 and len(calls) == 1


@pytest.mark.unit
def test_a_dvc_file_dvc_cannot_read_is_named_with_exit_2(tmp_path, monkeypatch):
    from bigmodel_tasks import dvc_stage

    monkeypatch.setattr(dvc_stage, "dvc_file_problem", lambda root: "dvc.lock: line 3, column 1: ... Fix: ...")
    _fake_runs(monkeypatch, [{"stage": "train", "exit_code": 1, "error": "failed to load dvc.lock"}])
    with pytest.raises(dvc_stage.StageFailed) as e:
        dvc_stage.reproduce_stage("train", str(tmp_path), False, None, logging.getLogger("t"))
    assert (e.value.exit_code, e.value.message) == (2, "dvc.lock: line 3, column 1: ... Fix: ...")
    # the stage's own failure is never replaced by a guess about the pipeline files
    _fake_runs(monkeypatch, [{"stage": "train", "exit_code": 3, "error": "gate", "stage_failed": True}])
    with pytest.raises(dvc_stage.StageFailed) as e:
        dvc_stage.reproduce_stage("train", str(tmp_path), False, None, logging.getLogger("t"))
    assert (e.value.exit_code, e.value.message) == (3, "gate")


@pytest.mark.unit
def test_a_run_that_wrote_no_outcome_fails_with_its_exit_status(tmp_path, monkeypatch):
    from bigmodel_tasks import dvc_stage

    monkeypatch.setattr(dvc_stage, "dvc_file_problem", lambda root: pytest.fail("not asked: DVC said nothing"))
    _fake_runs(monkeypatch, [None], code=-9)
    with pytest.raises(dvc_stage.StageFailed) as e:
        dvc_stage.reproduce_stage("train", str(tmp_path), False, None, logging.getLogger("t"))
    assert e.value.exit_code == -9 and "without reporting an outcome: last line of the output" in e.value.message


@pytest.mark.unit
def test_the_stage_command_s_report_is_taken_from_the_environment_once(tmp_path, monkeypatch):
    path = tmp_path / "stage.json"
    monkeypatch.setenv("BIGMODEL_STAGE_OUTCOME", str(path))
    assert take_stage_outcome_path() == path
    assert take_stage_outcome_path() is None  # gone: processes the stage starts do not inherit it
    report_stage_outcome(path, 2, "params.yaml: train.lr: Input should be greater than 0")
    assert json.loads(path.read_text()) == {"exit_code": 2, "error": "params.yaml: train.lr: Input should be greater "
                                                                    "than 0"}
    report_stage_outcome(None, 0)  # nobody asked: nothing is written


@pytest.mark.unit
def test_an_outcome_round_trips_and_a_missing_or_torn_one_reads_as_none(tmp_path):
    path = tmp_path / "o.json"
    Outcome("train", ran=True).write(path)
    assert Outcome.read(path) == Outcome("train", ran=True)
    assert Outcome.read(tmp_path / "absent.json") is None
    path.write_text('{"stage": "tr')
    assert Outcome.read(path) is None


class _Failed:
    """A Prefect state whose result raises `exc` (what retry_if_transient is given)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def result(self):
        raise self.exc

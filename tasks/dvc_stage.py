"""Run one dvc.yaml stage through DVC, so DVC decides whether it is stale and records dvc.lock.

The stage runs in a child process (`python -m bigmodel_core.pipeline.dvc_run`, DVC's Python API) whose output is
streamed to the task's log; how it ended (ran or up to date, the stage's exit code and one-line error, DVC's lock
held by another command) is read from the JSON outcome that process writes."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.runtime import flow_run

from bigmodel_core.errors import PERMANENT_EXIT_CODES, DataError
from bigmodel_core.pipeline.dvc_run import Outcome
from bigmodel_core.pipeline.interrupts import stop_group
from bigmodel_core.pipeline.workspace import child_env, dvc_file_problem, dvc_status, wait_for_dvc


class StageFailed(Exception):
    """A stage exited non-zero; the message is the stage's own one-line error."""

    def __init__(self, stage: str, exit_code: int, message: str) -> None:
        super().__init__(f"stage {stage!r} failed (exit {exit_code}): {message}")
        self.stage, self.exit_code, self.message = stage, exit_code, message


def retry_if_transient(task, task_run, state) -> bool:
    """Retry only failures that may pass on a second try (not bad input, not a closed gate, not a stage
    someone interrupted: 130 and 143 are SIGINT and SIGTERM)."""
    try:
        state.result()
    except StageFailed as e:
        return e.exit_code not in PERMANENT_EXIT_CODES | {130, 143}
    except Exception:
        return True
    return False


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    return {
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # progress bars are noise in a task's log
        **child_env(
            {"PYTHONUNBUFFERED": "1", "BIGMODEL_FLOW_RUN_ID": str(flow_run.get_id() or "none"), **(extra or {})}
        ),
    }


@task(name="dvc-status", tags=["dvc"])
def check_stale(root: str) -> dict:
    """Which stages DVC would run; logged so the Prefect UI shows why a run did (or did not) work."""
    logger = get_run_logger()
    stale = dvc_status(Path(root))
    if stale:
        for name, changes in stale.items():
            logger.info("%s is stale: %s", name, json.dumps(changes)[:500])
    else:
        logger.info("every stage is up to date: raw data, params and code unchanged since dvc.lock")
    return stale


#: How long a stage waits, in all, when another DVC command takes the repository lock between our check and our start
LOCK_PATIENCE_SECONDS = 120.0


@task(name="dvc-stage", tags=["dvc"], retry_condition_fn=retry_if_transient, task_run_name="{stage}")
def run_stage(stage: str, root: str, force: bool = False, env: dict[str, str] | None = None) -> dict:
    """The stage through DVC (`bigmodel_core.pipeline.dvc_run`, i.e. `dvc repro --single-item STAGE`); returns whether
    it ran or was up to date, and how long it took."""
    return reproduce_stage(stage, root, force, env, get_run_logger())


def reproduce_stage(stage: str, root: str, force: bool, env: dict[str, str] | None, logger) -> dict:
    """What `run_stage` does, with the logger given. Whether the stage ran, its exit code and its error come from
    the outcome file the DVC run writes (JSON), never from DVC's console text."""
    started = time.perf_counter()
    busy_since: float | None = None
    with tempfile.TemporaryDirectory(prefix="bigmodel-dvc-") as tmp:
        path = Path(tmp) / "outcome.json"
        cmd = [sys.executable, "-m", "bigmodel_core.pipeline.dvc_run", stage, "--outcome", str(path)]
        cmd += ["--force"] if force else []
        while True:
            wait_for_dvc(Path(root), logger.info)
            path.unlink(missing_ok=True)
            code, last_line = _run_logged(cmd, root, _env(env), stage, logger)
            outcome = Outcome.read(path)
            if outcome is None or not outcome.lock_busy:
                break
            # another DVC command took the lock between our check and our start: wait for it, as above
            if busy_since is None:
                busy_since = time.monotonic()
                logger.info("another DVC command took .dvc/tmp/lock as %s started; trying again once it is free", stage)
            if time.monotonic() - busy_since >= LOCK_PATIENCE_SECONDS:
                break
            time.sleep(1.0)
    seconds = time.perf_counter() - started
    if outcome is None:  # the DVC process died before it could say (a crash, a kill from outside)
        raise StageFailed(stage, code or 1, f"DVC stopped (exit {code}) without reporting an outcome: {last_line}")
    if outcome.exit_code != 0:
        message, exit_code = outcome.error or f"no message (exit {outcome.exit_code})", outcome.exit_code
        if outcome.lock_busy:  # DVC's own message advises deleting the lock file, which would break its holder
            message = (
                "another DVC command kept this workspace locked for two minutes (.dvc/tmp/lock); nothing was changed"
            )
        elif not outcome.stage_failed:
            # DVC stopped before the stage said anything: a dvc.yaml or dvc.lock it cannot read is named by its loader
            problem = dvc_file_problem(Path(root))
            if problem:
                message, exit_code = problem, DataError.exit_code
        raise StageFailed(stage, exit_code, message)
    return {"stage": stage, "ran": outcome.ran, "seconds": round(seconds, 2)}


def _run_logged(cmd: list[str], root: str, env: dict, stage: str, logger) -> tuple[int, str]:
    """Run `cmd`, sending every line to the task's log (the Prefect UI) and progress lines to the console; returns
    its exit status and its last non-blank line.

    The command leads a process group of its own, so a terminal's Ctrl-C reaches only `bigmodel run`;
    when that is interrupted (Ctrl-C, SIGTERM) the whole group is stopped, SIGINT first (DVC's graceful
    path), before the interruption goes on."""
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    last = "no output"
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.strip():
                last = line
                logger.info("%s | %s", stage, line)
                if line.startswith(("epoch ", "step ", "train: ", "warning: ")):
                    # the console shows training progress even with quiet logs; a stage's `error:` line is
                    # not echoed: the command's one closing line carries it
                    print(f"    {line}", flush=True)
        return proc.wait(), last
    except BaseException:
        stop_group(proc)
        logger.warning("%s | stopped: the run was interrupted", stage)
        raise

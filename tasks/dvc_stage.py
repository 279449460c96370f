"""Run one dvc.yaml stage through DVC, so DVC decides whether it is stale and records dvc.lock."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.runtime import flow_run

from bigmodel_core.errors import PERMANENT_EXIT_CODES, DataError
from bigmodel_core.pipeline.interrupts import stop_group
from bigmodel_core.pipeline.workspace import child_env, dvc_file_problem, dvc_status, wait_for_dvc


class StageFailed(Exception):
    """A stage exited non-zero; the message is the stage's own one-line error."""

    def __init__(self, stage: str, exit_code: int, message: str) -> None:
        super().__init__(f"stage {stage!r} failed (exit {exit_code}): {message}")
        self.stage, self.exit_code, self.message = stage, exit_code, message


def _stage_exit_code(output: str, dvc_code: int) -> int:
    # DVC exits 255/1 on any stage failure; the stage's own code is in its message.
    for line in reversed(output.splitlines()):
        if "exited with" in line:
            try:
                return int(line.rsplit("exited with", 1)[1].strip().rstrip(".").split()[0])
            except (ValueError, IndexError):
                break
    return dvc_code


def _last_error(output: str) -> str:
    for line in reversed(output.splitlines()):
        if line.startswith("error: "):
            return line[len("error: ") :]
    tail = [line for line in output.splitlines() if line.strip()]
    return tail[-1] if tail else "no output"


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


# DVC's own lock message advises deleting the lock file, which would break the run that holds it
_DVC_LOCKED = "Unable to acquire lock"


@task(name="dvc-stage", tags=["dvc"], retry_condition_fn=retry_if_transient, task_run_name="{stage}")
def run_stage(stage: str, root: str, force: bool = False, env: dict[str, str] | None = None) -> dict:
    """`dvc repro --single-item STAGE`; returns whether it ran or was up to date, and how long it took."""
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    started = time.perf_counter()
    for _attempt in range(120):
        wait_for_dvc(Path(root), logger.info)
        code, output = _run_logged(cmd, root, _env(env), stage, logger)
        if code == 0 or _DVC_LOCKED not in output:
            break
        time.sleep(1.0)  # another DVC command took the lock between our check and our start
    seconds = time.perf_counter() - started
    if code != 0:
        message = _last_error(output)
        exit_code = _stage_exit_code(output, code)
        if _DVC_LOCKED in output:
            message = (
                "another DVC command kept this workspace locked for two minutes (.dvc/tmp/lock); nothing was changed"
            )
        elif not any(line.startswith("error: ") for line in output.splitlines()):
            # DVC stopped before the stage said anything: a dvc.yaml or dvc.lock it cannot read is named by its loader
            problem = dvc_file_problem(Path(root))
            if problem:
                message, exit_code = problem, DataError.exit_code
        raise StageFailed(stage, exit_code, message)
    ran = f"Running stage '{stage}'" in output
    return {"stage": stage, "ran": ran, "seconds": round(seconds, 2)}


def _run_logged(cmd: list[str], root: str, env: dict, stage: str, logger) -> tuple[int, str]:
    """Run `cmd`, sending every line to the task's log (the Prefect UI) and progress lines to the console.

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
    lines = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if line.strip():
                logger.info("%s | %s", stage, line)
                if line.startswith(("epoch ", "step ", "train: ", "warning: ")):
                    # the console shows training progress even with quiet logs; a stage's `error:` line is
                    # not echoed: the command's one closing line carries it
                    print(f"    {line}", flush=True)
        return proc.wait(), "\n".join(lines)
    except BaseException:
        stop_group(proc)
        logger.warning("%s | stopped: the run was interrupted", stage)
        raise

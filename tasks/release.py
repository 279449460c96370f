"""The flow's last step under deploy.git_commit: push, commit, tag and record the version
(bigmodel_core.release.record)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from bigmodel_core.config import load_params
from bigmodel_core.release.record import record


@task(name="release", tags=["git", "dvc"], retries=0)  # git and DVC errors here are not transient: no retries
def record_release(root: str) -> dict | None:
    """Commit dvc.lock, params and metrics, tag model/<name>/v<version>, `dvc push`; record them on the version."""
    logger = get_run_logger()

    def say(message: str) -> None:
        print(message, flush=True)
        logger.info(message)

    return record(Path(root), load_params(Path(root) / "params.yaml"), say=say)

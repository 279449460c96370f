"""One dvc.yaml stage through DVC's Python API, with its outcome written as JSON for the process that started it.

    python -m bigmodel_core.pipeline.dvc_run STAGE [--force] --outcome FILE

is what the flow's stage task runs (in a process group of its own, so an interruption can stop it and everything it
started). It asks DVC to reproduce STAGE alone (`Repo.reproduce(targets=[STAGE], single_item=True)`), which decides
whether the stage is stale, runs its command and records dvc.lock, exactly as `dvc repro --single-item STAGE` does;
DVC's log lines and the stage's own output go to this process's stdout and stderr as they come.

Instead of leaving the caller to read DVC's console text, it writes FILE (atomically) with the outcome:

    {"stage": "train", "ran": true, "exit_code": 0, "error": null, "lock_busy": false, "stage_failed": false}

- `ran`: DVC ran the stage's command (the stages `reproduce` returns); false when it was up to date.
- `exit_code`, `error`: the stage command's own exit code and one-line error, which `bigmodel stage` writes to the
  file named by BIGMODEL_STAGE_OUTCOME (`stage_failed` is then true); for a failure of DVC's own (a file it cannot
  load, an output the stage did not write) 1 and DVC's exception, its causes joined as DVC prints them.
- `lock_busy`: another DVC command held the repository lock (`dvc.lock.LockError`), so nothing was done.

The process exits with `exit_code`. Only DVC is imported beyond the standard library, and only in `reproduce`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

#: The environment variable naming the file where `bigmodel stage` writes its own exit code and one-line error.
STAGE_OUTCOME_ENV = "BIGMODEL_STAGE_OUTCOME"


@dataclass
class Outcome:
    """How one stage's DVC run ended (see the module's docstring)."""

    stage: str
    ran: bool = False
    exit_code: int = 0
    error: str | None = None
    lock_busy: bool = False
    stage_failed: bool = False

    @classmethod
    def read(cls, path: Path) -> Outcome | None:
        """The outcome written to `path`; None when there is none (the process died before writing it)."""
        try:
            data = json.loads(Path(path).read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def write(self, path: Path) -> None:
        _write(asdict(self), path)


def _write(data: dict, path: Path) -> None:
    from bigmodel_core.io import write_json

    write_json(data, path)


def take_stage_outcome_path() -> Path | None:
    """The file `bigmodel stage` reports its outcome to, taken out of the environment so that processes the stage
    starts (training ranks) neither see nor overwrite it; None when no one asked."""
    value = os.environ.pop(STAGE_OUTCOME_ENV, None)
    return Path(value) if value else None


def report_stage_outcome(path: Path | None, exit_code: int, error: str | None = None) -> None:
    """Write the stage command's own exit code and one-line error where `take_stage_outcome_path` said."""
    if path is not None:
        _write({"exit_code": int(exit_code), "error": error}, path)


def _said(exc: BaseException) -> str:
    """An exception and its causes in one line, as DVC's own console handler joins them."""
    parts, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if str(e):
            parts.append(str(e))
        e = e.__cause__ or e.__context__
    return ": ".join(parts) or type(exc).__name__


def reproduce(stage: str, force: bool, stage_outcome: Path) -> Outcome:
    """Reproduce `stage` alone in the DVC repository of the working directory; the stage command reports its own
    outcome to `stage_outcome` (through the environment DVC hands it)."""
    import logging

    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo

    log = logging.getLogger("dvc")  # importing dvc set up its console handlers: lines as `dvc repro` prints them
    stage_outcome.unlink(missing_ok=True)
    os.environ[STAGE_OUTCOME_ENV] = str(stage_outcome)
    outcome = Outcome(stage)
    try:
        with Repo() as repo:
            done = repo.reproduce(targets=[stage], single_item=True, force=force)
        outcome.ran = bool(done)
    except LockError as e:  # the repository lock (.dvc/tmp/lock), taken before anything is read or run
        outcome.exit_code, outcome.error, outcome.lock_busy = 1, _said(e), True
    except DvcException as e:
        log.exception("")  # DVC's ERROR line, for the task's log
        outcome.exit_code, outcome.error = 1, _said(e)
    finally:
        os.environ.pop(STAGE_OUTCOME_ENV, None)
    try:
        said = json.loads(stage_outcome.read_text())
    except (OSError, ValueError):
        said = None
    if isinstance(said, dict) and said.get("exit_code"):
        outcome.exit_code, outcome.error, outcome.stage_failed = int(said["exit_code"]), said.get("error"), True
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bigmodel_core.pipeline.dvc_run", description="Reproduce one dvc.yaml stage; write its outcome."
    )
    parser.add_argument("stage")
    parser.add_argument("--force", action="store_true", help="run the stage even when DVC finds it up to date")
    parser.add_argument("--outcome", type=Path, required=True, help="where to write the outcome (JSON)")
    args = parser.parse_args(argv)
    stage_outcome = args.outcome.with_name(args.outcome.name + ".stage")
    try:
        outcome = reproduce(args.stage, args.force, stage_outcome)
    except KeyboardInterrupt:  # SIGINT from the run that stops this group, outside the stage command's own run
        outcome = Outcome(args.stage, exit_code=130, error="interrupted by SIGINT")
    finally:
        stage_outcome.unlink(missing_ok=True)
    outcome.write(args.outcome)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())

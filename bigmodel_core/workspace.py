"""One pipeline run per workspace.

`bigmodel run`, a scheduled flow run and every stage that DVC starts on its own (`dvc repro`) take an
exclusive lock on `.bigmodel/run.lock` (flock: the kernel drops it when the holder dies, so a killed
run never leaves a stale lock). The holder writes who it is into the file, so a refused or waiting run
can say which run it waits for. Processes started by the holder (DVC, the stages, training ranks) see
BIGMODEL_WORKSPACE_LOCK in their environment and do not take the lock again.

DVC keeps its own lock (`.dvc/tmp/lock`) while one of its commands runs; a run waits for it to be free
instead of showing DVC's advice to delete it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from bigmodel_core.errors import BigmodelError, WorkspaceBusy

ENV = "BIGMODEL_WORKSPACE_LOCK"


def lock_path(root: Path) -> Path:
    return Path(root) / ".bigmodel" / "run.lock"


def holder(root: Path) -> str:
    """Who holds the workspace, in words (from the lock file; 'another process' if it says nothing)."""
    try:
        info = json.loads(lock_path(root).read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"{info.get('what', 'a run')} (pid {info.get('pid', '?')}, since {since})"


def held_by_parent() -> bool:
    """True inside a process started (directly or not) by the run that holds the lock."""
    return bool(os.environ.get(ENV))


@contextlib.contextmanager
def exclusive(root: Path, what: str, wait: bool = True,
              say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> Iterator[None]:
    """Hold the workspace for `what` (e.g. "bigmodel run"); wait for another holder or raise WorkspaceBusy."""
    if held_by_parent():
        yield
        return
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(root)
            if not wait:
                raise WorkspaceBusy(
                    f"another run holds this workspace: {who}; nothing was changed. Wait for it to end "
                    f"(`bigmodel run` waits by default) and run again") from None
            say(f"waiting for {who} to finish: one run per workspace ({path})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"what": what, "pid": os.getpid(), "since": time.time()}).encode(), 0)
        os.environ[ENV] = str(os.getpid())
        try:
            yield
        finally:
            os.environ.pop(ENV, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def dvc_busy(root: Path) -> bool:
    """Whether a DVC command holds the repository lock right now (probed without keeping it)."""
    path = Path(root) / ".dvc" / "tmp" / "lock"
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def wait_for_dvc(root: Path, say: Callable[[str], None], poll: float = 0.5) -> float:
    """Block while another DVC command holds the repository; return the seconds waited."""
    started = time.monotonic()
    if dvc_busy(root):
        say("waiting for a DVC command running in this workspace to finish (.dvc/tmp/lock)")
        while dvc_busy(root):
            time.sleep(poll)
    return time.monotonic() - started


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a DVC child process: this interpreter's bin/ first on PATH, so the `bigmodel` that
    dvc.yaml's commands call is the one running now."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **(extra or {})}


def dvc_status(root: Path) -> dict:
    """`dvc status --json`: stages whose deps, params or outs changed since dvc.lock (empty: nothing to do)."""
    wait_for_dvc(Path(root), lambda m: print(m, flush=True))
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=root, env=child_env(),
                          capture_output=True, text=True)
    out = proc.stdout.strip()
    if proc.returncode != 0:
        tail = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise BigmodelError(f"`dvc status` failed in {root}: {tail[-1] if tail else 'no output'}")
    try:
        return json.loads(out.splitlines()[-1]) if out else {}
    except ValueError:
        raise BigmodelError(f"could not read `dvc status --json` output: {out[-300:]!r}") from None

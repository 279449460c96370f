"""One pipeline run per workspace.

`bigmodel run`, a scheduled flow run and every stage that DVC starts on its own (`dvc repro`) take an
exclusive lock on `.bigmodel/run.lock` (the `filelock` package's flock: the kernel drops it when the holder
dies, so a killed run never leaves a stale lock). The holder writes who it is into the file (filelock's
`on_acquired` hook lends it the locked descriptor, and filelock opens the file without truncating it), so a
refused or waiting run can say which run it waits for. Processes started by the holder (DVC, the stages,
training ranks) see BIGMODEL_WORKSPACE_LOCK in their environment and do not take the lock again.

DVC keeps its own lock (`.dvc/tmp/lock`) while one of its commands runs; a run waits for it to be free
instead of showing DVC's advice to delete it.

A run that opens records elsewhere (an MLflow run, a Prefect flow run) notes them in `.bigmodel/runs/` with
its pid until it closes them. A process killed outright (SIGKILL, a crash, the machine going down) cannot
close them; the next run, holding the lock, finds its note, sees that the process is gone (`dead_runs`) and
closes them in its stead.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from bigmodel_core.errors import BigmodelError, DataError, WorkspaceBusy
from bigmodel_core.pipeline.interrupts import alive

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
def exclusive(
    root: Path,
    what: str,
    wait: bool = True,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> Iterator[None]:
    """Hold the workspace for `what` (e.g. "bigmodel run"); wait for another holder or raise WorkspaceBusy."""
    if held_by_parent():
        yield
        return
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)

    def note_holder(fd: int) -> None:  # filelock lends the lock's descriptor once it holds the lock
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"what": what, "pid": os.getpid(), "since": time.time()}).encode(), 0)

    lock = FileLock(path, on_acquired=note_holder)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        who = holder(root)
        if not wait:
            raise WorkspaceBusy(
                f"another run holds this workspace: {who}; nothing was changed. Wait for it to end "
                f"(`bigmodel run` waits by default) and run again"
            ) from None
        say(f"waiting for {who} to finish: one run per workspace ({path})")
        lock.acquire(poll_interval=0.2)
    try:
        os.environ[ENV] = str(os.getpid())
        yield
    finally:
        os.environ.pop(ENV, None)
        os.truncate(path, 0)  # still held: the file says nobody
        lock.release()


def runs_dir(root: Path) -> Path:
    return Path(root) / ".bigmodel" / "runs"


def _proc_stat(pid: int) -> list[str] | None:
    """Linux's /proc/PID/stat after the command name: [state, ppid, ..., starttime (index 19), ...]; None where
    there is no such process (or no /proc)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), which tells it from a later process given the same
    pid; None where it cannot be read."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def record_run(root: Path, key: str, **ids: str | None) -> None:
    """Note that this process opened runs (ids: mlflow_run_id, flow_run_id, name) and has not closed them."""
    from bigmodel_core.io import write_json

    pid = os.getpid()
    write_json(
        {"pid": pid, "process_start": _process_start(pid), "host": socket.gethostname(), "since": time.time(), **ids},
        runs_dir(root) / f"{key}.json",
    )


def update_note(root: Path, key: str, **fields) -> None:
    """Change fields of a note, keeping whose it is (e.g. mlflow_closed once its MLflow run was closed)."""
    from bigmodel_core.io import write_json

    path = runs_dir(root) / f"{key}.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    write_json({**info, **fields}, path)


def forget_run(root: Path, key: str) -> None:
    """The runs noted under `key` are closed (or taken over by this process)."""
    (runs_dir(root) / f"{key}.json").unlink(missing_ok=True)


def owner_alive(info: dict) -> bool:
    """Whether the process that noted a run is still running (same pid, same start time). A note from another
    machine (a workspace on a shared disk) counts as alive: its process cannot be looked at from here."""
    if info.get("host") != socket.gethostname():
        return True
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if not alive(pid):
        return False
    stat = _proc_stat(pid)
    if stat is None:  # no /proc here: the pid exists, which is all that can be known
        return True
    if stat[0] == "Z":  # dead, not yet reaped by its parent
        return False
    return info.get("process_start") is None or stat[19] == info["process_start"]


def dead_runs(root: Path) -> dict[str, dict]:
    """The runs noted in this workspace whose process died without closing them, by key. Only the process that
    holds the workspace lock (or one it started) may ask: a live run of this workspace holds the lock, so no
    run found here can still be in progress."""
    if not held_by_parent():
        raise RuntimeError("dead_runs: only the run holding the workspace lock may close the runs of others")
    found = {}
    for path in sorted(runs_dir(root).glob("*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # unreadable (notes are written atomically): nothing to close by it
            continue
        if isinstance(info, dict) and not owner_alive(info):
            found[path.stem] = info
    return found


def dvc_busy(root: Path) -> bool:
    """Whether a DVC command holds the repository lock right now (probed without keeping it)."""
    path = Path(root) / ".dvc" / "tmp" / "lock"
    if not path.exists():
        return False
    try:
        with FileLock(path, blocking=False):  # DVC's lock is a flock too; filelock leaves the file as it is
            return False
    except Timeout:
        return True


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
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=root, env=child_env(), capture_output=True, text=True
    )
    out = proc.stdout.strip()
    if proc.returncode != 0:
        problem = dvc_file_problem(Path(root))
        if problem:
            raise DataError(problem)
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        said = next((line for line in lines if line.startswith("ERROR")), lines[-1] if lines else "no output")
        raise BigmodelError(f"`dvc status` failed in {root}: {said}")
    try:
        return json.loads(out.splitlines()[-1]) if out else {}
    except ValueError:
        raise BigmodelError(f"could not read `dvc status --json` output: {out[-300:]!r}") from None


#: What to do about a pipeline file DVC cannot read, by file.
_DVC_FILE_FIX = {
    "dvc.lock": "restore the committed one with `git checkout dvc.lock`, or delete it to re-run every stage",
    "dvc.yaml": "restore it with `git checkout dvc.yaml`, or write it again with `bigmodel dag --write`",
}


def dvc_file_problem(root: Path) -> str | None:
    """Why DVC cannot read this workspace's dvc.yaml or dvc.lock, in one line naming the file, the line and column,
    DVC's own complaint and the fix; None when both load. DVC's loader is asked (what `dvc status` runs), so the
    answer is its verdict, taken from its exception instead of from its console text."""
    from dvc.dvcfile import load_file
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.utils.serialize import EncodingError, parse_yaml_for_update
    from dvc.utils.strictyaml import YAMLSyntaxError, YAMLValidationError, determine_linecol

    root = Path(root)
    if not (root / "dvc.yaml").exists():
        return None
    try:
        with Repo(str(root)) as repo:
            list(load_file(repo, str(root / "dvc.yaml")).stages.values())  # loads dvc.yaml, then dvc.lock
    except YAMLValidationError as e:
        name, place, what = Path(e.path).name, "", str(e.exc)
        if e.exc.errors:
            error = e.exc.errors[0]
            what = error.error_message + (f" at {' -> '.join(map(str, error.path))}" if error.path else "")
            try:
                line, column, _ = determine_linecol(parse_yaml_for_update(e.text, e.path), error.path)
            except Exception:  # the place is a help, the rule is the message
                line = column = None
            place = f"line {line}" + (f", column {column}" if column else "") + ": " if line else ""
            more = len(e.exc.errors) - 1
            what += f" (and {more} more {'problem' if more == 1 else 'problems'})" if more else ""
    except YAMLSyntaxError as e:
        name = Path(e.relpath).name
        cause = e.exc.__cause__
        mark = getattr(cause, "problem_mark", None)
        place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = f"not valid YAML: {getattr(cause, 'problem', None) or cause or e}"
        start = getattr(cause, "context_mark", None)
        if getattr(cause, "context", None) and start is not None:  # where the construct it could not finish began
            what += f" ({cause.context} that starts at line {start.line + 1}, column {start.column + 1})"
        what += e.hint
    except EncodingError as e:
        name, place, what = Path(e.path).name, "", f"not {e.encoding} text (binary or garbled bytes)"
    except DvcException:
        return None  # another trouble: `dvc status` tells it
    else:
        return None
    fix = _DVC_FILE_FIX.get(name, f"restore {name} from git")
    return f"{name}: {place}{what}; DVC cannot read it, so nothing was run. Fix: {fix}"

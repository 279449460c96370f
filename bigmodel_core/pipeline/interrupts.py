"""Ctrl-C and SIGTERM: stop the work in progress, keep the last good outputs, say so in one line.

`bigmodel run` and `bigmodel stage` turn SIGINT and SIGTERM into `Interrupted` (a KeyboardInterrupt, so
Prefect records the task and flow runs as crashed), stop their child processes (`stop_group`), and exit
with 128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM.

Children (the DVC process of a stage and everything it starts) run in a process group of their own, so a
terminal's Ctrl-C reaches only the command; the command forwards SIGINT to the group, which is DVC's
graceful path (DVC waits for the stage, records nothing in dvc.lock and releases its locks), and
escalates to SIGTERM and SIGKILL when the group does not stop in time. Stage outputs are `persist: true`
and each stage swaps its outputs in atomically, so an interrupted stage leaves the last good ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: seconds the stopped stage gets to exit after SIGINT, then after SIGTERM, before SIGKILL
GRACE_SECONDS = (8.0, 3.0, 2.0)

_doing: str | None = None


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name


def signal_of(exc: BaseException) -> int | None:
    """The signal behind an exception: ours, Prefect's SIGTERM bridge (TerminationSignal) or a plain
    KeyboardInterrupt; None for any other exception."""
    if isinstance(exc, Interrupted):
        return exc.signum
    signum = getattr(exc, "signal", None)
    if type(exc).__name__ == "TerminationSignal" and isinstance(signum, int):
        return signum
    if isinstance(exc, KeyboardInterrupt):
        return int(signal.SIGINT)
    return None


def as_interrupted(exc: BaseException) -> Interrupted | None:
    signum = signal_of(exc)
    return None if signum is None else (exc if isinstance(exc, Interrupted) else Interrupted(signum))


@contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP (the terminal closed) raise `Interrupted` in the main thread."""

    def handler(signum, frame):
        raise Interrupted(signum)

    saved = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, old in saved.items():
            signal.signal(s, old)


def doing(what: str | None) -> None:
    """Name the work in progress ("stage 'train'"; None when done), for the line an interruption prints.
    It stays set while an interruption unwinds, so the handlers on the way out still read it."""
    global _doing
    _doing = what


def current() -> str | None:
    return _doing


def message(exc: Interrupted, command: str) -> str:
    where = current()
    return (
        f"{command} interrupted by {exc.signame}"
        + (f" during {where}" if where else "")
        + ": stopped; the last good outputs and dvc.lock are unchanged, and the next run goes on from there"
    )


def alive(pid: int, group: bool = False) -> bool:
    """Whether the process (or, with `group`, any process of the group) `pid` still exists."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen, first: int = signal.SIGINT) -> None:
    """Stop `proc` and every process of its group (it must lead one: start_new_session=True).

    `first` (SIGINT: the graceful path), then SIGTERM, then SIGKILL, each after GRACE_SECONDS; returns
    once the whole group is gone."""
    pgid = proc.pid
    for sig, grace in zip((first, signal.SIGTERM, signal.SIGKILL), GRACE_SECONDS, strict=True):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reaps the leader, so a finished one no longer counts
            if not alive(pgid, group=True):
                proc.poll()
                return
            time.sleep(0.05)
    proc.poll()


def dies_with_parent():
    """On Linux, a pre-exec hook that has the kernel send SIGTERM to the child when this process dies, even
    by SIGKILL, so a temporary server never outlives its command. The C function is looked up here, before
    the fork, so the hook itself only makes one call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call: go now
            os.kill(os.getpid(), signal.SIGTERM)

    return hook

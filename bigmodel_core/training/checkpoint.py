"""Resumable training checkpoints, written atomically and off the training thread.

A checkpoint holds everything the loop needs to continue as if it had never stopped: weights,
optimizer and scheduler states, RNG states, the position in the epoch's batch plan, the running
loss, the history so far and which epoch was best (whose weights live in their own file, written
once per improvement). Each file is written to a temporary name, fsynced and renamed, so a crash
or SIGKILL at any moment leaves the previous checkpoint whole.

The directory is keyed by a fingerprint of the params, data and code; a checkpoint written under
another fingerprint is stale and is discarded rather than resumed.
"""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE, META = "checkpoint.pt", "checkpoint.json"


def to_cpu(obj: Any) -> Any:
    """A deep copy with every tensor cloned to CPU (a consistent snapshot the writer thread can own)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def atomic_write_text(text: str, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpoints:
    """The checkpoint directory of one training run (fingerprint), with a background writer."""

    def __init__(self, directory: Path, fingerprint: str, every: int = 0) -> None:
        self.dir, self.fingerprint, self.every = Path(directory), fingerprint, every
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        self._best_file: str | None = None

    # ------------------------------------------------------------------ reading
    def load(self) -> dict | None:
        """The last checkpoint of this fingerprint, or None. Stale or unreadable checkpoints are removed."""
        path = self.dir / STATE
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # a truncated file cannot happen with atomic writes, but a disk can fail
            print(f"train: checkpoint {path} is unreadable ({type(e).__name__}); starting from scratch", flush=True)
            self.clear()
            return None
        if state.get("fingerprint") != self.fingerprint:
            print("train: discarding a checkpoint of another run (params, data or code changed)", flush=True)
            self.clear()
            return None
        self._best_file = state.get("best_file")
        if self._best_file:
            state["best_state"] = torch.load(self.dir / self._best_file, map_location="cpu", weights_only=True)
        return state

    # ------------------------------------------------------------------ writing
    def save(self, state: dict, best_state: dict | None = None) -> None:
        """Snapshot now, write in the background. best_state: new best weights (epoch in state['best_epoch'])."""
        self.wait()
        snapshot = to_cpu(state)
        snapshot["fingerprint"] = self.fingerprint
        best_snapshot = to_cpu(best_state) if best_state is not None else None
        if best_snapshot is not None:
            self._best_file = f"best-e{state['best_epoch']}.pt"
        snapshot["best_file"] = self._best_file
        self._writer = threading.Thread(target=self._write, args=(snapshot, best_snapshot), daemon=True)
        self._writer.start()

    def _write(self, snapshot: dict, best: dict | None) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if best is not None:
                atomic_torch_save(best, self.dir / snapshot["best_file"])
            atomic_torch_save(snapshot, self.dir / STATE)
            meta = {k: snapshot[k] for k in ("step", "epoch", "steps_in_epoch", "done", "best_epoch") if k in snapshot}
            atomic_write_text(json.dumps({**meta, "fingerprint": self.fingerprint}) + "\n", self.dir / META)
            # best weights of earlier epochs are no longer referenced by any checkpoint
            for old in self.dir.glob("best-e*.pt"):
                if old.name != snapshot.get("best_file"):
                    old.unlink(missing_ok=True)
        except BaseException as e:  # reported on the training thread by wait()
            self._error = e

    def wait(self) -> None:
        """Block until the pending write is on disk; re-raise its error, if any."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            err, self._error = self._error, None
            raise OSError(f"cannot write checkpoint to {self.dir}: {err}") from err

    def clear(self) -> None:
        self.wait()
        for name in (STATE, META):
            (self.dir / name).unlink(missing_ok=True)
        for old in self.dir.glob("best-e*.pt"):
            old.unlink(missing_ok=True)
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        self._best_file = None

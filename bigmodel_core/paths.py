"""Where each stage reads and writes, relative to the workspace root: the stage outputs' locations come from
bigmodel_core.stages.spec.LOCATIONS, the table dvc.yaml is generated from, so the two cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bigmodel_core.stages.spec import LOCATIONS


@dataclass(frozen=True)
class Paths:
    """paths.raw, paths.model, paths.quality_metrics, ...: one attribute per LOCATIONS entry (stage outputs,
    DVC outs, metrics and plots), plus the workspace's own working folders below."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    def __getattr__(self, name: str) -> Path:
        if name in LOCATIONS:
            return self.root / LOCATIONS[name]
        raise AttributeError(f"Paths has no {name!r}; stage outputs are: {', '.join(LOCATIONS)}")

    # not stage outputs: the train stage's encoded data and resumable checkpoints (removed when it succeeds)
    @property
    def train_work(self) -> Path:
        return self.root / ".bigmodel/train"

    # where a failed gate leaves its full report
    @property
    def failures(self) -> Path:
        return self.root / ".bigmodel/failures"

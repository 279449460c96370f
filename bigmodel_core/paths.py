"""Where each stage reads and writes, relative to the workspace root. dvc.yaml lists the same paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    # stage output directories (DVC outs, persist: true so a failed run keeps the last good output)
    @property
    def raw(self) -> Path: return self.root / "data/raw"
    @property
    def clean(self) -> Path: return self.root / "data/clean"
    @property
    def validated(self) -> Path: return self.root / "data/validated"
    @property
    def augmented(self) -> Path: return self.root / "data/augmented"
    @property
    def split(self) -> Path: return self.root / "data/split"
    @property
    def model(self) -> Path: return self.root / "models/model"
    @property
    def evaluation(self) -> Path: return self.root / "reports/evaluate"
    # metrics and plots (small files, not cached by DVC)
    @property
    def quality_metrics(self) -> Path: return self.root / "metrics/data_quality.json"
    @property
    def quality_html(self) -> Path: return self.root / "reports/data_quality.html"
    @property
    def train_metrics(self) -> Path: return self.root / "metrics/train.json"
    @property
    def eval_metrics(self) -> Path: return self.root / "metrics/eval.json"
    @property
    def training_plot(self) -> Path: return self.root / "plots/training.csv"
    @property
    def training_steps_plot(self) -> Path: return self.root / "plots/training_steps.csv"
    @property
    def confusion_plot(self) -> Path: return self.root / "plots/confusion.csv"
    @property
    def roc_plot(self) -> Path: return self.root / "plots/roc.csv"
    @property
    def pr_plot(self) -> Path: return self.root / "plots/pr.csv"
    @property
    def calibration_plot(self) -> Path: return self.root / "plots/calibration.csv"
    @property
    def deployment(self) -> Path: return self.root / "reports/deploy.json"
    # not stage outputs: the train stage's encoded data and resumable checkpoints (removed when it succeeds)
    @property
    def train_work(self) -> Path: return self.root / ".bigmodel/train"
    # where a failed gate leaves its full report
    @property
    def failures(self) -> Path: return self.root / ".bigmodel/failures"

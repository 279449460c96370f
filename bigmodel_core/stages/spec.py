"""What each stage reads and writes, declared once, next to the stage (its module's SPEC).

dvc.yaml is generated from these declarations (`bigmodel dag --write`; a test fails when the committed file
differs), and bigmodel_core.paths takes the stage outputs' locations from the same table (LOCATIONS), so
the stage code, DVC and the Prefect flow (which reads dvc.yaml) follow one graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: In a workspace of your own (`bigmodel init`), the stages depend on this file, which names the installed
#: bigmodel version, instead of on source files the workspace does not have: a new version re-runs them.
VERSION_FILE = "bigmodel.version"

#: Where each stage output lives, relative to the workspace root (the one place these paths are spelled).
LOCATIONS = {
    "raw": "data/raw",
    "clean": "data/clean",
    "validated": "data/validated",
    "augmented": "data/augmented",
    "split": "data/split",
    "model": "models/model",
    "evaluation": "reports/evaluate",
    "quality_metrics": "metrics/data_quality.json",
    "quality_report": "reports/data_quality.json",
    "quality_html": "reports/data_quality.html",
    "train_metrics": "metrics/train.json",
    "eval_metrics": "metrics/eval.json",
    "training_plot": "plots/training.csv",
    "training_steps_plot": "plots/training_steps.csv",
    "confusion_plot": "plots/confusion.csv",
    "roc_plot": "plots/roc.csv",
    "pr_plot": "plots/pr.csv",
    "calibration_plot": "plots/calibration.csv",
    "deployment": "reports/deploy.json",
}


@dataclass(frozen=True)
class Out:
    """A stage output: a LOCATIONS name, listed under DVC's outs, metrics or plots. Every output is
    `persist: true` (a failed run leaves the last good one); metrics and plots are `cache: false` (git
    keeps them, so `dvc metrics diff` and `dvc plots diff` can read them)."""

    name: str
    kind: str = "outs"  # outs | metrics | plots
    cache: bool = True
    plot: tuple[tuple[str, str], ...] = ()  # DVC plot options, in order (x, y, template, title, ...)
    note: str = ""  # a comment written above it in dvc.yaml

    @property
    def path(self) -> str:
        return LOCATIONS[self.name]


@dataclass(frozen=True)
class StageSpec:
    """code: source files and folders the stage runs besides its own module; inputs: what it reads (LOCATIONS
    names, or paths such as data/sources); params: the params.yaml sections or keys it reads."""

    code: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    outs: tuple[Out, ...] = field(default_factory=tuple)

    def deps(self, stage: str, installed: bool = False) -> list[str]:
        """The DVC deps: the stage's code (in a clone of this repository) or the version file (installed), then
        its inputs."""
        code = [VERSION_FILE] if installed else [f"bigmodel_core/stages/{stage}.py", *self.code]
        return [*code, *(LOCATIONS.get(i, i) for i in self.inputs)]


def metric(name: str) -> Out:
    return Out(name, kind="metrics", cache=False)


def plot(name: str, note: str = "", **options: str) -> Out:
    return Out(name, kind="plots", cache=False, plot=tuple(options.items()), note=note)

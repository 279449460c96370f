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
    "data_profile": "data/profile.json",
    "train_metrics": "metrics/train.json",
    "eval_metrics": "metrics/eval.json",
    "training_plot": "plots/training.csv",
    "training_steps_plot": "plots/training_steps.csv",
    "confusion_plot": "plots/confusion.csv",
    "roc_plot": "plots/roc.csv",
    "pr_plot": "plots/pr.csv",
    "calibration_plot": "plots/calibration.csv",
    "deployment": "reports/deploy.json",
    # not a stage output: the champion reference that `bigmodel promote` and `bigmodel rollback` write
    # (tracking/registry.py), a folder so that it exists before the first of them (its README is in git)
    "champion_ref": "registry",
}
CHAMPION_REF_FILE = "champion.json"


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
    """inputs: what the stage reads (LOCATIONS names, or paths such as data/sources); params: the params keys
    whose values can change its outputs, each as specific as the stage's reading (a section only where it reads
    all of it); bookkeeping: keys it reads that cannot change its outputs (where MLflow files the run, how often
    progress is reported), left out of dvc.yaml so that changing them re-runs nothing;
    code: project source files it runs without importing them (e.g. a file MLflow runs), walked like its
    imports.
    dvc.yaml's deps are derived from these (bigmodel_core.pipeline.dag.stage_deps)."""

    inputs: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    bookkeeping: tuple[str, ...] = ()
    outs: tuple[Out, ...] = field(default_factory=tuple)
    code: tuple[str, ...] = ()


def metric(name: str) -> Out:
    return Out(name, kind="metrics", cache=False)


def plot(name: str, note: str = "", **options: str) -> Out:
    return Out(name, kind="plots", cache=False, plot=tuple(options.items()), note=note)


def param_value(params, key: str):
    """The value of params key `key` (dots between the parts, as params.yaml spells it: validate.rules.too_long);
    a section comes back as a dict, as params.yaml would hold it."""
    node = params
    for part in key.split("."):
        if isinstance(node, dict):  # a mapping section (validate.rules: one entry per rule)
            if part not in node:
                raise KeyError(f"{key}: no such params key ({part!r} is not there)")
            node = node[part]
            continue
        fields = type(node).model_fields
        name = next((n for n, f in fields.items() if (f.alias or n) == part), None)
        if name is None:
            raise KeyError(f"{key}: no such params key ({part!r} is not in {type(node).__name__})")
        node = getattr(node, name)
    return node.model_dump(mode="json", by_alias=True) if hasattr(node, "model_dump") else node

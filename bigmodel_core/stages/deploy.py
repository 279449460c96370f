"""deploy: one MLflow run with everything, register the model, move the aliases the gate allows.

The run is the pipeline's (see tracking/pipeline_run.py): the flow's, or under plain `dvc repro` the one
the train stage opened. The gate's verdict (evaluation/gate.py) decides: `passed` moves the champion alias (if
deploy.promote and the experiment rule allow); `inconclusive` registers the challenger, keeps the champion and
says why, without error; `closed` still registers the challenger, then marks a run that no flow owns FAILED
with the gate's reason and exits 3 (under `dvc exp run` it exits 0, so that DVC keeps the experiment for
`dvc exp show`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from bigmodel_core import modalities
from bigmodel_core.config import Params
from bigmodel_core.data.schemas import SPLITS
from bigmodel_core.errors import GateFailed
from bigmodel_core.evaluation.gate import verdict_of
from bigmodel_core.io import read_json, read_table, sha256_file, write_json
from bigmodel_core.paths import Paths
from bigmodel_core.stages.spec import Out, StageSpec


def _git_commit(root) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "none"
    except (OSError, subprocess.SubprocessError):
        return "none"


# What a model depends on: a difference here from the last commit makes a run an experiment.
WATCHED_CODE = ("dvc.yaml", "bigmodel_core", "flows", "tasks")


def _git(root, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


def in_dvc_experiment() -> bool:
    """True under `dvc exp run` (DVC names the experiment and its baseline in the environment)."""
    return bool(os.environ.get("DVC_EXP_NAME") or os.environ.get("DVC_EXP_BASELINE_REV"))


def params_never_committed(root) -> bool:
    """True in a git work tree whose last commit has no params.yaml (a repository fresh from `bigmodel init`):
    there is no committed state of the pipeline yet for a run to be an experiment against."""
    if not (Path(root) / "params.yaml").exists():
        return False
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0 or inside.stdout.strip() != "true":
        return False
    head = _git(root, "cat-file", "-e", "HEAD:params.yaml")
    return head is not None and head.returncode != 0


def experiment_reason(root) -> str | None:
    """Why this run is an experiment (None: a committed state of the project, a workspace that has never
    committed its params.yaml, or no git to ask).

    Code and dvc.yaml count as changed if git sees them modified or new (ignored files aside);
    params.yaml only if its values differ from the committed file's (`-S` rewrites the file's layout).
    """
    import yaml

    if in_dvc_experiment():
        return f"dvc exp run ({os.environ.get('DVC_EXP_NAME') or 'unnamed'})"
    out = _git(root, "status", "--porcelain", "--", *WATCHED_CODE)
    if out is None or out.returncode != 0:  # no git, or not a work tree
        return None
    if params_never_committed(root):
        return None
    changed = sorted({line[3:].strip().strip('"') for line in out.stdout.splitlines() if line.strip()})
    params = Path(root) / "params.yaml"
    head = _git(root, "show", "HEAD:params.yaml")
    if params.exists():
        committed = yaml.safe_load(head.stdout) if head is not None and head.returncode == 0 else None
        if committed != yaml.safe_load(params.read_text()):
            changed.insert(0, "params.yaml")
    if changed:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        return f"uncommitted changes to {', '.join(changed[:5])}{more}"
    return None


SPEC = StageSpec(
    code=("bigmodel_core/tracking/pyfunc_entry.py",),  # MLflow runs it as the served model's code
    inputs=("model", "evaluation", "eval_metrics", "quality_report"),
    params=("deploy", "tracking", "data.modality"),
    outs=(
        Out(
            "deployment",
            cache=False,
            note="which registry version this run made and where the aliases point: facts about this workspace's "
            "own mlflow.db, so neither DVC's cache nor git keeps it (.gitignore: /reports/)",
        ),
    ),
)


def run(params: Params, paths: Paths) -> dict:
    from bigmodel_core.tracking.mlflow_store import log_and_register
    from bigmodel_core.tracking.pipeline_run import close_run, default_run_name, flow_run_id
    from bigmodel_core.tracking.registry import champion_seen

    eval_metrics = read_json(paths.eval_metrics)
    decision = read_json(paths.evaluation / "decision.json")
    per_class = read_json(paths.evaluation / "per_class.json")["per_class"]
    quality = read_json(paths.quality_report)
    train_metrics = read_json(paths.train_metrics)
    history = train_metrics.get("history", [])
    modality = modalities.get(params.data.modality)
    test = read_table(paths.split / "test.parquet", modality.schemas.SPLIT)
    params_text = (paths.root / "params.yaml").read_bytes() if (paths.root / "params.yaml").exists() else b""
    tags = {
        "bigmodel.git_commit": _git_commit(paths.root),
        "bigmodel.params_sha256": hashlib.sha256(params_text).hexdigest(),
        "bigmodel.flow_run_id": os.environ.get("BIGMODEL_FLOW_RUN_ID", "none"),
    }
    for s in SPLITS:
        tags[f"bigmodel.data.{s}_sha256"] = sha256_file(paths.split / f"{s}.parquet")
    artifacts = [
        paths.root / "params.yaml",
        paths.validated / "quarantine.parquet",
        paths.split / "report.json",
        paths.eval_metrics,
        paths.train_metrics,
        *(paths.evaluation / f"{name}.json" for name in ("per_class", "slices", "baseline", "runtime", "calibration")),
        *(
            paths.evaluation / f"{name}.png"
            for name in ("confusion_matrix", "training_curves", "calibration", "roc_curve", "pr_curve")
        ),  # ROC and PR: binary tasks only
        paths.training_steps_plot,
    ]
    experiment = experiment_reason(paths.root)
    # No champion to keep (the registry's first model, or its champion was taken away): a run from uncommitted
    # changes may become it. A `dvc exp run` may not: in a sweep, whichever finished first would be crowned.
    vacant = champion_seen(decision) is None and not in_dvc_experiment()
    context = None
    verdict = verdict_of(decision)
    if verdict == "closed":
        why_not = "gate closed: " + "; ".join(decision["reasons"])
    elif verdict == "inconclusive":
        why_not = decision.get("summary") or "champion kept: " + "; ".join(decision["reasons"])
    elif params.deploy.promote == "never":
        why_not = "deploy.promote is never: promote by hand with `bigmodel promote VERSION`"
    elif experiment and not params.deploy.promote_experiments and not vacant:
        # once committed, the same state has nothing left to run (`bigmodel run`: nothing to do), so say how it is
        # promoted then
        why_not = (
            f"an experiment ({experiment}) does not move the champion; to make it the champion, commit the "
            "change and `bigmodel promote VERSION --reason ...`, or set deploy.promote_experiments: true"
        )
    else:
        why_not = None
        if experiment and not params.deploy.promote_experiments:
            context = (
                f"an experiment ({experiment}) never replaces a {params.deploy.champion_alias}, but there was "
                "none to keep"
            )
        elif params_never_committed(paths.root):
            context = "params.yaml has no commit yet, so no run here is an experiment: the gate alone decides"
    result = log_and_register(
        params,
        paths.root,
        bundle_dir=paths.model,
        history=history,
        eval_metrics=eval_metrics,
        per_class=per_class,
        decision=decision,
        quality=quality,
        artifacts=artifacts,
        tags=tags,
        example_texts=modality.values(test.head(3)),
        train_run_id=train_metrics.get("mlflow_run_id"),
        promote=why_not is None,
        experiment=experiment,
        why_not=why_not,
        context=context,
        train_summary={k: v for k, v in train_metrics.items() if k != "history"},
        split_dir=paths.split,
        quarantine=paths.validated / "quarantine.parquet",
        run_name=default_run_name(),
    )
    result["reasons"] = decision["reasons"]
    result["test_accuracy"] = eval_metrics["accuracy"]
    result["test_macro_f1"] = eval_metrics["macro_f1"]
    result["verdict"] = verdict
    write_json(result, paths.deployment)
    if verdict == "inconclusive":
        print(f"deploy: not promoted, {why_not}", flush=True)
    if verdict == "closed":
        message = (
            f"model gate closed: {'; '.join(decision['reasons'])}. Registered {result['model_name']} "
            f"v{result['version']} as {params.deploy.challenger_alias} for inspection; "
            + (
                f"{params.deploy.champion_alias} stays v{result['champion']}"
                if result.get("champion")
                else f"no {params.deploy.champion_alias} was set"
            )
        )
        # under the flow, the flow closes its run; a run whose own verdict was "passed" (an earlier deploy of this
        # same bundle) is not this stop's
        if flow_run_id() is None and result.get("run_id") and result.get("run_gate") == "failed":
            close_run(params, paths.root, result["run_id"], "FAILED", reason=message, stopped_by="model gate")
        if os.environ.get("DVC_EXP_NAME"):
            # an experiment never moves the champion anyway; failing here would make DVC drop it, and a sweep's
            # `dvc exp show` would lose exactly the points that lost
            print(f"deploy: {message} (experiment {os.environ['DVC_EXP_NAME']}: recorded, not an error)", flush=True)
            return result
        raise GateFailed(message)
    return result

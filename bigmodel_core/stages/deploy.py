"""deploy: one MLflow run with everything, register the model, move the aliases the gate allows."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

from bigmodel_core.config import Params
from bigmodel_core.data import schemas
from bigmodel_core.io import read_json, read_table, write_json
from bigmodel_core.paths import Paths


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_commit(root) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "none"
    except (OSError, subprocess.SubprocessError):
        return "none"


def run(params: Params, paths: Paths) -> dict:
    from bigmodel_core.tracking.mlflow_store import log_and_register

    eval_metrics = read_json(paths.eval_metrics)
    decision = read_json(paths.evaluation / "decision.json")
    quality = read_json(paths.quality_metrics)
    train_metrics = read_json(paths.train_metrics)
    history = train_metrics.get("history", [])
    test = read_table(paths.split / "test.parquet", schemas.SPLIT)
    params_text = (paths.root / "params.yaml").read_bytes() if (paths.root / "params.yaml").exists() else b""
    tags = {
        "bigmodel.run_name": f"retrain-{time.strftime('%Y%m%d-%H%M%S')}",
        "bigmodel.git_commit": _git_commit(paths.root),
        "bigmodel.params_sha256": hashlib.sha256(params_text).hexdigest(),
        "bigmodel.flow_run_id": os.environ.get("BIGMODEL_FLOW_RUN_ID", "none"),
    }
    for s in schemas.SPLITS:
        tags[f"bigmodel.data.{s}_sha256"] = _sha256(paths.split / f"{s}.parquet")
    artifacts = [
        paths.root / "params.yaml",
        paths.validated / "quarantine.parquet",
        paths.split / "report.json",
        paths.eval_metrics,
        paths.train_metrics,
        paths.evaluation / "confusion_matrix.png",
        paths.evaluation / "training_curves.png",
        paths.training_steps_plot,
    ]
    result = log_and_register(
        params, paths.root, bundle_dir=paths.model, history=history, eval_metrics=eval_metrics, decision=decision,
        quality=quality, artifacts=artifacts, tags=tags, example_texts=test["text"].head(3).tolist(),
        train_run_id=train_metrics.get("mlflow_run_id"),
    )
    result["reasons"] = decision["reasons"]
    result["test_accuracy"] = eval_metrics["accuracy"]
    result["test_macro_f1"] = eval_metrics["macro_f1"]
    write_json(result, paths.deployment)
    return result

"""A trained model into MLflow: its run's metrics and artifacts, the registered version, its aliases (champion,
challenger) and description; and the served model loaded back (load_pyfunc). The store itself: store.py."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any

from bigmodel_core.config import Params
from bigmodel_core.evaluation.runtime import cost_line
from bigmodel_core.io import sha256_file
from bigmodel_core.tracking.aliases import set_aliases
from bigmodel_core.tracking.store import _experiment_id, _setup, home_workspace


def _requirements(kind: str) -> list[str]:
    from bigmodel_core.models.registry import KINDS

    reqs = []
    extra = KINDS[kind].requirements if kind in KINDS else ()  # a legacy bundle's kind needs the common ones
    for pkg in ("mlflow", "torch", "tokenizers", "pandas", "numpy", "pydantic", "pyyaml", *extra):
        try:
            v = importlib.metadata.version(pkg).split("+")[0]
            reqs.append(f"{pkg}=={v}")
        except importlib.metadata.PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def _existing_run(client, run_id: str | None):
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except Exception:  # made in another tracking store (a copied workspace, a changed MLFLOW_TRACKING_URI)
        return None


def bundle_sha256(bundle_dir: Path) -> str:
    """One hash over the bundle's files (names and bytes): the identity of a trained model."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(bundle_dir).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(bundle_dir)).encode() + b"\0")
        sha256_file(f, into=h)
    return h.hexdigest()


def _version_with_bundle(client, name: str, digest: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{name}' and tags.`bigmodel.bundle_sha256` = '{digest}'")
    except MlflowException:
        return None
    return str(min(int(v.version) for v in found)) if found else None


def _gate_tag(decision: dict) -> str:
    """bigmodel.gate on runs and versions: passed, inconclusive (the champion is kept) or failed (gate closed)."""
    from bigmodel_core.evaluation.gate import verdict_of

    return {"passed": "passed", "inconclusive": "inconclusive"}.get(verdict_of(decision), "failed")


def _description(eval_metrics: dict, decision: dict, quality: dict, experiment: str | None) -> str:
    gate = {"passed": "passed", "inconclusive": "inconclusive, champion kept: "}.get(_gate_tag(decision), "closed: ")
    gate += "" if decision["promote"] else "; ".join(decision["reasons"])
    champ = decision.get("champion")
    cost = cost_line(eval_metrics)
    lines = [
        f"test accuracy {eval_metrics['accuracy']:.4f}, macro-F1 {eval_metrics['macro_f1']:.4f} "
        f"on {eval_metrics['n_test']:,} rows",
        *([cost] if cost else []),
        f"gate {gate}",
        f"compared with champion v{champ['version']} (macro-F1 {champ['macro_f1']:.4f})"
        if champ
        else "no champion to compare with",
        f"data: {quality['rows_in']:,} rows in, {quality['rows_out']:,} kept, "
        f"{quality['rows_quarantined']:,} quarantined",
    ]
    if experiment:
        lines.append(f"experiment: {experiment}")
    return "\n".join(lines)


# metrics/eval.json keys that are not test figures to chart in MLflow
_NOT_LOGGED = {"promote", "champion_version", "positive_class"}


def log_and_register(
    params: Params,
    root: Path,
    *,
    bundle_dir: Path,
    history: list[dict],
    eval_metrics: dict,
    decision: dict,
    quality: dict,
    artifacts: list[Path],
    tags: dict[str, str],
    example_texts: list[str],
    train_run_id: str | None = None,
    promote: bool = False,
    experiment: str | None = None,
    why_not: str | None = None,
    context: str | None = None,
    per_class: dict | None = None,
    train_summary: dict | None = None,
    split_dir: Path | None = None,
    quarantine: Path | None = None,
    run_name: str | None = None,
) -> dict:
    """Finish the pipeline's run: test figures, reports, plots, datasets and the pyfunc model; register it.

    The run: the flow's (BIGMODEL_MLFLOW_RUN_ID); else the run the train stage opened (`train_run_id`) unless an
    earlier deploy finished it already (the train stage was up to date: this execution gets a run of its own,
    named `run_name`). A run the model was not trained in gets the training curves and best-epoch summary from
    `history` and `train_summary` (metrics/train.json) and the tag bigmodel.trained_in_run.

    eval_metrics: metrics/eval.json (scalars; each number is logged as test_<key>); per_class: the
    per-class table of reports/evaluate/per_class.json (logged as test_f1_<label>); split_dir: the split
    parquet files, logged as the run's datasets; quarantine: the quarantined rows shown in the data-quality page.

    The same bundle is registered once: a deploy retried after a crash finds its version by the bundle's
    hash (under the flow, the flow's run still gets this execution's evaluation and the tag
    bigmodel.model_version). The result's run_gate is the gate verdict recorded on its run. `promote` (gate
    passed and policy allows) moves the champion by compare-and-set against the version the gate compared
    with; every decision goes into the ledger. `context`: why the policy let this run promote (an experiment
    in a registry without champion, a workspace that never committed its params), for the ledger and the note.
    """
    mlflow = _setup(params, root)
    import pandas as pd
    from mlflow.models import infer_signature

    import bigmodel_core
    from bigmodel_core import modalities
    from bigmodel_core.models.bundle import Predictor, read_meta
    from bigmodel_core.tracking import pipeline_run
    from bigmodel_core.tracking.pyfunc import output_frame

    exp_id = _experiment_id(mlflow, params, root)
    client = mlflow.MlflowClient()
    name = params.deploy.model_name
    digest = bundle_sha256(bundle_dir)
    existing = _version_with_bundle(client, name, digest)
    evaluation: dict[str, Any] = dict(
        train_run_id=train_run_id,
        history=history,
        train_summary=train_summary,
        tags=tags,
        eval_metrics=eval_metrics,
        per_class=per_class,
        quality=quality,
        quarantine=quarantine,
        split_dir=split_dir,
        decision=decision,
        experiment=experiment,
        artifacts=artifacts,
    )
    if existing is not None:
        print(
            f"deploy: this model bundle is already registered as {name} v{existing} (byte for byte: a retried "
            "deploy, or a re-run that changed nothing): not registering it again",
            flush=True,
        )
        run_id = client.get_model_version(name, existing).run_id
        flow_run = pipeline_run.flow_run_id()
        if flow_run and flow_run != run_id and _existing_run(client, flow_run) is not None:
            # the flow's run still records this execution's evaluation, and which version holds the model
            with mlflow.start_run(run_id=flow_run):
                _log_evaluation(mlflow, client, flow_run, **evaluation)
                pipeline_run.set_tags(
                    client,
                    flow_run,
                    {"bigmodel.model_version": f"{name} v{existing}", "bigmodel.model_run": run_id or "none"},
                )
            run_id = flow_run
        result = set_aliases(
            params,
            root,
            client,
            name,
            existing,
            exp_id,
            run_id,
            decision,
            eval_metrics,
            promote,
            experiment,
            why_not,
            retried=True,
            context=context,
        )
        result["run_gate"] = _run_gate(client, run_id)
        result["already_registered"] = True
        return result
    run_id = _pipeline_run(mlflow, client, params, root, train_run_id, tags, run_name)
    with mlflow.start_run(run_id=run_id):
        _log_evaluation(mlflow, client, run_id, **evaluation)
        predictor = Predictor(bundle_dir)
        column = modalities.get(predictor.modality).column  # what a request names (the signature's input column)
        example = pd.DataFrame({column: example_texts[:3]})
        signature = infer_signature(example, output_frame(predictor.labels, predictor.predict_proba(example_texts[:3])))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts={"bundle": str(bundle_dir)},
            code_paths=[str(Path(bigmodel_core.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(read_meta(bundle_dir).get("kind", "transformer")),
        )
        champ = decision.get("champion")
        version_tags = {
            **tags,
            "bigmodel.run_name": client.get_run(run_id).data.tags.get("bigmodel.run_name", ""),
            "bigmodel.gate": _gate_tag(decision),
            "bigmodel.bundle_sha256": digest,
            "bigmodel.compared_with": f"v{champ['version']}" if champ else "none",
            "bigmodel.experiment": experiment or "no",
        }
        # the version and its tags (the bundle hash among them) are created in one call: a deploy that dies
        # right after registering still leaves a version that a retry finds
        version = str(mlflow.register_model(info.model_uri, name, tags=version_tags).version)
        client.update_model_version(
            name, version, description=_description(eval_metrics, decision, quality, experiment)
        )
        _describe_model(client, params, root, name, predictor.labels, read_meta(bundle_dir).get("kind", "transformer"))
        client.set_tag(run_id, "bigmodel.model_version", f"{name} v{version}")
    result = set_aliases(
        params,
        root,
        client,
        name,
        version,
        exp_id,
        run_id,
        decision,
        eval_metrics,
        promote,
        experiment,
        why_not,
        context=context,
    )
    result["run_gate"] = _run_gate(client, run_id)
    return result


def model_description(params: Params, root: Path, labels: list[str], kind: str) -> str:
    """The registered model's description: what it classifies, into which labels, trained where and from what."""
    import socket

    sources = ", ".join(f"{s.name} ({s.path})" for s in params.data.sources)
    return (
        f"Text classifier: assigns one of {len(labels)} labels ({', '.join(labels)}) to a text. Trained by "
        f"bigmodel's retraining pipeline (model kind `{kind}`) in the workspace {Path(root).resolve()} on "
        f"{socket.gethostname()}, from the data sources {sources}. Each version's description holds its test "
        f"figures and its gate verdict; the alias `{params.deploy.champion_alias}` marks the version to serve "
        f"(`bigmodel serve`)."
    )


def _describe_model(client, params: Params, root: Path, name: str, labels: list[str], kind: str) -> None:
    text = model_description(params, home_workspace(root), labels, kind)
    if (client.get_registered_model(name).description or "") != text:
        client.update_registered_model(name, description=text)


def _run_gate(client, run_id: str | None) -> str | None:
    run = _existing_run(client, run_id)
    return run.data.tags.get("bigmodel.gate") if run is not None else None


def _log_evaluation(
    mlflow,
    client,
    run_id: str,
    *,
    train_run_id: str | None,
    history: list[dict],
    train_summary: dict | None,
    tags: dict[str, str],
    eval_metrics: dict,
    per_class: dict | None,
    quality: dict,
    quarantine: Path | None,
    split_dir: Path | None,
    decision: dict,
    experiment: str | None,
    artifacts: list[Path],
) -> None:
    """Everything deploy records in the (active) run but the model: training curves when the model was trained in
    another run, test figures, data quality, datasets, reports and plots, the gate's verdict."""
    from bigmodel_core.tracking import pipeline_run, run_data

    mlflow.set_tags({k: v for k, v in tags.items() if k != "bigmodel.run_name"})
    if run_id != train_run_id:  # the train stage logged these live into another run (or none)
        if train_run_id:
            mlflow.set_tag("bigmodel.trained_in_run", train_run_id)
        for row in history:
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        if train_summary and train_summary.get("best_epoch") is not None:
            figures, sentence = pipeline_run.summary_metrics(train_summary)
            mlflow.log_metrics(figures, step=int(train_summary["best_epoch"]))
            mlflow.set_tag("bigmodel.summary", sentence)
    test = {
        f"test_{k}": float(v)
        for k, v in eval_metrics.items()
        if k not in _NOT_LOGGED and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    test.update({f"test_f1_{lab}": m["f1"] for lab, m in (per_class or {}).items()})
    test.update(
        {
            "data_rows_in": quality["rows_in"],
            "data_rows_out": quality["rows_out"],
            "data_rows_quarantined": quality["rows_quarantined"],
        }
    )
    mlflow.log_metrics(test)
    run_data.attach_data_quality(client, run_id, quality, _read_quarantine(quarantine))
    if split_dir is not None:
        run_data.log_split_datasets(client, run_id, split_dir)
    mlflow.log_dict(decision, "reports/decision.json")
    for path in artifacts:
        if path.exists():
            mlflow.log_artifact(str(path), artifact_path="reports" if path.suffix != ".png" else "plots")
    pipeline_run.set_tags(
        client,
        run_id,
        {
            "bigmodel.gate": _gate_tag(decision),
            "bigmodel.outcome": _description(eval_metrics, decision, quality, experiment),
        },
    )


def _pipeline_run(
    mlflow, client, params: Params, root: Path, train_run_id: str | None, tags: dict[str, str], run_name: str | None
) -> str:
    """The run deploy logs into: the flow's, the train stage's (when no deploy has finished it yet), or a new one."""
    from bigmodel_core.tracking import pipeline_run

    flow_run = pipeline_run.flow_run_id()
    if flow_run:
        if _existing_run(client, flow_run) is not None:
            return flow_run
        print(
            f"deploy: the flow's MLflow run {flow_run} is not in this tracking store; opening a run of its own",
            flush=True,
        )
    else:
        train_run = _existing_run(client, train_run_id)
        if train_run is not None and "bigmodel.gate" not in train_run.data.tags:
            pipeline_run.clear_stop(client, train_run.info.run_id)
            return train_run.info.run_id
    new_tags = {k: v for k, v in tags.items() if k != "bigmodel.run_name"}
    return pipeline_run.create_run(
        mlflow,
        client,
        params,
        root,
        run_name or tags.get("bigmodel.run_name") or pipeline_run.default_run_name(),
        new_tags,
    )


def _read_quarantine(path: Path | None):
    if path is None or not Path(path).exists():
        return None
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception:  # the page is still worth having without the sample rows
        return None


def load_pyfunc(params: Params, root: Path, model_uri: str | None = None):
    """Load a registered model as pyfunc (default: the champion)."""
    mlflow = _setup(params, root)
    from mlflow.exceptions import MlflowException

    from bigmodel_core.errors import BigmodelError

    uri = model_uri or f"models:/{params.deploy.model_name}@{params.deploy.champion_alias}"
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as e:
        raise BigmodelError(f"{uri}: cannot load model: {e.message}") from None

"""The retraining flow: every stage of dvc.yaml, in dependency order, each run through DVC.

    bigmodel run                      # what `make run` calls
    bigmodel schedule --cron ...      # the same flow served on a schedule
    python -m bigmodel_flows.retrain  # the same flow without the CLI's summary (this folder, as installed)

One run per workspace (a second one waits). When nothing changed since dvc.lock the flow says so and
ends after one `dvc status`. Otherwise it opens one MLflow run for the whole execution, runs the stages,
and ends with a run card (a Prefect markdown artifact, also attached to the MLflow run), the MLflow run's
final status, and notifications (params `notify`).
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import suppress
from pathlib import Path
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from bigmodel_core.config import Params, load_params
from bigmodel_core.errors import BigmodelError, GateFailed
from bigmodel_core.pipeline.dag import load_dag
from bigmodel_core.pipeline.interrupts import as_interrupted, doing
from bigmodel_core.pipeline.workspace import exclusive, forget_run, record_run
from bigmodel_core.reporting.run_report import flow_run_link, notify_result, print_summary, publish_card
from bigmodel_tasks.dvc_stage import StageFailed, check_stale, run_stage
from bigmodel_tasks.release import record_release

__all__ = ["StageFailed", "print_summary", "retrain", "run_name"]


def run_name() -> str:
    """retrain-<first 8 hex of the params (file and overrides)>-<local time>: what a run does and when."""
    parameters = flow_run.parameters or {}
    root = Path(parameters.get("root") or ".")
    h = hashlib.sha256()
    with suppress(OSError):
        h.update((root / "params.yaml").read_bytes())
    h.update(json.dumps(parameters.get("set_params") or []).encode())
    return f"retrain-{h.hexdigest()[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"


def _tag_run(params: Params) -> None:
    """Tag the flow run with the model it trains (a scheduled run also carries its deployment's tags)."""
    run_id = flow_run.get_id()
    if not run_id:
        return
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            tags = set(client.read_flow_run(UUID(run_id)).tags or [])
            client.update_flow_run(UUID(run_id), tags=sorted(tags | {"bigmodel", f"model:{params.deploy.model_name}"}))
    except Exception as e:  # tags are a convenience: never fail a run for them
        get_run_logger().warning("could not tag the flow run: %s", e)


def _say(message: str) -> None:
    print(message, flush=True)
    get_run_logger().info(message)


@flow(name="retrain", flow_run_name=run_name, log_prints=False)
def retrain(root: str = ".", force: bool = False, set_params: list[str] | None = None, wait: bool = True) -> dict:
    """Retrain: clean, validate, augment, split, train, evaluate, gate and deploy (only what is stale)."""
    rootp = Path(root).resolve()
    started = time.perf_counter()
    name = flow_run.name or run_name()
    with exclusive(rootp, f"flow run {name}", wait=wait, say=_say):
        # every override is checked before the file changes
        pending = load_params(rootp / "params.yaml", set_params) if set_params else None
        from bigmodel_core.tracking.store import check_registry

        # before anything changes: a scheduled run too stops on a deleted mlflow.db, not at evaluate after training
        check_registry(pending or load_params(rootp / "params.yaml"), rootp)
        if (pending or load_params(rootp / "params.yaml")).deploy.git_commit:
            from bigmodel_core.release.record import preflight

            preflight(rootp)  # a git repository with its inputs committed, before anything runs or changes
        if set_params:
            from bigmodel_core.pipeline.params_file import persist_overrides

            for line in persist_overrides(rootp / "params.yaml", set_params, "params.yaml"):
                _say(f"params: {line}")
        params = load_params(rootp / "params.yaml")
        _tag_run(params)
        stages = load_dag(rootp / "dvc.yaml")
        stale = check_stale(str(rootp))
        if not stale and not force:
            _take_over(params, rootp, name, None, note=False)
            seconds = round(time.perf_counter() - started, 2)
            _say(f"nothing to do: every stage is up to date (raw data, params and code unchanged) - {seconds:.1f}s")
            result = {
                "name": name,
                "noop": True,
                "seconds": seconds,
                "status": "up to date",
                "stages": [{"stage": s.name, "ran": False, "seconds": 0.0} for s in stages],
            }
            publish_card(result, rootp, params, None)
            return result
        return _execute(rootp, params, stages, stale, force, name, started)


def _execute(root: Path, params: Params, stages, stale: dict, force: bool, name: str, started: float) -> dict:
    from bigmodel_core.tracking.pipeline_run import close_run, open_run

    flow_url = flow_run_link()
    mlflow_run = open_run(
        params,
        root,
        name,
        {"bigmodel.flow_run_id": str(flow_run.get_id() or "none"), "bigmodel.flow_run_url": flow_url},
    )
    note = _take_over(params, root, name, mlflow_run)
    env = {"BIGMODEL_FLOW_RUN_NAME": name, "BIGMODEL_FLOW_RUN_URL": flow_url}
    if mlflow_run:
        env["BIGMODEL_MLFLOW_RUN_ID"] = mlflow_run
    stage_task = run_stage.with_options(
        retries=params.flow.retries, retry_delay_seconds=params.flow.retry_delay_seconds
    )
    # stages before the first stale one are up to date by DVC's own verdict: no need to ask DVC again
    first = 0 if force else next((i for i, s in enumerate(stages) if s.name in stale), 0)
    results = [{"stage": s.name, "ran": False, "seconds": 0.0} for s in stages[:first]]
    result = {"name": name, "noop": False, "stages": results, "mlflow_run_id": mlflow_run}
    status, reason, running = "FINISHED", None, None
    error: BaseException | None = None
    try:
        for i, stage in enumerate(stages[first:], start=first + 1):
            print(f"[{i}/{len(stages)}] {stage.name} ...", flush=True)
            running = stage.name
            doing(f"stage {stage.name!r}")
            res = stage_task(stage.name, str(root), force, env)
            print(
                f"[{i}/{len(stages)}] {stage.name}: {'ran' if res['ran'] else 'up to date, skipped'} "
                f"({res['seconds']:.1f}s)",
                flush=True,
            )
            results.append(res)
        doing(None)
        if params.deploy.git_commit and any(r["stage"] == "deploy" and r["ran"] for r in results):
            running = "release"
            doing("the release (deploy.git_commit)")
            result["release"] = record_release(str(root))
            doing(None)
    except StageFailed as e:
        status, reason, error = "FAILED", e.message, e
        result["failed"] = {"stage": e.stage, "exit_code": e.exit_code, "message": e.message}
    except BaseException as e:
        stopped = as_interrupted(e)
        if stopped is not None:  # Ctrl-C or SIGTERM: record it (the MLflow run is KILLED), then go on stopping
            where = f"stage {running!r}" if running else "the flow"
            status, reason, error = "KILLED", f"interrupted by {stopped.signame} during {where}", e
            result["failed"] = {"stage": running or "flow", "exit_code": stopped.exit_code, "message": reason}
        elif running == "release" and isinstance(e, BigmodelError):
            # the version is registered; what failed is its commit, tag or push (the message says which)
            said = str(e) if str(e).startswith("deploy.") else f"deploy.git_commit: {e}"
            reason = f"{said} (the version is registered: once the cause is fixed, `bigmodel release` records it)"
            status, error = "FAILED", type(e)(reason)
            result["failed"] = {"stage": "release", "exit_code": e.exit_code, "message": reason}
        else:
            status, reason, error = "FAILED", f"{type(e).__name__}: {e}", e
            result["failed"] = {"stage": "flow", "exit_code": 1, "message": reason}
    result["seconds"] = round(time.perf_counter() - started, 2)
    gate = error is not None and getattr(error, "exit_code", None) == GateFailed.exit_code
    result["status"] = {"FINISHED": "completed", "KILLED": "interrupted"}.get(
        status, "gate closed" if gate else "failed"
    )
    card = publish_card(result, root, params, mlflow_run)
    if mlflow_run:
        close_run(params, root, mlflow_run, status, reason, card)
    if note:
        forget_run(root, note)
    notify_result(result, root, params, gate)
    if error is not None:
        raise error
    return result


def _take_over(params: Params, root: Path, name: str, mlflow_run: str | None, note: bool = True) -> str | None:
    """Note this run's MLflow and flow runs in the workspace, so the next run closes them should this process
    die (returns the note's key), then close what earlier runs left open when their process died."""
    from bigmodel_core.pipeline.orchestration import crash_flow_runs
    from bigmodel_core.tracking.run_recovery import take_over_dead_runs

    flow_id = str(flow_run.get_id() or "") or None
    key = (mlflow_run or (f"flow-{flow_id}" if flow_id else None)) if note else None
    if key:
        try:
            record_run(root, key, mlflow_run_id=mlflow_run, flow_run_id=flow_id, name=name)
        except OSError as e:  # bookkeeping: the run goes on (its stages say so if the workspace is not writable)
            get_run_logger().warning("could not note this run in .bigmodel/runs: %s", e)
            key = None
    by = f"run {name}" + (f" (MLflow run {mlflow_run})" if mlflow_run else "")
    take_over_dead_runs(params, root, mlflow_run, by, crash_flow_runs)
    return key


if __name__ == "__main__":
    print(json.dumps(retrain(), indent=2))

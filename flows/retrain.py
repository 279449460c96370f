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
from bigmodel_core.dag import load_dag
from bigmodel_core.errors import BigmodelError, GateFailed
from bigmodel_core.interrupts import as_interrupted, doing
from bigmodel_core.workspace import exclusive, forget_run, record_run
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
        from bigmodel_core.tracking.mlflow_store import check_registry

        # before anything changes: a scheduled run too stops on a deleted mlflow.db, not at evaluate after training
        check_registry(pending or load_params(rootp / "params.yaml"), rootp)
        if (pending or load_params(rootp / "params.yaml")).deploy.git_commit:
            from bigmodel_core.release import preflight

            preflight(rootp)  # a git repository with its inputs committed, before anything runs or changes
        if set_params:
            from bigmodel_core.params_file import persist_overrides

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
            _card(result, rootp, params, None)
            return result
        return _execute(rootp, params, stages, stale, force, name, started)


def _execute(root: Path, params: Params, stages, stale: dict, force: bool, name: str, started: float) -> dict:
    from bigmodel_core.tracking.pipeline_run import close_run, open_run

    flow_url = _flow_run_link()
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
    card = _card(result, root, params, mlflow_run)
    if mlflow_run:
        close_run(params, root, mlflow_run, status, reason, card)
    if note:
        forget_run(root, note)
    _notify(result, root, params, gate)
    if error is not None:
        raise error
    return result


def _take_over(params: Params, root: Path, name: str, mlflow_run: str | None, note: bool = True) -> str | None:
    """Note this run's MLflow and flow runs in the workspace, so the next run closes them should this process
    die (returns the note's key), then close what earlier runs left open when their process died."""
    from bigmodel_core.orchestration import crash_flow_runs
    from bigmodel_core.tracking.pipeline_run import take_over_dead_runs

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


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _flow_run_link() -> str:
    """This flow run's page in the Prefect UI that will show it later (PREFECT_UI_URL: see orchestration.py)."""
    from prefect.utilities.urls import url_for

    run_id = flow_run.get_id()
    return (url_for("flow-run", obj_id=run_id) or "") if run_id else ""


def _mlflow_link(params: Params, root: Path, run_id: str | None) -> str | None:
    """The MLflow run's page in the UI that shows this workspace's runs (bigmodel ui, or the tracking server's)."""
    if not run_id:
        return None
    from bigmodel_core.ui import mlflow_run_link, mlflow_ui_url

    base = mlflow_ui_url(params, root)
    try:
        from bigmodel_core.tracking.mlflow_store import _setup

        exp = _setup(params, root).MlflowClient().get_run(run_id).info.experiment_id
    except Exception:
        exp = None
    return mlflow_run_link(base, exp, run_id)


def card_markdown(result: dict, root: Path, params: Params, mlflow_run: str | None) -> str:
    """The run card: what ran, the data, the model against the champion, the verdict and where to look."""
    ran = {s["stage"] for s in result["stages"] if s["ran"]}
    lines = [
        f"# {result['name']}: {result['status']}",
        "",
        f"Workspace `{root}`, {result['seconds']:.1f}s in all.",
        "",
        "| stage | result | seconds |",
        "| --- | --- | ---: |",
    ]
    for s in result["stages"]:
        lines.append(f"| {s['stage']} | {'ran' if s['ran'] else 'up to date'} | {s['seconds']:.1f} |")
    failed = result.get("failed")
    if failed:
        lines.append(f"| {failed['stage']} | **stopped (exit {failed['exit_code']})** | |")
        lines += ["", f"**Stopped:** {failed['message']}"]
    quality = _read(root / "reports/data_quality.json")
    if quality:
        lines += [
            "",
            "## Data",
            "",
            f"{quality.get('rows_in', '?'):,} rows in, {quality.get('rows_out', '?'):,} passed, "
            f"{quality.get('rows_quarantined', '?'):,} quarantined"
            + ("" if "validate" in ran else " (from the last validate run)")
            + ".",
        ]
        by_rule = {k: r.get("rows", 0) for k, r in (quality.get("rules") or {}).items() if r.get("rows")}
        if by_rule:
            lines.append(
                "By rule: "
                + ", ".join(f"{k} {v:,} ({(quality.get('rules') or {})[k].get('policy')})" for k, v in by_rule.items())
                + "."
            )
        lines += [f"- data gate: {f}" for f in quality.get("failures") or []]
    lines += _candidates_section(_read(root / "metrics/train.json"), "train" in ran)
    ev = _read(root / "metrics/eval.json")
    if ev and "evaluate" in ran:
        lines += ["", "## Model", "", "| metric | this run | champion |", "| --- | ---: | ---: |"]
        champ = ev.get("champion_version")
        for key in ("accuracy", "macro_f1"):
            other = ev.get(f"champion_{key}")
            lines.append(f"| test {key} | {ev[key]:.4f} | {f'{other:.4f} (v{champ})' if other is not None else '-'} |")
        decision = _read(root / "reports/evaluate/decision.json") or {}
        verdict = "passed" if decision.get("promote") else decision.get("verdict") or "closed"
        lines += ["", "**Gate:** " + {"inconclusive": "inconclusive: the champion is kept"}.get(verdict, verdict)]
        lines += [f"- {r}" for r in decision.get("reasons", [])]
        hint = (decision.get("comparison") or {}).get("rows_needed") or {}
        if verdict == "inconclusive" and hint.get("rows_needed"):
            lines.append(
                f"- about {hint['rows_needed']:,} test rows (this split has {hint['test_rows']:,}) would "
                "decide it (docs/promotion.md)"
            )
    deploy = _read(root / "reports/deploy.json")
    if deploy and "deploy" in ran:
        lines += [
            "",
            f"**Registered:** {deploy['model_name']} version {deploy['version']}, aliases "
            f"{', '.join(deploy.get('aliases') or []) or 'none'}; "
            + (
                (f"promoted ({deploy['note']})" if deploy.get("note") else "promoted")
                if deploy.get("promoted")
                else f"not promoted ({deploy.get('note') or 'gate closed'})"
            ),
        ]
    release = result.get("release")
    if release:
        lines += [
            "",
            f"**Reproducible from:** commit `{release['commit'][:12]}`, tag `{release['tag']}`; data and model "
            f"in DVC remote `{release['remote']}` (`bigmodel verify-repro {release['model_name']} "
            f"{release['version']}`)",
        ]
    link = _mlflow_link(params, root, mlflow_run)
    if link:
        lines += ["", f"**MLflow run:** [{mlflow_run}]({link})"]
    return "\n".join(lines) + "\n"


def _candidates_section(train: dict | None, ran: bool) -> list[str]:
    """model.kind auto: each candidate's validation figures and cost, and which one became the model."""
    rows = (train or {}).get("candidates") or []
    if not ran or not train or not train.get("chosen"):
        return []
    why = next((r.get("why") for r in rows if r.get("chosen")), None) or train.get("selection")
    out = [
        "",
        "## Candidates",
        "",
        f"Chosen on the validation split ({train.get('val_rows', '?')} rows): **{train['chosen']}** ({why}).",
        "",
        "| candidate | kind | val macro-F1 | val accuracy | trials | seconds | CPU seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        name = f"**{r['name']}**" if r.get("chosen") else r["name"]
        out.append(
            f"| {name} | {r['kind']} | {r['val_macro_f1']:.4f} | {r['val_accuracy']:.4f} | "
            f"{r.get('trials') or '-'} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} |"
        )
    return out


def _data_quality_artifact(result: dict, root: Path) -> None:
    """The data-quality summary as a Prefect artifact when validate ran (or stopped) in this flow run."""
    ran = {s["stage"] for s in result["stages"] if s["ran"]} | {(result.get("failed") or {}).get("stage")}
    if "validate" not in ran:
        return
    from bigmodel_core.data.quality_report import latest
    from bigmodel_core.tracking.report_html import data_quality_markdown

    try:
        found = latest(root)
        if found is not None:
            from prefect.artifacts import create_markdown_artifact

            report, page, _ = found
            create_markdown_artifact(
                markdown=data_quality_markdown(report, where=str(root / page)),
                key="data-quality",
                description="data quality of this run's rows (validate)",
            )
    except Exception as e:
        get_run_logger().warning("could not save the data-quality artifact: %s", e)


def _card(result: dict, root: Path, params: Params, mlflow_run: str | None) -> str:
    _data_quality_artifact(result, root)
    text = card_markdown(result, root, params, mlflow_run)
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=text, key="run-card", description=f"{result['name']}: {result['status']}")
    except Exception as e:
        get_run_logger().warning("could not save the run card artifact: %s", e)
    return text


def _notify(result: dict, root: Path, params: Params, gate: bool) -> None:
    from bigmodel_core.notify import send

    model = params.deploy.model_name
    failed = result.get("failed")
    if failed:
        event = "gate_closed" if gate else "failure"
        title = f"{model}: {'gate closed' if gate else 'retraining failed'} at {failed['stage']} ({result['name']})"
        send(params, event, title, failed["message"])
        return
    deploy = _read(root / "reports/deploy.json")
    ran = {s["stage"] for s in result["stages"] if s["ran"]}
    if deploy and "deploy" in ran and deploy.get("promoted"):
        ev = _read(root / "metrics/eval.json") or {}
        send(
            params,
            "promotion",
            f"{model}: version {deploy['version']} is the new champion ({result['name']})",
            f"test accuracy {ev.get('accuracy', float('nan')):.4f}, macro-F1 {ev.get('macro_f1', float('nan')):.4f}"
            + (f"; the champion before was v{ev['champion_version']}" if ev.get("champion_version") else ""),
        )


def print_summary(result: dict, root: Path, wall_seconds: float) -> None:
    """What happened, per stage, and where to look next."""
    out = ["", f"== bigmodel retrain: {result.get('name', '')} =="]
    for s in result["stages"]:
        out.append(f"  {s['stage']:<9} {'ran    ' if s['ran'] else 'skipped'} {s['seconds']:7.1f}s")
    ran = [s["stage"] for s in result["stages"] if s["ran"]]
    eval_path, deploy_path = root / "metrics/eval.json", root / "reports/deploy.json"
    train = _read(root / "metrics/train.json") if "train" in ran else None
    if train and train.get("chosen"):
        out.append(
            f"  model: {train['chosen']} ({train['model_kind']}), the best of "
            + ", ".join(f"{r['name']} {r['val_macro_f1']:.4f}" for r in train.get("candidates") or [])
            + " (validation macro-F1)"
        )
    if eval_path.exists() and ran:
        ev = json.loads(eval_path.read_text())
        vs = (
            f" (champion v{ev['champion_version']}: macro-F1 {ev['champion_macro_f1']:.4f})"
            if ev.get("champion_version") is not None
            else ""
        )
        out.append(f"  test: accuracy {ev['accuracy']:.4f}, macro-F1 {ev['macro_f1']:.4f} on {ev['n_test']} rows{vs}")
        from bigmodel_core.evaluation.runtime import cost_line

        cost = cost_line(ev)
        if cost:
            out.append("  " + cost)
    if deploy_path.exists() and "deploy" in ran:
        d = json.loads(deploy_path.read_text())
        verdict = (
            f"promoted ({d['note']})"
            if d["promoted"] and d.get("note")
            else "promoted"
            if d["promoted"]
            else "NOT promoted: " + (d.get("note") or "; ".join(d.get("reasons", [])))
        )
        what = (
            "already registered as {} v{} (the same model bundle byte for byte: not registered again)"
            if d.get("already_registered")
            else "registered {} version {}"
        ).format(d["model_name"], d["version"])
        out.append(f"  {what} with alias(es) {', '.join(d['aliases'])}: {verdict}")
        out.append(f"  MLflow run {d['run_id']}")
    elif not ran:
        out.append("  nothing to do: every stage is up to date (no new model version)")
    release = result.get("release")
    if release:
        out.append(
            f"  reproducible from commit {release['commit'][:12]} (tag {release['tag']}), data and model in DVC "
            f"remote {release['remote']}: bigmodel verify-repro {release['model_name']} {release['version']}"
        )
    out.append(f"  flow time: {result['seconds']:.1f}s (command total {wall_seconds:.1f}s)")
    out.append("  look further: bigmodel ui  |  dvc metrics show  |  dvc plots show  |  dvc status")
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    print(json.dumps(retrain(), indent=2))

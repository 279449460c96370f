"""What a retraining run tells people: the run card (a Prefect artifact, attached to the MLflow run), the
console summary of `bigmodel run`, and the notifications (params `notify`). The flow (flows/retrain.py) only
wires the stages and calls these with its result: {"name", "status", "seconds", "stages": [{"stage", "ran",
"seconds"}], "failed"?, "release"?}."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger
from prefect.runtime import flow_run

from bigmodel_core.config import Params


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def flow_run_link() -> str:
    """This flow run's page in the Prefect UI that will show it later (PREFECT_UI_URL: see orchestration.py)."""
    from prefect.utilities.urls import url_for

    run_id = flow_run.get_id()
    return (url_for("flow-run", obj_id=run_id) or "") if run_id else ""


def _mlflow_link(params: Params, root: Path, run_id: str | None) -> str | None:
    """The MLflow run's page in the UI that shows this workspace's runs (bigmodel ui, or the tracking server's)."""
    if not run_id:
        return None
    from bigmodel_core.pipeline.ui import mlflow_run_link, mlflow_ui_url

    base = mlflow_ui_url(params, root)
    try:
        from bigmodel_core.tracking.store import _setup

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
    from bigmodel_core.reporting.report_html import data_quality_markdown

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


def publish_card(result: dict, root: Path, params: Params, mlflow_run: str | None) -> str:
    _data_quality_artifact(result, root)
    text = card_markdown(result, root, params, mlflow_run)
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=text, key="run-card", description=f"{result['name']}: {result['status']}")
    except Exception as e:
        get_run_logger().warning("could not save the run card artifact: %s", e)
    return text


def notify_result(result: dict, root: Path, params: Params, gate: bool) -> None:
    from bigmodel_core.reporting.notify import send

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

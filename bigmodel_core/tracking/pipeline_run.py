"""The pipeline's one MLflow run: opened, fed by the stages, closed with the outcome.

Under the Prefect flow the flow opens the run when it starts (`open_run`), passes its id to every stage
in BIGMODEL_MLFLOW_RUN_ID, and closes it when it ends (`close_run`): the run's duration is the flow's and
its status is the flow's outcome. Train streams its epochs into that run and deploy adds the test
figures and the model to it.

Under plain `dvc repro` there is no flow: train opens the run, deploy finishes it, and a gate that stops
the pipeline marks it FAILED (the validate stage records a run of its own, since no run exists yet when
the data gate closes).

Tracking trouble never stops the pipeline: these functions print one warning line and go on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bigmodel_core.config import Params
from bigmodel_core.tracking.run_data import DQ_HTML, attach_data_quality, has_artifact, workspace_quality

# set by the flow for every stage it runs (see flows/retrain.py)
ENV_RUN_ID = "BIGMODEL_MLFLOW_RUN_ID"
ENV_FLOW_RUN_ID = "BIGMODEL_FLOW_RUN_ID"
ENV_FLOW_RUN_NAME = "BIGMODEL_FLOW_RUN_NAME"
ENV_FLOW_RUN_URL = "BIGMODEL_FLOW_RUN_URL"
ENV_DVC_EXP_NAME = "DVC_EXP_NAME"  # set by `dvc exp run` for the stages it runs

TERMINAL = ("FINISHED", "FAILED", "KILLED")
MAX_TAG = 8000  # MLflow's limit on a tag value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH)
# tags that describe how a run ended: cleared when a crashed training resumes in the same run
STOP_TAGS = ("bigmodel.stopped_by", "bigmodel.failure_reason")


def flow_run_id() -> str | None:
    """The MLflow run the flow opened for this pipeline execution; None under plain `dvc repro`."""
    return os.environ.get(ENV_RUN_ID) or None


def default_run_name() -> str:
    """The flow run's name, the DVC experiment's name under `dvc exp run`, or retrain-<local time>."""
    return (
        os.environ.get(ENV_FLOW_RUN_NAME)
        or os.environ.get(ENV_DVC_EXP_NAME)
        or f"retrain-{time.strftime('%Y%m%d-%H%M%S')}"
    )


def warn(what: str, e: BaseException) -> None:
    first = str(e).splitlines()[0] if str(e) else ""
    print(f"mlflow: {what} ({type(e).__name__}: {first})", flush=True)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TAG else text[: MAX_TAG - 1] + "…"


def mlflow_client(params: Params, root: Path):
    from bigmodel_core.tracking.store import _setup

    mlflow = _setup(params, root)
    return mlflow, mlflow.MlflowClient()


# --------------------------------------------------------------------------- opening
def run_tags(run_name: str, tags: dict[str, str] | None = None) -> dict[str, str]:
    """A new run's tags: its name, the flow run it belongs to (from `tags` or the environment), the DVC experiment."""
    out = {"mlflow.runName": run_name, "bigmodel.run_name": run_name}
    out.update({k: str(v) for k, v in (tags or {}).items() if v is not None})
    flow_id = out.get("bigmodel.flow_run_id") or os.environ.get(ENV_FLOW_RUN_ID)
    out["bigmodel.flow_run_id"] = flow_id if flow_id and flow_id != "none" else "none"
    url = out.get("bigmodel.flow_run_url") or os.environ.get(ENV_FLOW_RUN_URL)
    if url:
        out["bigmodel.flow_run_url"] = url
    else:
        out.pop("bigmodel.flow_run_url", None)
    if out["bigmodel.flow_run_id"] != "none":
        out.setdefault("bigmodel.flow_run_name", os.environ.get(ENV_FLOW_RUN_NAME) or run_name)
    exp = os.environ.get(ENV_DVC_EXP_NAME)
    if exp:
        out["bigmodel.dvc_experiment"] = exp
    return {k: _clip(v) for k, v in out.items()}


def create_run(mlflow, client, params: Params, root: Path, run_name: str, tags: dict[str, str] | None = None) -> str:
    """Create a RUNNING run in the params' experiment with its tags and every param; raises on tracking trouble."""
    from mlflow.entities import Param

    from bigmodel_core.tracking.store import _experiment_id, _flatten

    all_tags = run_tags(run_name, tags)
    run = client.create_run(_experiment_id(mlflow, params, root), tags=all_tags, run_name=run_name)
    run_id = run.info.run_id
    flat = [Param(k, v[:6000]) for k, v in _flatten(params.as_dict()).items()]
    for i in range(0, len(flat), 100):  # at most 100 params per call
        client.log_batch(run_id, params=flat[i : i + 100])
    refresh_description(client, run_id)
    return run_id


def open_run(params: Params, root: Path, run_name: str, tags: dict[str, str]) -> str | None:
    """Open the pipeline's run (RUNNING) named `run_name`; its id, or None (and one warning line) when
    tracking is unreachable."""
    try:
        mlflow, client = mlflow_client(params, Path(root))
        return create_run(mlflow, client, params, Path(root), run_name, tags)
    except Exception as e:  # ImportError, a server that is down, a locked database ...
        warn("MLflow tracking unavailable, this run is not recorded in MLflow", e)
        return None


# --------------------------------------------------------------------------- what the run shows
def stopped_by(reason: str, status: str = "FAILED") -> str:
    """Which part of the pipeline stopped it, read from the stop's message."""
    low = reason.lower()
    if "data gate" in low:
        return "data gate"
    if "model gate" in low:
        return "model gate"
    return "cancelled" if status == "KILLED" else "error"


def stop_tags(status: str, reason: str | None, by: str | None = None) -> dict[str, str]:
    if not reason:
        return {}
    return {"bigmodel.stopped_by": by or stopped_by(reason, status), "bigmodel.failure_reason": _clip(reason)}


def summary_metrics(train_metrics: dict) -> tuple[dict[str, float], str]:
    """The best epoch's figures under unambiguous names (best_*), and a sentence that says what they are.

    train_metrics: metrics/train.json. The per-epoch series (val_macro_f1, ...) end at the last epoch,
    which early stopping or a late dip can make different from the epoch whose weights were kept.
    """
    best, n = train_metrics.get("best_epoch"), train_metrics.get("epochs_run")
    found = {
        "best_epoch": best,
        "best_val_accuracy": train_metrics.get("val_accuracy"),
        "best_val_macro_f1": train_metrics.get("val_macro_f1"),
        "best_val_loss": train_metrics.get("val_loss"),
    }
    figures = {k: float(v) for k, v in found.items() if v is not None}
    early = ", training stopped early" if train_metrics.get("stopped_early") else ""
    sentence = (
        f"Summary metrics are the best epoch's (epoch {best} of {n}{early}): best_val_macro_f1, "
        f"best_val_accuracy and best_val_loss belong to the epoch whose weights were kept; the val_* and "
        f"train_loss series hold every epoch (their last point is epoch {n})."
    )
    return figures, sentence


def refresh_description(client, run_id: str) -> None:
    """The run's description (what the MLflow UI shows at the top of the run) from its bigmodel.* tags."""
    tags = client.get_run(run_id).data.tags
    lines = []
    if tags.get("bigmodel.failure_reason"):
        lines.append(f"**Stopped by {tags.get('bigmodel.stopped_by', 'an error')}:** {tags['bigmodel.failure_reason']}")
        lines.append("")
    if tags.get("bigmodel.outcome"):
        lines.extend(f"- {line}" for line in tags["bigmodel.outcome"].splitlines())
        lines.append("")
    if tags.get("bigmodel.summary"):
        lines.append(tags["bigmodel.summary"])
        lines.append("")
    if tags.get("bigmodel.predecessor_run"):
        lines.append(
            f"Took over from run(s) {tags['bigmodel.predecessor_run']}, whose process died without closing "
            "them (closed KILLED by this run)."
        )
        lines.append("")
    if tags.get("bigmodel.resumed_from_run"):
        lines.append(
            f"Training resumed from the checkpoint written by run {tags['bigmodel.resumed_from_run']}; "
            "its epochs are logged here too."
        )
        lines.append("")
    if tags.get("bigmodel.successor_run"):
        lines.append(f"Continued by run {tags['bigmodel.successor_run']}.")
        lines.append("")
    if tags.get("bigmodel.trained_in_run"):
        lines.append(
            f"The model was trained in run {tags['bigmodel.trained_in_run']} (the train stage was up to date)."
        )
        lines.append("")
    flow_id = tags.get("bigmodel.flow_run_id", "none")
    if flow_id != "none":
        name = tags.get("bigmodel.flow_run_name") or flow_id
        url = tags.get("bigmodel.flow_run_url")
        lines.append(f"Prefect flow run: [{name}]({url})" if url else f"Prefect flow run: {name} ({flow_id})")
    if tags.get("bigmodel.dvc_experiment"):
        lines.append(f"DVC experiment: {tags['bigmodel.dvc_experiment']}")
    text = "\n".join(lines).strip()
    if text and text != tags.get("mlflow.note.content"):
        client.set_tag(run_id, "mlflow.note.content", _clip(text))


def set_tags(client, run_id: str, tags: dict[str, str]) -> None:
    """Set bigmodel.* tags and rewrite the description they feed."""
    for k, v in tags.items():
        client.set_tag(run_id, k, _clip(str(v)))
    refresh_description(client, run_id)


def clear_stop(client, run_id: str) -> None:
    """A resumed run is running again: the tags of its earlier stop no longer hold."""
    present = client.get_run(run_id).data.tags
    for k in STOP_TAGS:
        if k in present:
            client.delete_tag(run_id, k)


# --------------------------------------------------------------------------- closing
def close_run(
    params: Params,
    root: Path,
    run_id: str,
    status: str,
    reason: str | None = None,
    card_markdown: str | None = None,
    stopped_by: str | None = None,
) -> None:
    """End the pipeline's run with `status` (FINISHED, FAILED or KILLED) and end time now.

    reason: why it stopped (a gate's message, an error); recorded as the tags bigmodel.stopped_by (`stopped_by`,
    or read from the reason: "data gate", "model gate", "error", "cancelled") and bigmodel.failure_reason.
    The workspace's data-quality report is attached unless the run has one already; card_markdown is
    attached as run_card.md and run_card.html. Tracking trouble is printed, never raised.
    """
    if status not in TERMINAL:
        raise ValueError(f"status must be one of {', '.join(TERMINAL)}, got {status!r}")
    root = Path(root)
    try:
        _, client = mlflow_client(params, root)
    except Exception as e:
        warn(f"cannot close MLflow run {run_id}", e)
        return
    steps = []
    if reason:

        def record_stop() -> None:
            for k, v in stop_tags(status, reason, stopped_by).items():
                client.set_tag(run_id, k, v)

        steps.append(("record why the run stopped", record_stop))

    def quality() -> None:
        if has_artifact(client, run_id, DQ_HTML):
            return
        found = workspace_quality(root)
        if found is not None:
            attach_data_quality(client, run_id, *found)

    steps.append(("attach the data-quality report", quality))
    if card_markdown:
        from bigmodel_core.reporting.report_html import markdown_html

        def card() -> None:
            client.log_text(run_id, card_markdown, "run_card.md")
            client.log_text(run_id, markdown_html(card_markdown, "Run card"), "run_card.html")

        steps.append(("attach the run card", card))
    steps.append(("update the run description", lambda: refresh_description(client, run_id)))
    steps.append(
        (
            f"set the run's status to {status}",
            lambda: client.set_terminated(run_id, status, end_time=int(time.time() * 1000)),
        )
    )
    for what, step in steps:
        try:
            step()
        except Exception as e:
            warn(f"run {run_id}: could not {what}", e)


def record_data_gate(params: Params, root: Path, reason: str, report: dict, quarantine=None) -> str | None:
    """The data gate closed: attach this failure's report to the pipeline's run.

    Under the flow the run is the flow's, and the flow closes it. Under plain `dvc repro` no run exists
    yet: one is opened and closed FAILED here, so the stop can be found in MLflow. Returns the run id.
    """
    note = (
        "The report of the validation that closed the gate. The previous good data and "
        "reports/data_quality.json are unchanged."
    )
    run_id = flow_run_id()
    owned = run_id is None
    if run_id is None:
        run_id = open_run(params, root, default_run_name(), {"bigmodel.stage": "validate"})
        if run_id is None:
            return None
    try:
        _, client = mlflow_client(params, Path(root))
        attach_data_quality(client, run_id, report, quarantine, note=note)
    except Exception as e:
        warn(f"run {run_id}: could not attach the data-quality report", e)
    if owned:
        close_run(params, root, run_id, "FAILED", reason=reason, stopped_by="data gate")
    return run_id

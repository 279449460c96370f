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

import json
import os
import time
from pathlib import Path

from bigmodel_core.config import Params

# set by the flow for every stage it runs (see flows/retrain.py)
ENV_RUN_ID = "BIGMODEL_MLFLOW_RUN_ID"
ENV_FLOW_RUN_ID = "BIGMODEL_FLOW_RUN_ID"
ENV_FLOW_RUN_NAME = "BIGMODEL_FLOW_RUN_NAME"
ENV_FLOW_RUN_URL = "BIGMODEL_FLOW_RUN_URL"
ENV_DVC_EXP_NAME = "DVC_EXP_NAME"  # set by `dvc exp run` for the stages it runs

TERMINAL = ("FINISHED", "FAILED", "KILLED")
MAX_TAG = 8000  # MLflow's limit on a tag value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH)
DQ_HTML = "reports/data_quality.html"
DQ_JSON = "reports/data_quality.json"
SPLIT_CONTEXT = {"train": "training", "val": "validation", "test": "testing"}
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


def _warn(what: str, e: BaseException) -> None:
    first = str(e).splitlines()[0] if str(e) else ""
    print(f"mlflow: {what} ({type(e).__name__}: {first})", flush=True)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TAG else text[: MAX_TAG - 1] + "…"


def _client(params: Params, root: Path):
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
        mlflow, client = _client(params, Path(root))
        return create_run(mlflow, client, params, Path(root), run_name, tags)
    except Exception as e:  # ImportError, a server that is down, a locked database ...
        _warn("MLflow tracking unavailable, this run is not recorded in MLflow", e)
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


# --------------------------------------------------------------------------- inputs and reports
def _split_dataset(path: Path, name: str):
    """A dataset entity read from the parquet file's footer (rows, schema) without loading the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mlflow.entities import Dataset
    from mlflow.types import ColSpec, DataType, Schema

    from bigmodel_core.io import sha256_file

    meta = pq.read_metadata(path)
    arrow = meta.schema.to_arrow_schema()

    def dtype(t) -> DataType:
        if pa.types.is_boolean(t):
            return DataType.boolean
        if pa.types.is_integer(t):
            return DataType.long if t.bit_width > 32 else DataType.integer
        if pa.types.is_float32(t):
            return DataType.float
        if pa.types.is_floating(t):
            return DataType.double
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return DataType.binary
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return DataType.datetime
        return DataType.string

    schema = Schema([ColSpec(dtype(f.type), f.name) for f in arrow if not f.name.startswith("__index_level_")])
    profile = {
        "num_rows": meta.num_rows,
        "num_elements": meta.num_rows * len(schema.inputs),
        "bytes": path.stat().st_size,
    }
    return Dataset(
        name=name,
        digest=sha256_file(path)[:16],
        source_type="local",
        source=json.dumps({"uri": str(path.resolve())}),
        schema=json.dumps({"mlflow_colspec": schema.to_dict()}),
        profile=json.dumps(profile),
    )


def log_split_datasets(client, run_id: str, split_dir: Path) -> None:
    """The train/val/test split files as the run's inputs (contexts training/validation/testing).
    MLflow keeps one input per (dataset, run), so logging again is harmless."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for split, context in SPLIT_CONTEXT.items():
        path = Path(split_dir) / f"{split}.parquet"
        if path.exists():
            inputs.append(DatasetInput(_split_dataset(path, split), [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def _has_artifact(client, run_id: str, path: str) -> bool:
    folder = path.rsplit("/", 1)[0] if "/" in path else None
    return any(f.path == path for f in client.list_artifacts(run_id, folder))


def attach_data_quality(client, run_id: str, report: dict, quarantine=None, note: str | None = None) -> None:
    """The data-quality report as JSON and as a readable page (reports/data_quality.{json,html})."""
    from bigmodel_core.tracking.report_html import data_quality_html

    client.log_dict(run_id, report, DQ_JSON)
    client.log_text(run_id, data_quality_html(report, quarantine, note=note), DQ_HTML)


def _workspace_quality(root: Path) -> tuple[dict, object] | None:
    """reports/data_quality.json and the quarantined rows next to it, if the validate stage has passed here."""
    import pandas as pd

    from bigmodel_core.paths import Paths

    paths = Paths(root)
    if not paths.quality_report.exists():
        return None
    report = json.loads(paths.quality_report.read_text())
    quarantine = None
    q = paths.validated / "quarantine.parquet"
    if q.exists():
        try:
            quarantine = pd.read_parquet(q)
        except Exception:  # the report alone is still worth attaching
            quarantine = None
    return report, quarantine


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
        _, client = _client(params, root)
    except Exception as e:
        _warn(f"cannot close MLflow run {run_id}", e)
        return
    steps = []
    if reason:

        def record_stop() -> None:
            for k, v in stop_tags(status, reason, stopped_by).items():
                client.set_tag(run_id, k, v)

        steps.append(("record why the run stopped", record_stop))

    def quality() -> None:
        if _has_artifact(client, run_id, DQ_HTML):
            return
        found = _workspace_quality(root)
        if found is not None:
            attach_data_quality(client, run_id, *found)

    steps.append(("attach the data-quality report", quality))
    if card_markdown:
        from bigmodel_core.tracking.report_html import markdown_html

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
            _warn(f"run {run_id}: could not {what}", e)


def close_dead_runs(params: Params, root: Path, dead: dict[str, dict], successor: str | None, reason_of) -> set[str]:
    """Close the MLflow runs that processes of this workspace left RUNNING when they died (dead: notes from
    workspace.dead_runs, by key): status KILLED, end time their last metric (or their start), the reason
    (reason_of(note)) as bigmodel.failure_reason, and bigmodel.successor_run naming `successor`, whose
    bigmodel.predecessor_run names them. Returns the keys of the notes whose MLflow run is closed now (or was
    already, or is gone); tracking trouble is printed, never raised."""
    pending = {k: n for k, n in dead.items() if n.get("mlflow_run_id") and not n.get("mlflow_closed")}
    done = {k for k, n in dead.items() if not n.get("mlflow_run_id") or n.get("mlflow_closed")}
    if not pending:
        return done
    try:
        _, client = _client(params, Path(root))
    except Exception as e:
        _warn("cannot close the MLflow runs of dead processes", e)
        return done
    from mlflow.exceptions import MlflowException

    closed = []
    for key, note in pending.items():
        run_id = note["mlflow_run_id"]
        try:
            try:
                run = client.get_run(run_id)
            except MlflowException as e:
                if e.error_code == "RESOURCE_DOES_NOT_EXIST":  # another tracking store, or deleted: nothing open
                    done.add(key)
                    continue
                raise
            if run.info.status in ("RUNNING", "SCHEDULED"):
                last = max((m.timestamp for m in run.data.to_proto().metrics), default=run.info.start_time)
                tags = stop_tags("KILLED", reason_of(note), by="crash")
                if successor:
                    tags["bigmodel.successor_run"] = successor
                set_tags(client, run_id, tags)
                client.set_terminated(run_id, "KILLED", end_time=max(last or 0, run.info.start_time or 0))
                closed.append(run_id)
                print(f"mlflow: closed run {run_id} (KILLED): {reason_of(note)}", flush=True)
            done.add(key)
        except Exception as e:
            _warn(f"could not close run {run_id}, left by a process that died", e)
    if closed and successor:
        try:
            before = client.get_run(successor).data.tags.get("bigmodel.predecessor_run")
            set_tags(client, successor, {"bigmodel.predecessor_run": ", ".join(([before] if before else []) + closed)})
        except Exception as e:
            _warn(f"run {successor}: could not name the runs it took over from", e)
    return done


def take_over_dead_runs(params: Params, root: Path, successor: str | None, by: str, crash_flow_runs=None) -> None:
    """Close what runs of this workspace left open when their process died (workspace.dead_runs): their MLflow
    runs here, their Prefect flow runs through crash_flow_runs (flow run id -> reason; returns the ids dealt
    with) when given. `by` names this run in the reason. Only the holder of the workspace lock calls this."""
    from bigmodel_core import workspace

    if not workspace.held_by_parent():  # e.g. a library call outside any run: closing others is not its place
        return
    try:
        dead = workspace.dead_runs(root)
    except OSError as e:
        _warn("could not read the notes of earlier runs (.bigmodel/runs)", e)
        return
    if not dead:
        return

    def why(note: dict) -> str:
        return f"its process (pid {note.get('pid', '?')}) died without closing the run; closed by {by}"

    mlflow_done = close_dead_runs(params, root, dead, successor, why)
    flows = {n["flow_run_id"]: why(n) for n in dead.values() if n.get("flow_run_id") and not n.get("flow_closed")}
    flow_done = crash_flow_runs(flows) if crash_flow_runs is not None and flows else set()
    try:
        for key, note in dead.items():
            flow = note.get("flow_run_id")
            flow_ok = not flow or note.get("flow_closed") or flow in flow_done
            if key in mlflow_done and flow_ok:
                workspace.forget_run(root, key)
            elif key in mlflow_done or flow_ok:  # the rest is closed by a later run that can reach it
                workspace.update_note(
                    root,
                    key,
                    mlflow_closed=key in mlflow_done or bool(note.get("mlflow_closed")),
                    flow_closed=bool(flow_ok),
                )
    except OSError as e:
        _warn("could not update the notes of earlier runs (.bigmodel/runs)", e)


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
        _, client = _client(params, Path(root))
        attach_data_quality(client, run_id, report, quarantine, note=note)
    except Exception as e:
        _warn(f"run {run_id}: could not attach the data-quality report", e)
    if owned:
        close_run(params, root, run_id, "FAILED", reason=reason, stopped_by="data gate")
    return run_id

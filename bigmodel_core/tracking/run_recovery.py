"""Runs whose process died (a crash, SIGKILL, a machine that went down): the next run closes them, in MLflow and in
Prefect, names itself as their successor and takes over their checkpoints (workspace notes in .bigmodel/runs)."""

from __future__ import annotations

from pathlib import Path

from bigmodel_core.config import Params
from bigmodel_core.tracking.pipeline_run import mlflow_client, set_tags, stop_tags, warn


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
        _, client = mlflow_client(params, Path(root))
    except Exception as e:
        warn("cannot close the MLflow runs of dead processes", e)
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
            warn(f"could not close run {run_id}, left by a process that died", e)
    if closed and successor:
        try:
            before = client.get_run(successor).data.tags.get("bigmodel.predecessor_run")
            set_tags(client, successor, {"bigmodel.predecessor_run": ", ".join(([before] if before else []) + closed)})
        except Exception as e:
            warn(f"run {successor}: could not name the runs it took over from", e)
    return done


def take_over_dead_runs(params: Params, root: Path, successor: str | None, by: str, crash_flow_runs=None) -> None:
    """Close what runs of this workspace left open when their process died (workspace.dead_runs): their MLflow
    runs here, their Prefect flow runs through crash_flow_runs (flow run id -> reason; returns the ids dealt
    with) when given. `by` names this run in the reason. Only the holder of the workspace lock calls this."""
    from bigmodel_core.pipeline import workspace

    if not workspace.held_by_parent():  # e.g. a library call outside any run: closing others is not its place
        return
    try:
        dead = workspace.dead_runs(root)
    except OSError as e:
        warn("could not read the notes of earlier runs (.bigmodel/runs)", e)
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
        warn("could not update the notes of earlier runs (.bigmodel/runs)", e)

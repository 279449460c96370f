"""Training metrics into MLflow while training runs, so the curves can be watched in the MLflow UI.

The train stage logs into the pipeline's MLflow run: the flow's (BIGMODEL_MLFLOW_RUN_ID), or under plain
`dvc repro` one it opens itself (deploy later adds the test metrics and the model to the same run).
With model.kind auto each candidate (and each tuning trial) gets a run nested under that one.
Metrics are buffered and sent with `log_batch` at most every `flush_seconds` and at each epoch end:
no round trip per step. A tracking failure is reported once and never stops training.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from bigmodel_core.config import Params
from bigmodel_core.training.loop import Callback

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call


class MlflowLive(Callback):
    def __init__(self, client, run_id: str, flush_seconds: float = 10.0, owns_run: bool = True) -> None:
        self.client, self.run_id, self.flush_seconds = client, run_id, flush_seconds
        # False: the run is the flow's (BIGMODEL_MLFLOW_RUN_ID); the flow sets its status and end time
        self.owns_run = owns_run
        self.buffer: list = []
        self.last_flush = time.monotonic()
        self.failed = False
        self.root: Path | None = None  # set for a run of its own: noted in the workspace until it is closed
        self.resumed_from: str | None = None  # the run a resumed checkpoint's training logged into

    def _take_over(self, params: Params, root: Path) -> None:
        """A run of its own (plain `dvc repro`, which holds the workspace lock): note it, so that the next run
        closes it should this process die, and close what dead processes left open (MLflow only: the flow
        runs of those are closed by the next flow run)."""
        from bigmodel_core.pipeline import workspace
        from bigmodel_core.tracking import run_recovery

        try:
            workspace.record_run(root, self.run_id, mlflow_run_id=self.run_id)
            run_recovery.take_over_dead_runs(params, root, self.run_id, f"`dvc repro` (MLflow run {self.run_id})")
        except Exception as e:  # bookkeeping: never a reason to train without tracking
            print(f"train: could not note the MLflow run in .bigmodel/runs ({type(e).__name__}: {e})", flush=True)

    @classmethod
    def open(
        cls,
        params: Params,
        root: Path,
        resume_run_id: str | None = None,
        flush_seconds: float = 10.0,
        run_name: str | None = None,
    ) -> MlflowLive | None:
        """Log into the flow's run (BIGMODEL_MLFLOW_RUN_ID), else continue `resume_run_id` (a resumed training),
        else open the pipeline's run; None if tracking is unreachable."""
        try:
            from mlflow.exceptions import MlflowException

            from bigmodel_core.tracking import pipeline_run
            from bigmodel_core.tracking.store import _setup

            mlflow = _setup(params, root)
            client = mlflow.MlflowClient()
            flow_run = pipeline_run.flow_run_id()
            if flow_run:
                try:
                    client.get_run(flow_run)
                    return cls(client, flow_run, flush_seconds, owns_run=False)
                except MlflowException as e:
                    if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                        raise
                    print(
                        f"train: the flow's MLflow run {flow_run} is not in this tracking store; "
                        "opening a run of its own",
                        flush=True,
                    )
            run_id = None
            if not flow_run and resume_run_id:
                try:
                    client.update_run(resume_run_id, status="RUNNING")
                    pipeline_run.clear_stop(client, resume_run_id)
                    run_id = resume_run_id
                except Exception:
                    pass  # the run is gone (another tracking store): start a new one
            if run_id is None:
                run_id = pipeline_run.create_run(
                    mlflow, client, params, root, run_name or pipeline_run.default_run_name()
                )
            live = cls(client, run_id, flush_seconds)
            live.root = Path(root)
            live._take_over(params, live.root)
            return live
        except Exception as e:  # ImportError, a server that is down, a locked database ...
            print(
                f"train: MLflow tracking unavailable, metrics only go to metrics/ and plots/ ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''})",
                flush=True,
            )
            return None

    def child(self, name: str, params: dict, tags: dict[str, str] | None = None) -> MlflowLive | None:
        """A run nested under this one (MLflow's mlflow.parentRunId tag), for one candidate of model.kind auto or
        one tuning trial under its candidate, with `params` logged; None when tracking fails (training goes on)."""
        if self.failed:
            return None
        try:
            from mlflow.entities import Param

            experiment = self.client.get_run(self.run_id).info.experiment_id
            all_tags = {"mlflow.parentRunId": self.run_id, "mlflow.runName": name, **(tags or {})}
            run_id = self.client.create_run(experiment, tags=all_tags, run_name=name).info.run_id
            flat = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(flat), 100):  # at most 100 params per call
                self.client.log_batch(run_id, params=flat[i : i + 100])
            return MlflowLive(self.client, run_id, self.flush_seconds)
        except Exception as e:
            print(f"train: could not open a nested MLflow run for {name} ({type(e).__name__}: {e})", flush=True)
            return None

    def _add(self, metrics: dict, step: int, prefix: str = "") -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for k, v in metrics.items():
            if k in ("step", "epoch") or v is None:
                continue
            self.buffer.append(Metric(prefix + k, float(v), now, step))

    def on_step(self, step: int, metrics: dict) -> None:
        # step_* keys: the per-epoch rows use the same names (lr, tokens_per_second) with the epoch as step
        self._add({"step_" + k: v for k, v in metrics.items() if k not in ("step", "epoch")}, step)
        if time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def on_epoch(self, epoch: int, row: dict) -> None:
        self._add(row, epoch)
        self.flush()

    def flush(self) -> None:
        if self.failed or not self.buffer:
            self.buffer.clear()
            return
        try:
            for i in range(0, len(self.buffer), MAX_BATCH):
                self.client.log_batch(self.run_id, metrics=self.buffer[i : i + MAX_BATCH])
        except Exception as e:
            self.failed = True
            print(f"train: MLflow logging failed, training goes on ({type(e).__name__}: {e})", flush=True)
        self.buffer.clear()
        self.last_flush = time.monotonic()

    @staticmethod
    @contextlib.contextmanager
    def closed_on_failure(live: MlflowLive | None):
        """Run the block (training); if it raises, close `live`'s run KILLED (an interruption) or FAILED with the
        error as its reason, then let the error go on."""
        try:
            yield
        except BaseException as e:
            if live is not None:
                killed = isinstance(e, KeyboardInterrupt)
                live.finish(
                    "KILLED" if killed else "FAILED",
                    reason="training interrupted" if killed else f"train: {type(e).__name__}: {e}",
                )
            raise

    def finish(
        self,
        status: str = "FINISHED",
        summary: dict | None = None,
        summary_step: int = 0,
        tags: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        """Flush, log the summary metrics (the best epoch's, at step `summary_step`) and `tags`; close the run
        with `status` (and `reason`, when it failed) unless the flow owns it."""
        if summary:
            self._add(summary, summary_step)
        self.flush()
        if self.failed:
            return
        from bigmodel_core.tracking import pipeline_run

        try:
            extra = dict(tags or {})
            if self.owns_run and status != "FINISHED":
                extra.update(pipeline_run.stop_tags(status, reason))
            if extra:
                pipeline_run.set_tags(self.client, self.run_id, extra)
            if self.owns_run:
                self.client.set_terminated(self.run_id, status=status)
                if self.root is not None:
                    from bigmodel_core.pipeline.workspace import forget_run

                    forget_run(self.root, self.run_id)
        except Exception as e:
            print(f"train: could not close the MLflow run {self.run_id} ({type(e).__name__}: {e})", flush=True)

    def on_resume(self, step: int, history: list[dict], steps: list[dict]) -> None:
        """Training resumed from a checkpoint that another run (`resumed_from`, set by the train stage) wrote:
        log its epochs and steps here too, so this run, whose model version this will be, has the whole curves;
        and link the two runs (bigmodel.resumed_from_run here, bigmodel.successor_run there)."""
        if not self.resumed_from or self.resumed_from == self.run_id:
            return
        from bigmodel_core.tracking import pipeline_run

        for row in steps:
            self._add({"step_" + k: v for k, v in row.items() if k not in ("step", "epoch")}, row["step"])
        for row in history:
            self._add(row, row["epoch"])
        self.flush()
        try:
            pipeline_run.set_tags(self.client, self.run_id, {"bigmodel.resumed_from_run": self.resumed_from})
            pipeline_run.set_tags(self.client, self.resumed_from, {"bigmodel.successor_run": self.run_id})
        except Exception as e:
            print(
                f"train: could not link the MLflow runs {self.resumed_from} and {self.run_id} ({type(e).__name__}: "
                f"{e})",
                flush=True,
            )

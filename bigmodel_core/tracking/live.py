"""Training metrics into MLflow while training runs, so the curves can be watched in the MLflow UI.

The train stage opens the pipeline's MLflow run (deploy later adds the test metrics and the model to
the same run). Metrics are buffered and sent with `log_batch` at most every `flush_seconds` and at
each epoch end: no round trip per step. A tracking failure is reported once and never stops training.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bigmodel_core.config import Params
from bigmodel_core.training.loop import Callback

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call


class MlflowLive(Callback):
    def __init__(self, client, run_id: str, flush_seconds: float = 10.0) -> None:
        self.client, self.run_id, self.flush_seconds = client, run_id, flush_seconds
        self.buffer: list = []
        self.last_flush = time.monotonic()
        self.failed = False

    @classmethod
    def open(cls, params: Params, root: Path, resume_run_id: str | None = None, flush_seconds: float = 10.0
             ) -> "MlflowLive | None":
        """Continue `resume_run_id` (a resumed training) or start the run; None if tracking is unreachable."""
        try:
            from mlflow.entities import Param

            from bigmodel_core.tracking.mlflow_store import _experiment_id, _flatten, _setup

            mlflow = _setup(params, root)
            client = mlflow.MlflowClient()
            if resume_run_id:
                try:
                    client.update_run(resume_run_id, status="RUNNING")
                    return cls(client, resume_run_id, flush_seconds)
                except Exception:
                    pass  # the run is gone (another tracking store): start a new one
            exp_id = _experiment_id(mlflow, params, root)
            name = f"retrain-{time.strftime('%Y%m%d-%H%M%S')}"
            tags = {"mlflow.runName": name, "bigmodel.run_name": name,
                    "bigmodel.flow_run_id": os.environ.get("BIGMODEL_FLOW_RUN_ID", "none")}
            run = client.create_run(exp_id, tags=tags, run_name=name)
            flat = [Param(k, v[:6000]) for k, v in _flatten(params.as_dict()).items()]
            for i in range(0, len(flat), 100):  # at most 100 params per call
                client.log_batch(run.info.run_id, params=flat[i:i + 100])
            return cls(client, run.info.run_id, flush_seconds)
        except Exception as e:  # ImportError, a server that is down, a locked database ...
            print(f"train: MLflow tracking unavailable, metrics only go to metrics/ and plots/ ({type(e).__name__}: "
                  f"{str(e).splitlines()[0] if str(e) else ''})", flush=True)
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
                self.client.log_batch(self.run_id, metrics=self.buffer[i:i + MAX_BATCH])
        except Exception as e:
            self.failed = True
            print(f"train: MLflow logging failed, training goes on ({type(e).__name__}: {e})", flush=True)
        self.buffer.clear()
        self.last_flush = time.monotonic()

    def finish(self, status: str = "FINISHED", summary: dict | None = None) -> None:
        """Flush, log summary metrics (best epoch's), and close the run with `status`."""
        if summary:
            self._add(summary, 0)
        self.flush()
        if not self.failed:
            try:
                self.client.set_terminated(self.run_id, status=status)
            except Exception:
                pass

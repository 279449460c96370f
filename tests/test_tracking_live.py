"""Training metrics reach MLflow while training runs (not only when deploy logs the model)."""

from __future__ import annotations

import pytest

from bigmodel_core.config import parse_params
from bigmodel_core.tracking.live import MlflowLive
from bigmodel_core.training.loop import Callback, fit
from tests.conftest import tiny_params_dict
from tests.test_training import params, toy_data, toy_model


def test_epoch_metrics_are_in_mlflow_while_the_next_epoch_trains(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    p = parse_params(tiny_params_dict())
    live = MlflowLive.open(p, tmp_path, flush_seconds=3600)  # only epoch ends flush here
    assert live is not None
    seen = {}

    class Probe(Callback):
        """Runs after the live logger: reads what MLflow already has, mid-training."""

        def on_epoch(self, epoch, row):
            run = live.client.get_run(live.run_id)
            seen[epoch] = (run.info.status, [m.step for m in live.client.get_metric_history(live.run_id, "val_macro_f1")],
                           len(live.client.get_metric_history(live.run_id, "step_loss")))

    fit(toy_model(), toy_data(), params(epochs=3, log_every=2), callbacks=[live, Probe()], progress=False)
    assert seen[1] == ("RUNNING", [1], 5) and seen[2][:2] == ("RUNNING", [1, 2])
    history = lambda key: [m.step for m in live.client.get_metric_history(live.run_id, key)]  # noqa: E731
    assert history("tokens_per_second") == [1, 2, 3]  # one point per epoch: the per-step series has its own name
    assert history("step_tokens_per_second") == history("step_grad_norm") == history("step_lr") == list(range(2, 31, 2))
    assert history("step_step") == history("step_epoch") == []
    assert live.client.get_run(live.run_id).data.params["train.epochs"] == "2"  # the params were logged at the start
    live.finish("FINISHED", {"best_val_macro_f1": 0.5})
    run = live.client.get_run(live.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["best_val_macro_f1"] == pytest.approx(0.5)


def test_unreachable_tracking_does_not_stop_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    assert MlflowLive.open(parse_params(tiny_params_dict()), tmp_path) is None
    assert "MLflow tracking unavailable" in capsys.readouterr().out

"""What the MLflow UI is told through the MLflow API: the experiment is one of model training (MLflow 3's kind
tag) with a description naming the metrics to compare runs by; the registered model has a description; the
links into the UI ask for its model-training views."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from bigmodel_core.config import parse_params
from tests.conftest import tiny_params_dict


@pytest.fixture
def params(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return parse_params(tiny_params_dict())


def client_for(root: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def test_a_new_experiment_is_one_of_model_training_and_names_its_headline_metrics(params, tmp_path):
    from bigmodel_core.tracking.store import experiment_id

    exp_id = experiment_id(params, tmp_path)
    exp = client_for(tmp_path).get_experiment(exp_id)
    assert exp.name == "bigmodel"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    note = exp.tags["mlflow.note.content"]
    assert "registered model `tiny-model`" in note
    for metric in ("test_macro_f1", "test_accuracy", "best_val_macro_f1", "data_rows_quarantined"):
        assert f"`{metric}`" in note
    assert 'the view "bigmodel: headline metrics" of the runs table\'s Views menu' in note
    # the saved view, in the envelope MLflow 3.17's UI writes for its Views menu
    view = json.loads(exp.tags["mlflow.sharedViewState.bigmodel-headline"])
    assert view["name"] == "bigmodel: headline metrics" and view["createdAt"] == view["updatedAt"] > 0
    columns = ["metrics.`test_macro_f1`", "metrics.`test_accuracy`", "metrics.`best_val_macro_f1`",
               "metrics.`data_rows_quarantined`", "attributes.`Models`"]
    assert json.loads(view["state"]) == {"selectedColumns": columns, "columnOrder": columns,
                                         "orderByKey": "attributes.start_time", "orderByAsc": False}
    assert experiment_id(params, tmp_path) == exp_id  # found again, not made twice


def test_an_older_experiment_gets_the_tags_and_keeps_what_someone_set(params, tmp_path):
    from bigmodel_core.tracking.store import experiment_id, tracking_uri

    import mlflow

    mlflow.set_tracking_uri(tracking_uri(params, tmp_path))
    client = client_for(tmp_path)
    old = client.create_experiment("bigmodel")  # made before these tags existed
    assert experiment_id(params, tmp_path) == old
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"

    client.set_experiment_tag(old, "mlflow.note.content", "our team's notes")
    client.set_experiment_tag(old, "mlflow.experimentKind", "classification")
    client.set_experiment_tag(old, "mlflow.sharedViewState.bigmodel-headline", '{"name": "ours"}')  # overridden in the UI
    experiment_id(params, tmp_path)
    tags = client.get_experiment(old).tags
    assert (tags["mlflow.note.content"], tags["mlflow.experimentKind"]) == ("our team's notes", "classification")
    assert tags["mlflow.sharedViewState.bigmodel-headline"] == '{"name": "ours"}'


def test_the_registered_model_description_says_what_where_and_from_what(params, tmp_path):
    from bigmodel_core.tracking.mlflow_store import _describe_model
    from bigmodel_core.tracking.store import _setup

    client = _setup(params, tmp_path).MlflowClient()
    client.create_registered_model("tiny-model")
    _describe_model(client, params, tmp_path, "tiny-model", ["sports", "business", "science", "travel"], "transformer")
    text = client.get_registered_model("tiny-model").description
    assert text == (
        "Text classifier: assigns one of 4 labels (sports, business, science, travel) to a text. Trained by "
        f"bigmodel's retraining pipeline (model kind `transformer`) in the workspace {tmp_path.resolve()} on "
        f"{socket.gethostname()}, from the data sources demo (builtin:demo). Each version's description holds its "
        "test figures and its gate verdict; the alias `champion` marks the version to serve (`bigmodel serve`).")


@pytest.mark.unit
def test_links_into_the_mlflow_ui_open_its_model_training_views():
    from bigmodel_core.pipeline.ui import mlflow_experiment_link, mlflow_run_link

    base = "http://127.0.0.1:5001"
    assert mlflow_experiment_link(base, "7") == (f"{base}/#/experiments/7/runs?viewStateShareKey=bigmodel-headline"
                                                 "&workflowType=machine_learning")
    assert mlflow_run_link(base, "7", "abc") == f"{base}/#/experiments/7/runs/abc?workflowType=machine_learning"
    assert mlflow_run_link(base, None, "abc") == f"{base}/#/runs/abc?workflowType=machine_learning"

"""The one place that writes to MLflow's own tables (a moved workspace's artifact paths) against MLflow's schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bigmodel_core.errors import BigmodelError
from bigmodel_core.tracking import store


def _mlflow_columns() -> dict[str, set[str]]:
    from mlflow.store.model_registry.dbmodels import models as registry_models
    from mlflow.store.tracking.dbmodels import models as tracking_models

    tables: dict[str, set[str]] = {}
    for module in (tracking_models, registry_models):
        for table in module.Base.metadata.tables.values():
            tables.setdefault(table.name, set()).update(c.name for c in table.columns)
    return tables


def test_every_path_column_exists_in_mlflows_schema():
    tables = _mlflow_columns()
    for table, column in store._PATH_COLUMNS:
        assert column in tables.get(table, set()), f"MLflow has no {table}.{column}"


def test_every_artifact_location_column_of_mlflow_is_rewritten():
    """A column MLflow adds for artifact places (its names say location or uri, or a model version's source)
    must be moved with the others, or a copied workspace would write into the original."""
    tables = _mlflow_columns()
    places = {
        (table, column)
        for table, columns in tables.items()
        for column in columns
        if column in ("artifact_location", "artifact_uri", "storage_location")
        or (table == "model_versions" and column == "source")
    }
    assert places == set(store._PATH_COLUMNS)


def _db(tmp_path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    for table, column in store._PATH_COLUMNS:
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY)")
        con.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
    return con


def test_paths_under_the_old_place_move_and_others_stay(tmp_path):
    con = _db(tmp_path)
    con.execute("INSERT INTO runs (artifact_uri) VALUES ('file:///old/ws/mlruns/1/abc/artifacts')")
    con.execute("INSERT INTO runs (artifact_uri) VALUES ('file:///elsewhere/mlruns/1/x')")
    con.execute("INSERT INTO model_versions (source, storage_location) VALUES ('/old/ws/mlruns/m', NULL)")
    store._rewrite_artifact_paths(con, [("file:///old/ws/", "file:///new/ws/"), ("/old/ws/", "/new/ws/")])
    assert [r for (r,) in con.execute("SELECT artifact_uri FROM runs ORDER BY id")] == [
        "file:///new/ws/mlruns/1/abc/artifacts",
        "file:///elsewhere/mlruns/1/x",
    ]
    assert con.execute("SELECT source, storage_location FROM model_versions").fetchone() == ("/new/ws/mlruns/m", None)


def test_a_column_mlflow_no_longer_has_is_named_and_nothing_changes(tmp_path):
    con = _db(tmp_path)
    con.execute("INSERT INTO experiments (artifact_location) VALUES ('/old/ws/mlruns/1')")
    con.execute("ALTER TABLE model_versions DROP COLUMN source")
    with pytest.raises(BigmodelError, match=r"model_versions\.source.*nothing was changed"):
        store._rewrite_artifact_paths(con, [("/old/ws/", "/new/ws/")])
    assert con.execute("SELECT artifact_location FROM experiments").fetchone() == ("/old/ws/mlruns/1",)

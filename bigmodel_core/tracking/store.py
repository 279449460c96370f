"""The MLflow tracking store of a workspace: its URI, its database kept in step with the workspace (WAL, a moved
or copied workspace's artifact paths, a deleted database refused), the experiment and its saved view.

The tracking URI comes from params (`tracking.uri`, default a SQLite file in the workspace) unless
MLFLOW_TRACKING_URI is set. SQLite is switched to WAL with a busy timeout so that the UI and a running pipeline
can share it. Everything in bigmodel that talks to MLflow starts here (`_setup`); runs, the registry and model
logging build on it (pipeline_run, registry, mlflow_store).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from bigmodel_core.config import Params


def home_workspace(root: Path) -> Path:
    """The workspace whose local state (mlflow.db, mlartifacts/) a run in `root` uses: `root` itself, except in a
    queued DVC experiment (`dvc exp run --queue`, then `dvc queue start`), which runs in a copy of the workspace
    under <workspace>/.dvc/tmp/exps/ that DVC deletes afterwards; DVC names the workspace in DVC_ROOT. Its runs
    and versions belong in the workspace's registry, beside the other runs, not in the copy's."""
    root = Path(root)
    parent = os.environ.get("DVC_ROOT")
    if parent:
        try:
            root.resolve().relative_to(Path(parent).resolve() / ".dvc" / "tmp" / "exps")
            return Path(parent)
        except ValueError:
            pass
    return root


def _sqlite_store(params: Params, root: Path) -> tuple[str, Path] | None:
    """(the database as the URI names it, its path) when the tracking store is a SQLite file, else None."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.tracking.uri
    if not uri.startswith("sqlite:///"):
        return None
    db = uri[len("sqlite:///") :].split("?", 1)[0]
    return db, Path(db) if Path(db).is_absolute() else home_workspace(root) / db


def check_registry(params: Params, root: Path) -> None:
    """Raise RegistryMissing when the tracking database this workspace registered versions in is gone (what the
    first use of the store would raise), without creating or opening anything: `bigmodel run` asks before its first
    stage, so that nothing trains without tracking only for deploy to find the registry missing."""
    store = _sqlite_store(params, root)
    if store is not None and not store[1].exists():
        _refuse_silent_new_registry(params, home_workspace(root), store[0])


def tracking_uri(params: Params, root: Path) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.tracking.uri
    store = _sqlite_store(params, root)
    if store is not None:
        root = home_workspace(root)
        db, db_path = store
        if not db_path.exists():
            _refuse_silent_new_registry(params, root, db)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(db_path, timeout=30) as con:
            con.execute("PRAGMA journal_mode=WAL")
        _follow_moved_workspace(params, Path(root), db_path)
        uri = f"sqlite:///{db_path}" + ("" if "?" in uri else "?timeout=30")
    return uri


# Columns where MLflow keeps absolute artifact paths (file:// URIs or plain paths).
_PATH_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def _rewrite_artifact_paths(con: sqlite3.Connection, pairs: list[tuple[str, str]]) -> None:
    """In one transaction, replace each prefix `before` by `after` in every column of _PATH_COLUMNS.

    MLflow offers no API to move a store's artifact locations, so this is the one place that writes to MLflow's
    own tables; tests/test_tracking_store.py checks _PATH_COLUMNS against MLflow's schema (its SQLAlchemy
    models), so an MLflow upgrade that renames, drops or adds such a column fails there first. A column missing
    at run time is an error naming it, and the transaction is rolled back."""
    con.execute("BEGIN IMMEDIATE")
    try:
        for table, column in _PATH_COLUMNS:
            for before, after in pairs:
                con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                    (after, len(before) + 1, len(before), before),
                )
    except sqlite3.OperationalError as e:
        con.rollback()
        from bigmodel_core.errors import BigmodelError

        raise BigmodelError(
            f"cannot move this workspace's MLflow artifact paths: {e} (the installed MLflow's database schema is not "
            f"the one bigmodel knows: {', '.join(f'{t}.{c}' for t, c in _PATH_COLUMNS)}); nothing was changed"
        ) from e
    con.commit()


def _follow_moved_workspace(params: Params, root: Path, db_path: Path) -> None:
    """Point a moved or copied workspace's own database at its own artifacts.

    MLflow stores artifact locations as absolute paths. A workspace-local database (sqlite file inside the
    workspace, relative `tracking.artifact_root`) that was moved or copied still names the old place, so new
    runs would write their artifacts into the other workspace. When the experiment's location is the
    artifact root of another directory, every stored path under that directory is rewritten to this
    workspace (one transaction), and a line says so. Without the artifacts folder here it stops instead."""
    from urllib.parse import unquote, urlparse

    art = Path(params.tracking.artifact_root)
    here = root.resolve()
    if art.is_absolute():
        return
    try:
        db_path.resolve().relative_to(here)
    except ValueError:
        return  # a shared database: its paths are meant for everyone
    with sqlite3.connect(db_path, timeout=30) as con:
        try:
            row = con.execute(
                "SELECT artifact_location FROM experiments WHERE name = ?", (params.tracking.experiment,)
            ).fetchone()
        except sqlite3.OperationalError:
            return  # no tables yet: a new database
        if not row or not row[0]:
            return
        loc = str(row[0])
        path = unquote(urlparse(loc).path) if loc.startswith("file:") else loc
        tail = "/" + art.as_posix().strip("/")
        if not path.startswith("/") or not path.rstrip("/").endswith(tail):
            return  # not this workspace's layout (artifact_root changed since): leave it
        old = path.rstrip("/")[: -len(tail)] or "/"
        if Path(old) == here:
            return
        if not (here / art).is_dir():
            from bigmodel_core.errors import RegistryMissing

            raise RegistryMissing(
                f"{db_path.name} stores its artifacts in {old}{tail}, which belongs to another workspace, and this "
                f"workspace ({here}) has no {art.as_posix()}/ folder: copy {art.as_posix()}/ along with the database "
                "(a moved or copied workspace needs both); nothing was written"
            )
        _rewrite_artifact_paths(con, [(Path(old).as_uri() + "/", here.as_uri() + "/"), (old + "/", str(here) + "/")])
    print(
        f"tracking: this workspace was moved or copied from {old}: {db_path.name} now keeps its artifacts here, "
        f"in {art.as_posix()}/ (nothing is written into {old})",
        file=sys.stderr,
        flush=True,
    )


def _refuse_silent_new_registry(params: Params, root: Path, db: str) -> None:
    """A missing sqlite database would be created empty; refuse when this workspace registered versions before."""
    record = Path(root) / "reports/deploy.json"
    if params.deploy.allow_new_registry or not record.exists():
        return
    try:
        last = json.loads(record.read_text())
        version, name = last["version"], last["model_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    from bigmodel_core.errors import RegistryMissing

    raise RegistryMissing(
        f"tracking database {db} is missing, but reports/deploy.json records {name} v{version} registered in it: "
        "the registry's history (versions, champion, ledger) would be lost and a new one started silently. "
        "Restore the database (or point MLFLOW_TRACKING_URI at it), or set deploy.allow_new_registry: true "
        "to start a new registry on purpose"
    )


def _setup(params: Params, root: Path):
    import logging

    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri(params, root))
    return mlflow


#: MLflow 3 sorts experiments into kinds (GenAI apps or model training); this tag is what its UI's kind selector
#: writes. MLflow 3.17's UI itself picks its view from its GenAI / Model training switch (default GenAI, or the
#: link's `workflowType`), so the links bigmodel prints and records carry workflowType=machine_learning
#: (bigmodel_core/pipeline/ui.py) as well.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
#: the figures to compare runs by: the columns of the saved view below, named in the experiment's description
HEADLINE_METRICS = ("test_macro_f1", "test_accuracy", "best_val_macro_f1", "data_rows_quarantined")
#: A saved view of the runs table with those columns first. MLflow has no API to choose the table's default
#: columns; its UI (3.17) keeps the views of its "Views" menu as experiment tags mlflow.sharedViewState.<id>,
#: {"name", "createdAt", "updatedAt", "state": the table's state as JSON}, and opens one for the link parameter
#: viewStateShareKey=<id>. That envelope is the UI's, not a documented API: should a later MLflow read it
#: otherwise, the view is left out of the menu and the runs table opens as it would anyway.
HEADLINE_VIEW = ("bigmodel-headline", "bigmodel: headline metrics")


def _headline_view() -> str:
    columns = [f"metrics.`{m}`" for m in HEADLINE_METRICS] + ["attributes.`Models`"]
    state = {
        "selectedColumns": columns,
        "columnOrder": columns,
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }
    now = int(time.time() * 1000)
    return json.dumps({"name": HEADLINE_VIEW[1], "createdAt": now, "updatedAt": now, "state": json.dumps(state)})


def _experiment_tags(params: Params) -> dict[str, str]:
    return {
        EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1],
        "mlflow.note.content": (
            "Training runs of bigmodel's retraining pipeline for the registered model "
            f"`{params.deploy.model_name}`: one run per pipeline execution, named like its Prefect flow run. "
            "Compare runs by "
            + ", ".join(f"`{m}`" for m in HEADLINE_METRICS)
            + f' (the view "{HEADLINE_VIEW[1]}" of the runs table\'s '
            "Views menu shows them; `bigmodel ui` prints a link to it); each run holds its data-quality report, run "
            "card, plots and, when deploy ran, the model."
        ),
        f"mlflow.sharedViewState.{HEADLINE_VIEW[0]}": _headline_view(),
    }


def _experiment_id(mlflow, params: Params, root: Path) -> str:
    exp = mlflow.get_experiment_by_name(params.tracking.experiment)
    if exp is not None:
        # an experiment made before these tags existed gets them; a kind or description someone chose is kept
        for key, value in _experiment_tags(params).items():
            if key in exp.tags:
                continue
            mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    tags = _experiment_tags(params)
    if tracking_uri(params, root).split(":", 1)[0] in ("http", "https", "databricks"):
        # a tracking server keeps the artifacts in its own artifact root (proxied), where every client can
        # read them; a path on this machine would be readable here only
        return mlflow.create_experiment(params.tracking.experiment, tags=tags)
    art = Path(params.tracking.artifact_root)
    art = art if art.is_absolute() else home_workspace(root) / art
    art.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(params.tracking.experiment, artifact_location=art.resolve().as_uri(), tags=tags)


def experiment_id(params: Params, root: Path) -> str:
    """The id of the params' experiment (made, with its tags, when it does not exist yet)."""
    return _experiment_id(_setup(params, root), params, root)


def champion_bundle(params: Params, root: Path) -> tuple[str, Path] | None:
    """Download the bundle of the version that holds the champion alias; None when there is none."""
    mlflow = _setup(params, root)
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(params.deploy.model_name, params.deploy.champion_alias)
    except MlflowException:
        return None
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{params.deploy.model_name}/{mv.version}"))
    bundle = _bundle_path(local)
    return (str(mv.version), bundle) if bundle is not None else None


def _bundle_path(model_dir: Path) -> Path | None:
    """Where the pyfunc keeps the 'bundle' artifact, as its MLmodel file says."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.exists():
        return None
    flavor = (yaml.safe_load(mlmodel.read_text()).get("flavors") or {}).get("python_function") or {}
    entry = (flavor.get("artifacts") or {}).get("bundle")
    if not entry:
        return None
    path = model_dir / entry["path"]
    return path if path.exists() else None


def _flatten(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = json.dumps(d) if isinstance(d, (list, dict)) else str(d)
    return out

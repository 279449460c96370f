"""The `bigmodel` command.

    bigmodel run [-S train.epochs=5 ...]   # the retraining flow (Prefect), stages through DVC
    bigmodel stage clean                   # one stage, in-process (this is what dvc.yaml calls)
    bigmodel dag                           # stage order as the flow sees it
    bigmodel predict "some text"           # score texts with the champion model
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from bigmodel_core.errors import BigmodelError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, gate and ship text classifiers.")


def _fail(err: BigmodelError) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(err.exit_code)


@app.command()
def stage(name: str = typer.Argument(..., help="Stage to run: ingest, clean, validate, augment, split, train, evaluate, deploy."),
          params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Params file.")) -> None:
    """Run one stage in this process (dvc.yaml's cmd for every stage)."""
    from bigmodel_core import stages
    from bigmodel_core.config import load_params
    from bigmodel_core.paths import Paths

    try:
        module = stages.get(name)
        params = load_params(params_file)
        started = time.perf_counter()
        report = module.run(params, Paths(Path.cwd()))
    except BigmodelError as e:
        _fail(e)
    import os

    if os.environ.get("BIGMODEL_RANK_OF_STAGE") is None:  # ranks started by the stage itself stay quiet here
        summary = json.dumps(report, default=str)
        typer.echo(f"stage {name}: done in {time.perf_counter() - started:.1f}s: {summary[:600]}")


@app.command()
def run(set_: Optional[list[str]] = typer.Option(None, "--set-param", "-S", help="Override a param (key.path=value), as `dvc exp run -S`; written to params.yaml."),
        force: bool = typer.Option(False, "--force", help="Re-run every stage even when DVC says it is up to date."),
        params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Params file (must be the one dvc.yaml reads)."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's INFO logs (every line of every stage).")) -> None:
    """Run the retraining flow: every stale stage of dvc.yaml, in order, through DVC."""
    import os

    # Embedded defaults: Prefect keeps its database in the workspace (so `make ui` shows these runs)
    # unless the user points it at a server or a home of their own.
    if "PREFECT_API_URL" not in os.environ:
        os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO" if verbose else os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING")
    from bigmodel_core.config import load_params
    from bigmodel_core.params_file import persist_overrides

    try:
        if set_:
            load_params(params_file, set_)  # validate everything before touching the file
            for line in persist_overrides(params_file, set_):
                typer.echo(f"params: {line}")
        load_params(params_file)
    except BigmodelError as e:
        _fail(e)
    from flows.retrain import StageFailed, print_summary, retrain

    started = time.perf_counter()
    try:
        result = retrain(root=str(Path.cwd()), force=force)
    except StageFailed as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code or 1)
    print_summary(result, Path.cwd(), time.perf_counter() - started)


@app.command()
def dag(dvc_file: Path = typer.Option(Path("dvc.yaml"), "--file", help="dvc.yaml to read.")) -> None:
    """Print the stage order the flow follows."""
    from bigmodel_core.dag import load_dag

    try:
        for s in load_dag(dvc_file):
            typer.echo(f"{s.name:<10} <- {', '.join(s.upstream) or '-'}")
    except BigmodelError as e:
        _fail(e)


@app.command()
def predict(texts: list[str] = typer.Argument(..., help="Texts to classify."),
            model_uri: Optional[str] = typer.Option(None, "--model-uri", help="Default: models:/<deploy.model_name>@<champion alias>."),
            params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    """Classify texts with a registered model (loaded through MLflow pyfunc)."""
    import pandas as pd

    from bigmodel_core.config import load_params
    from bigmodel_core.tracking.mlflow_store import load_pyfunc

    try:
        params = load_params(params_file)
        frame = load_pyfunc(params, Path.cwd(), model_uri).predict(pd.DataFrame({"text": texts}))
    except BigmodelError as e:
        _fail(e)
    typer.echo(frame.to_string(index=False))


def main() -> None:
    try:
        app()
    except BigmodelError as e:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()

"""Scoring and the UIs: `bigmodel predict` (texts or a file), `bigmodel serve` (the champion over HTTP) and
`bigmodel ui` (the MLflow and Prefect UIs). Registered on the app by bigmodel_core/cli.py."""

from __future__ import annotations

from pathlib import Path

import typer

from bigmodel_core.commands.common import PARAMS_HELP


def predict(
    texts: list[str] | None = typer.Argument(None, help="Texts to classify (or --input FILE --output FILE)."),
    model_uri: str | None = typer.Option(
        None, "--model-uri", help="Default: models:/<deploy.model_name>@<champion alias>."
    ),
    input_file: Path | None = typer.Option(
        None, "--input", "-i", help="Parquet, CSV or JSONL file with a 'text' column."
    ),
    output_file: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Where to write input columns + predictions; format from the extension (.parquet, .csv, .jsonl).",
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Rows per model call with --input."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
) -> None:
    """Classify texts with a registered model (loaded through MLflow pyfunc).

    bigmodel predict "some text" "another text"
    bigmodel predict --input texts.csv --output scored.parquet
    """
    import pandas as pd

    from bigmodel_core.config import load_params
    from bigmodel_core.errors import ConfigError, DataError
    from bigmodel_core.tracking.mlflow_store import load_pyfunc

    if (input_file is None) != (output_file is None):
        raise ConfigError("--input and --output go together: bigmodel predict --input FILE --output FILE")
    if input_file is not None and texts:
        raise ConfigError("give texts on the command line or --input FILE, not both")
    if input_file is None and not texts:
        raise ConfigError('nothing to classify: bigmodel predict "some text" ... or --input FILE --output FILE')
    params = load_params(params_file)
    if input_file is not None and output_file is not None:  # (one without the other was refused above)
        from bigmodel_core.tracking.scoring import file_format, score_file

        file_format(input_file, "input")  # both names are checked before the model is loaded
        file_format(output_file, "output")
        if not input_file.is_file():
            raise DataError(f"{input_file}: input file not found")
        model = load_pyfunc(params, Path.cwd(), model_uri)
        refuse = getattr(model.unwrap_python_model(), "refusal", None)  # a bigmodel model's input rules
        report = score_file(model.predict, input_file, output_file, batch_size, refuse)
        if report["renamed"]:
            names = ", ".join(f"{old!r} as {new!r}" for old, new in report["renamed"].items())
            typer.echo(f"note: the model writes columns of the same name, so the input's are kept renamed: {names}")
        typer.echo(f"scored {report['rows']:,} rows of {input_file} into {output_file} in {report['seconds']:.1f}s")
        return
    model = load_pyfunc(params, Path.cwd(), model_uri)
    try:
        frame = model.predict(pd.DataFrame({"text": texts}))
    except Exception as e:  # the pyfunc refuses a text with MlflowException(INVALID_PARAMETER_VALUE)
        if getattr(e, "error_code", None) != "INVALID_PARAMETER_VALUE":
            raise
        raise DataError(f"cannot classify: {getattr(e, 'message', e)}") from None
    typer.echo(frame.to_string(index=False))


def serve(
    model_uri: str | None = typer.Option(
        None,
        "--model-uri",
        help="Default: models:/<deploy.model_name>@<champion alias>, resolved to its version at start.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(5001, "--port", "-p", help="Port to listen on."),
    max_body_bytes: int = typer.Option(
        8 * 1024 * 1024, "--max-body-bytes", min=1, help="Larger request bodies get 413."
    ),
    max_rows: int = typer.Option(1000, "--max-rows", min=1, help="Texts per request; more get 400."),
    max_text_chars: int = typer.Option(100_000, "--max-text-chars", min=1, help="Characters per text; longer get 400."),
    timeout: int | None = typer.Option(
        None, "--timeout", min=1, help="Seconds a request may take before 504 (MLflow's default: 60)."
    ),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="One log line per request."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
) -> None:
    """Serve the champion over HTTP with MLflow's scoring server (POST /invocations, GET /ping).

    bigmodel serve --port 5001
    """
    from bigmodel_core.config import load_params
    from bigmodel_core.tracking.serving import serve as run_server

    run_server(
        load_params(params_file),
        Path.cwd(),
        model_uri=model_uri,
        host=host,
        port=port,
        max_body_bytes=max_body_bytes,
        max_rows=max_rows,
        max_text_chars=max_text_chars,
        timeout=timeout,
        access_log=access_log,
    )


def ui(
    mlflow_port: int | None = typer.Option(
        None,
        "--mlflow-port",
        min=1,
        max=65535,
        help="Port of the MLflow UI (default: the one used last in this workspace, else 5000).",
    ),
    prefect_port: int | None = typer.Option(
        None,
        "--prefect-port",
        min=1,
        max=65535,
        help="Port of the Prefect UI (default: the one used last in this workspace, else 4200).",
    ),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
) -> None:
    """The MLflow UI and the Prefect UI on this workspace's runs, on 127.0.0.1, until Ctrl-C.

    While it runs, `bigmodel run` in this workspace reports to its Prefect server (live), and the links every
    run records (MLflow <-> Prefect, the run card) name its addresses.
    """
    from bigmodel_core.config import load_params
    from bigmodel_core.pipeline.orchestration import configure
    from bigmodel_core.pipeline.ui import serve as serve_ui

    root = Path.cwd()
    params = load_params(params_file)
    configure(root)  # PREFECT_HOME: the workspace's .prefect/, as for `bigmodel run`
    code = serve_ui(root, params, mlflow_port, prefect_port, say=lambda m: typer.echo(m))
    raise typer.Exit(code)

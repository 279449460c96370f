"""The registry's commands: promote, rollback, registry history, release, verify-repro, and the reports of the
last run (`bigmodel report data`). Registered on the app by bigmodel_core/cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bigmodel_core.commands.common import PARAMS_HELP

report_app = typer.Typer(no_args_is_help=True, help="Reports of the last run, in the terminal.")
registry_app = typer.Typer(no_args_is_help=True, help="The model registry: promotion history.")


def release() -> None:
    """Push, commit, tag and record the version the last run registered (what deploy.git_commit does at the end of
    `bigmodel run`); for a release that failed there (a remote that was down, say), once the cause is fixed."""
    from bigmodel_core.config import load_params
    from bigmodel_core.pipeline import workspace
    from bigmodel_core.release.record import record

    root = Path.cwd()
    params = load_params(Path("params.yaml"))
    with workspace.exclusive(root, "bigmodel release", wait=True):
        done = record(root, params, say=lambda m: typer.echo(m))
    if done is None:
        typer.echo("error: reports/deploy.json names no registered version: run `bigmodel run` first", err=True)
        raise typer.Exit(2)
    typer.echo(
        f"recorded {done['model_name']} v{done['version']}: commit {done['commit'][:12]}, tag {done['tag']}, "
        f"DVC remote {done['remote']}"
    )


def verify_repro(
    name: str = typer.Argument(..., help="Registered model name (deploy.model_name)."),
    version: str = typer.Argument(..., help="Version to re-derive."),
    tolerance: float | None = typer.Option(
        None,
        "--tolerance",
        min=0.0,
        help="Largest difference allowed per metric (default: 0 for a model trained on CPU, else 0.01).",
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary worktree (its path is printed)."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
) -> None:
    """Re-derive a version from the commit and DVC remote deploy.git_commit recorded; compare its metrics.

    Exit 0 when every test metric matches the registered one, 1 when one differs or the data is gone, 2 when the
    version has no record. The workspace, its registry and dvc.lock are not touched.
    """
    from bigmodel_core.config import load_params
    from bigmodel_core.release.verify import check, report, verify

    params = load_params(params_file)
    verdict = verify(Path.cwd(), params, name, version, tolerance=tolerance, keep=keep, say=lambda m: typer.echo(m))
    for line in report(verdict):
        typer.echo(line)
    typer.echo(check(verdict))


@report_app.command("data")
def report_data(as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON.")) -> None:
    """The data-quality summary of the last validate run: rules, rows, classes, drift, where the page is."""
    from bigmodel_core.data.quality_report import latest
    from bigmodel_core.errors import DataError
    from bigmodel_core.reporting.report_html import data_quality_markdown

    found = latest(Path.cwd())
    if found is None:
        raise DataError(
            "reports/data_quality.json: no data-quality report yet (run `bigmodel run` or "
            "`bigmodel stage validate` first)"
        )
    report, page, note = found
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    if note:
        typer.echo(note + "\n")
    typer.echo(data_quality_markdown(report, where=page).rstrip())


@registry_app.command("history")
def registry_history(
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
) -> None:
    """Every promotion decision on record (pipeline and people), oldest first."""
    from bigmodel_core.config import load_params
    from bigmodel_core.tracking.registry import history_lines

    for line in history_lines(load_params(params_file), Path.cwd()):
        typer.echo(line)


def promote(
    version: str = typer.Argument(..., help="Registered version to make the champion."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the promotion ledger)."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
) -> None:
    """Move the champion alias to VERSION after loading it in a fresh process and smoke-testing it."""
    from bigmodel_core.config import load_params
    from bigmodel_core.tracking.registry import promote_by_hand

    typer.echo(promote_by_hand(load_params(params_file), Path.cwd(), version, reason))


def rollback(
    reason: str = typer.Option(..., "--reason", help="Why (kept in the promotion ledger)."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
) -> None:
    """Move the champion alias back to the version it held before the current one (smoke-tested first)."""
    from bigmodel_core.config import load_params
    from bigmodel_core.tracking.registry import rollback as do_rollback

    typer.echo(do_rollback(load_params(params_file), Path.cwd(), reason))

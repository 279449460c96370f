"""The `bigmodel` command.

bigmodel run [-S train.epochs=5 ...]   # the retraining flow (Prefect), stages through DVC
bigmodel schedule --cron "0 3 * * 1"   # the same flow, served on a schedule
bigmodel stage clean                   # one stage, in-process (this is what dvc.yaml calls)
bigmodel init [DIR]                    # make your repository a workspace (params.yaml, dvc.yaml, ...)
bigmodel dag [--write | --check]       # stage order as the flow sees it; dvc.yaml from the stages
bigmodel predict "some text"           # score texts with the champion model
bigmodel predict -i in.csv -o out.parquet   # score a file in batches
bigmodel serve --port 5001             # the champion over HTTP (MLflow's scoring server)
bigmodel ui                            # the MLflow and Prefect UIs on this workspace's runs
bigmodel report data                   # the last data-quality report, in the terminal
bigmodel release                       # push, commit, tag the last registered version (deploy.git_commit)
bigmodel verify-repro NAME VERSION     # re-derive a registered version from its commit and DVC remote
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from typer.core import TyperGroup

from bigmodel_core.commands import registry, serving
from bigmodel_core.commands.common import PARAMS_HELP, describe_exception
from bigmodel_core.errors import BigmodelError


class _Commands(TyperGroup):
    """Every command (sub-commands too) ends a BigmodelError the same way, here: one `error:` line on stderr and the
    error's exit code. Commands do not catch it themselves, unless another handler of theirs would."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BigmodelError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None


app = typer.Typer(
    cls=_Commands, add_completion=False, no_args_is_help=True, help="Train, gate and ship text classifiers."
)


def _print_version(value: bool) -> None:
    if value:
        from bigmodel_core.pipeline.workspace_init import installed_version

        typer.echo(f"bigmodel {installed_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_print_version,
        help="Print the installed bigmodel version and exit.",
    ),
) -> None:
    """Train, gate and ship text classifiers."""


@app.command()
def stage(
    name: str = typer.Argument(
        ..., help="Stage to run: ingest, clean, validate, augment, split, train, evaluate, deploy."
    ),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help=PARAMS_HELP),
) -> None:
    """Run one stage in this process (dvc.yaml's cmd for every stage)."""
    from bigmodel_core import stages
    from bigmodel_core.config import load_params
    from bigmodel_core.paths import Paths
    from bigmodel_core.pipeline.dvc_run import report_stage_outcome, take_stage_outcome_path
    from bigmodel_core.pipeline.interrupts import Interrupted, raise_on_signals
    from bigmodel_core.pipeline.workspace import exclusive

    outcome = take_stage_outcome_path()  # where the flow's DVC run reads this stage's exit code and error
    try:
        with raise_on_signals():
            module = stages.get(name)
            params = load_params(params_file)
            from bigmodel_core.pipeline.dag import undeclared_params

            missing = undeclared_params(name, Path("dvc.yaml"), params_file)
            if missing:
                typer.echo(
                    f"warning: {params_file} sets {', '.join(missing)}, which stage {name} reads, but dvc.yaml does "
                    "not declare it: DVC will not re-run the stage when it changes (`bigmodel dag --write`)",
                    err=True,
                )
            started = time.perf_counter()
            # run by `dvc repro` on its own: hold the workspace (under `bigmodel run` the run already holds it)
            with exclusive(Path.cwd(), f"dvc repro (stage {name})", wait=False):
                report = module.run(params, Paths(Path.cwd()))
    except BigmodelError as e:
        report_stage_outcome(outcome, e.exit_code, str(e))
        raise  # for the app's group to print: the handlers below are for other errors
    except Interrupted as e:
        said = f"stage {name} interrupted by {e.signame}: stopped; its last good outputs are unchanged"
        report_stage_outcome(outcome, e.exit_code, said)
        typer.echo(f"error: {said}", err=True)
        raise typer.Exit(e.exit_code) from None
    except Exception as e:  # not bad input: an environment fault (permissions, disk, memory) or a bug
        import traceback

        traceback.print_exc()  # the whole story for the Prefect task log and `dvc repro`'s console
        said = f"stage {name}: {describe_exception(e)}"
        report_stage_outcome(outcome, 1, said)
        typer.echo(f"error: {said}", err=True)
        raise typer.Exit(1) from None
    report_stage_outcome(outcome, 0)
    import os

    if os.environ.get("BIGMODEL_RANK_OF_STAGE") is None:  # ranks started by the stage itself stay quiet here
        summary = json.dumps(report, default=str)
        typer.echo(f"stage {name}: done in {time.perf_counter() - started:.1f}s: {summary[:600]}")


@app.command()
def run(
    set_: list[str] | None = typer.Option(
        None,
        "--set-param",
        "-S",
        help="Override a param (key.path=value), as `dvc exp run -S`; written to params.yaml.",
    ),
    force: bool = typer.Option(False, "--force", help="Re-run every stage even when DVC says it is up to date."),
    wait: bool = typer.Option(
        True,
        "--wait/--no-wait",
        help="When another run holds this workspace: wait for it (default) or stop at once (exit 4).",
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show Prefect's INFO logs on the console too (the Prefect UI always has them)."
    ),
) -> None:
    """Run the retraining flow: every stale stage of dvc.yaml, in order, through DVC (params: ./params.yaml)."""
    import os

    from bigmodel_core.config import load_params
    from bigmodel_core.pipeline import workspace
    from bigmodel_core.pipeline.interrupts import as_interrupted, message, raise_on_signals
    from bigmodel_core.pipeline.orchestration import api_server, configure

    root = Path.cwd()
    started = time.perf_counter()
    params = load_params(
        Path("params.yaml"), set_ or None
    )  # every param and override is checked before anything starts
    from bigmodel_core.tracking.store import check_registry

    check_registry(params, root)  # a deleted mlflow.db stops the run here, not at evaluate after training
    from bigmodel_core.pipeline.workspace_init import champion_ref_folder, refresh_version

    for changed in (refresh_version(root), champion_ref_folder(root)):
        if changed:
            typer.echo(changed)
    server = configure(root, verbose)
    try:
        with raise_on_signals(), workspace.exclusive(root, "bigmodel run", wait=wait):
            # no server to record in: answer "nothing to do" without starting one
            if not set_ and not force and "PREFECT_API_URL" not in os.environ and not workspace.dvc_status(root):
                typer.echo(
                    f"nothing to do: every stage is up to date (raw data, params and code unchanged since "
                    f"dvc.lock); checked in {time.perf_counter() - started:.1f}s. No flow run recorded: "
                    "with `bigmodel ui` running, runs (no-op ones too) go to its Prefect server."
                )
                return
            typer.echo(f"prefect: {server}")
            with api_server(root):
                from bigmodel_flows.retrain import StageFailed, print_summary, retrain

                try:
                    result = retrain(root=str(root), force=force, set_params=set_ or None, wait=wait)
                except StageFailed as e:
                    typer.echo(f"error: {e}", err=True)
                    raise typer.Exit(e.exit_code or 1) from None
    except BigmodelError:
        raise  # for the app's group to print: the handlers below are for other errors
    except typer.Exit:
        raise
    except BaseException as e:
        stopped = as_interrupted(e)
        if stopped is not None:
            typer.echo(f"error: {message(stopped, 'bigmodel run')}", err=True)
            raise typer.Exit(stopped.exit_code) from None
        if verbose:
            import traceback

            traceback.print_exc()
        typer.echo(
            f"error: the retraining flow failed: {describe_exception(e)} (the traceback is in the Prefect UI; "
            "-v shows it here)",
            err=True,
        )
        raise typer.Exit(1) from None
    print_summary(result, root, time.perf_counter() - started)


def _interval_seconds(text: str) -> float:
    from bigmodel_core.errors import ConfigError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ConfigError(
            f"--interval {text!r}: give seconds (3600) or a number with s, m, h or d (30m, 6h, 1d)"
        ) from None
    if value < 60:
        raise ConfigError(f"--interval {text!r}: at least 60 seconds between retraining runs")
    return value


@app.command()
def schedule(
    cron: str | None = typer.Option(None, "--cron", help='Cron expression, e.g. "0 3 * * 1" (Mondays 03:00).'),
    interval: str | None = typer.Option(None, "--interval", help="Every N seconds, or 30m / 6h / 1d."),
    timezone: str | None = typer.Option(None, "--timezone", help="IANA time zone of --cron (default UTC)."),
    name: str = typer.Option("scheduled", "--name", help="Deployment name: retrain/NAME in the Prefect UI."),
    set_: list[str] | None = typer.Option(
        None, "--set-param", "-S", help="Param override applied at every scheduled run (a deployment parameter)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's INFO logs on the console too."),
) -> None:
    """Serve the retraining flow on a schedule until Ctrl-C (a Prefect deployment, retrain/NAME).

    bigmodel schedule --cron "0 3 * * 1"
    bigmodel schedule --interval 6h -S train.epochs=3
    """
    from bigmodel_core.config import load_params
    from bigmodel_core.errors import ConfigError
    from bigmodel_core.pipeline.orchestration import configure

    root = Path.cwd()
    if (cron is None) == (interval is None):
        raise ConfigError("give one of --cron EXPR or --interval EVERY")
    params = load_params(Path("params.yaml"), set_ or None)
    seconds = _interval_seconds(interval) if interval is not None else None
    server = configure(root, verbose)
    from prefect.schedules import Cron, Interval

    try:
        if cron is not None:
            when = Cron(cron, timezone=timezone or "UTC")
        else:
            assert seconds is not None  # --interval was given (one of the two: checked above)
            when = Interval(seconds)
    except Exception as e:
        raise ConfigError(f"--cron {cron!r}: {str(e).splitlines()[0]}") from None
    from prefect.flows import EntrypointType

    from bigmodel_core.pipeline.orchestration import api_server
    from bigmodel_flows.retrain import retrain

    typer.echo(f"prefect: {server}")
    typer.echo(
        f"serving retrain/{name} on {'cron ' + repr(cron) if cron else f'every {seconds:g}s'} for {root}; "
        "runs appear in the Prefect UI (bigmodel ui). Ctrl-C stops serving and pauses the schedule."
    )
    import os

    temporary = "PREFECT_API_URL" not in os.environ
    try:
        with api_server(root, services=True) as api:  # a temporary server needs its scheduler to create the runs
            if temporary:
                typer.echo(f"prefect: temporary server {api} up (it stops with this command)")
            retrain.serve(
                name=name,
                schedules=[when],
                parameters={"root": str(root), "set_params": set_ or [], "force": False},
                tags=["bigmodel", f"model:{params.deploy.model_name}"],
                limit=1,
                print_starting_message=verbose,
                entrypoint_type=EntrypointType.MODULE_PATH,
                description=f"bigmodel retraining of {params.deploy.model_name} in {root}",
            )
    except KeyboardInterrupt:
        pass
    # serve() returns when it is stopped (Prefect handles Ctrl-C itself); its schedule is paused then
    typer.echo(f"stopped serving retrain/{name} (Ctrl-C); its schedule is paused")


@app.command()
def init(
    directory: Path = typer.Argument(Path("."), help="The workspace (your git repository); default: here."),
    force: bool = typer.Option(False, "--force", help="Write params.yaml, dvc.yaml and bigmodel.version again."),
) -> None:
    """Make a directory a bigmodel workspace: params.yaml, dvc.yaml, bigmodel.version, data/sources/,
    .gitignore and .dvcignore lines, `dvc init` when needed. Then: edit params.yaml, `bigmodel run`."""
    from bigmodel_core.pipeline.workspace_init import init as init_workspace

    for line in init_workspace(directory, force=force):
        typer.echo(line)
    typer.echo(
        f"next: name your data in {directory / 'params.yaml'} (data.sources, data.labels; the demo corpus "
        f"runs as written), then `bigmodel run` in {directory}"
    )


def dag(
    dvc_file: Path = typer.Option(Path("dvc.yaml"), "--file", help="dvc.yaml to read (or write)."),
    write: bool = typer.Option(
        False,
        "--write",
        help="Write dvc.yaml from the stages' declarations (SPEC in each bigmodel_core/stages module).",
    ),
    check: bool = typer.Option(False, "--check", help="Exit 1 when dvc.yaml differs from the declarations."),
) -> None:
    """Print the stage order the flow follows; --write generates dvc.yaml, --check compares it."""
    from bigmodel_core.pipeline.dag import installed_layout, load_dag, render_dvc_yaml

    if write or check:
        import yaml

        root = dvc_file.resolve().parent
        own = root / "params.yaml"  # declare the keys this workspace's params file sets
        wanted = render_dvc_yaml(
            installed=installed_layout(root), params=yaml.safe_load(own.read_text()) or {} if own.exists() else None
        )
        current = dvc_file.read_text() if dvc_file.exists() else None
        if check:
            if current != wanted:
                typer.echo(
                    f"error: {dvc_file} differs from the stages' declarations; run `bigmodel dag --write`", err=True
                )
                raise typer.Exit(1)
            typer.echo(f"{dvc_file} matches the stages' declarations")
            return
        from bigmodel_core.io import atomic_path

        with atomic_path(dvc_file, keep_mode=True) as tmp:
            tmp.write_text(wanted)
        typer.echo(f"{'wrote' if current != wanted else 'unchanged:'} {dvc_file}")
        return
    for s in load_dag(dvc_file):
        typer.echo(f"{s.name:<10} <- {', '.join(s.upstream) or '-'}")


# Commands defined by concern in bigmodel_core/commands/, registered in the order `bigmodel --help` lists them.
app.command()(registry.release)
app.command("verify-repro")(registry.verify_repro)
app.command()(dag)
app.command()(serving.predict)
app.command()(serving.serve)
app.command()(serving.ui)
app.add_typer(registry.report_app, name="report")
app.add_typer(registry.registry_app, name="registry")
app.command()(registry.promote)
app.command()(registry.rollback)


def main() -> None:
    app()  # a BigmodelError of any command ends in _Commands.invoke, the one place that reports it


if __name__ == "__main__":
    main()

"""Errors that end a command with a one-line message and a known exit code."""

from __future__ import annotations


class BigmodelError(Exception):
    """An error the user can act on; the CLI prints its message on one line."""

    exit_code = 1


class ConfigError(BigmodelError):
    """params.yaml or an override is wrong (names the key and the rule)."""

    exit_code = 2


class DataError(BigmodelError):
    """An input file is missing, empty or malformed (names the file, column or row)."""

    exit_code = 2


class GateFailed(BigmodelError):
    """A quality gate stopped the pipeline (names the rule, the count and examples)."""

    exit_code = 3


class TrainingError(BigmodelError):
    """Training cannot go on with these params (non-finite loss, out of memory); exit 2: change params."""

    exit_code = 2


class RegistryMissing(BigmodelError):
    """The tracking database is gone although this workspace registered versions in it."""

    exit_code = 2


class WorkspaceBusy(BigmodelError):
    """Another run holds the workspace (names it); nothing was changed."""

    exit_code = 4


class PortInUse(BigmodelError):
    """The address `bigmodel serve` should listen on is taken by another process (names it); nothing was started.
    Exit 4 like WorkspaceBusy: something the command needs is held by someone else."""

    exit_code = 4


#: Exit codes that mean "retrying will not help": bad input, closed gates, a workspace held by another run.
PERMANENT_EXIT_CODES = frozenset(
    {ConfigError.exit_code, DataError.exit_code, GateFailed.exit_code, WorkspaceBusy.exit_code}
)

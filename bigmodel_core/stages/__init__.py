"""One module per stage; each exposes run(params, paths) -> report dict.

Stages are the only code that touches both config and disk. They read inputs through schema
checks and write every output atomically, so a failed stage leaves the last good outputs in place.
"""

from __future__ import annotations

import importlib

STAGES = ("ingest", "clean", "validate", "augment", "split", "train", "evaluate", "deploy")


def get(name: str):
    from bigmodel_core.errors import ConfigError

    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    return importlib.import_module(f"bigmodel_core.stages.{name}")

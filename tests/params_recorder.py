"""Run one stage in this directory (a workspace) and print every params key it read, as JSON on the last line.

    python tests/params_recorder.py STAGE

Used by tests/test_dvc_edges.py to check each stage's declaration (SPEC.params and SPEC.bookkeeping) against
what the stage really reads. Every attribute read on the loaded Params (and its sections, and the rule settings
in validate.rules) is recorded by its params.yaml key; a section handed over whole (model_dump, iteration, a
copy) is recorded as that section. Reads made while the pipeline's MLflow run logs every param (tracking/
pipeline_run.create_run) are not reads of the stage: they record the params, they do not act on them.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

WHOLE = ("model_dump", "model_dump_json", "__iter__", "model_copy")


def _index(params: BaseModel) -> dict[int, str]:
    """id of every section object -> its params key ('' for the root)."""
    where: dict[int, str] = {}

    def walk(node, key: str) -> None:
        if isinstance(node, BaseModel):
            where[id(node)] = key
            for name, field in type(node).model_fields.items():
                walk(node.__dict__.get(name), f"{key}.{field.alias or name}".lstrip("."))
        elif isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, BaseModel):
                    walk(v, f"{key}.{k}")

    walk(params, "")
    return where


def _logging_params() -> bool:
    from bigmodel_core.tracking.pipeline_run import create_run

    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code is create_run.__code__:
            return True
        frame = frame.f_back
    return False


@contextmanager
def recording(params: BaseModel):
    where = _index(params)
    read: set[str] = set()
    saved = {name: BaseModel.__dict__[name] for name in WHOLE}

    def getattribute(self, name):
        value = object.__getattribute__(self, name)
        key = where.get(id(self))
        fields = type(self).model_fields
        if key is not None and name in fields and not _logging_params():
            alias = fields[name].alias or name
            sections = isinstance(value, BaseModel) or (
                isinstance(value, dict) and any(isinstance(v, BaseModel) for v in value.values())
            )
            if not sections:  # a section is recorded by what is read inside it
                read.add(f"{key}.{alias}".lstrip("."))
        return value

    def whole(method):
        def wrapper(self, *args, **kwargs):
            key = where.get(id(self))
            if key is not None and not _logging_params():
                read.add(key or "<everything>")
            return method(self, *args, **kwargs)

        return wrapper

    BaseModel.__getattribute__ = getattribute  # type: ignore[method-assign]
    for name in WHOLE:
        setattr(BaseModel, name, whole(saved[name]))
    try:
        yield read
    finally:
        del BaseModel.__getattribute__
        for name, method in saved.items():
            setattr(BaseModel, name, method)


def main(stage: str) -> None:
    from bigmodel_core import stages
    from bigmodel_core.config import load_params
    from bigmodel_core.paths import Paths

    module = stages.get(stage)
    params = load_params(Path("params.yaml"))
    with recording(params) as read:
        module.run(params, Paths(Path.cwd()))
    print(json.dumps(sorted(read)))


if __name__ == "__main__":
    main(sys.argv[1])

"""What every params section shares: unknown keys are errors, values are frozen."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

DEFAULT_PARAMS = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def refuse_key(message: str, allow_null: bool = False):
    """A before-validator that refuses any value given for its key with `message` (the key's path is the error's
    location): how a per-kind or per-rule class declares the keys that belong to another kind or rule. allow_null:
    an explicit null (the key's "not set") passes."""

    def refuse(value):
        if value is None and allow_null:
            return value
        raise ValueError(message)

    return refuse

"""JSON Lines sources: one object a line; a line that is not one is named with its number."""

from __future__ import annotations

import json

import pandas as pd

from bigmodel_core.config import Source
from bigmodel_core.data.formats.files import decode, file_bytes
from bigmodel_core.errors import DataError


def _kind(v) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "text"
    return "list" if isinstance(v, list) else "object"


def read_jsonl(path: str, src: Source, shown: str) -> pd.DataFrame:
    records = []
    text = decode(file_bytes(path, src, shown), src, shown)
    label_kinds: dict[str, int] = {}
    # split on newlines only: U+2028 and friends are legal inside JSON strings
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{shown}: line {n} is not valid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{shown}: line {n} is not a JSON object (it is {_kind(obj)}; one object per line)")
        for col in src.text:
            v = obj.get(col)
            if v is not None and not isinstance(v, str):
                raise DataError(
                    f"{shown}: line {n}: column {col!r} holds {_kind(v)} {json.dumps(v)[:40]}, not text "
                    f"(source {src.name!r})"
                )
        v = obj.get(src.label)
        if v is not None:
            kind = _kind(v)
            if kind in ("list", "object"):
                raise DataError(f"{shown}: line {n}: label column {src.label!r} holds {kind}, not a label")
            label_kinds.setdefault(kind, n)
            if len(label_kinds) > 1:
                (k1, l1), (k2, l2) = list(label_kinds.items())[:2]
                raise DataError(
                    f"{shown}: label column {src.label!r} mixes types: {k1} (line {l1}) and {k2} "
                    f"(line {l2}); use one type for every label (source {src.name!r})"
                )
        records.append(obj)
    if not records:
        raise DataError(f"{shown}: file is empty (source {src.name!r})")
    return pd.DataFrame.from_records(records)

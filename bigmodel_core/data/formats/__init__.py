"""Readers: one module per source format, each returning raw frames with provenance.

Every reader returns the columns of the `raw` schema. Errors name the file (and the column or
row) and the rule broken, so the user can fix the input without reading a traceback. iter_source picks
the reader by `format`; a new format is one more module and one more entry there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from bigmodel_core.config import Source
from bigmodel_core.data.formats.delimited import read_delimited
from bigmodel_core.data.formats.files import (
    SPLIT_FOLDERS,
    display_name,
    resolve_paths,
    row_id,
    shown_name,
    table_to_raw,
)
from bigmodel_core.data.formats.folder import read_folder
from bigmodel_core.data.formats.jsonl import read_jsonl
from bigmodel_core.data.formats.parquet import read_parquet
from bigmodel_core.errors import DataError

__all__ = ["SPLIT_FOLDERS", "display_name", "iter_source", "read_source", "resolve_paths", "row_id", "shown_name"]


def read_source(src: Source, base: Path) -> pd.DataFrame:
    """Read every file of one source into the raw layout."""
    return pd.concat(list(iter_source(src, base)), ignore_index=True)


def iter_source(src: Source, base: Path) -> Iterator[pd.DataFrame]:
    """The raw rows of one source, one file at a time (so ingest holds one file, not the corpus)."""
    if src.format == "demo":
        from bigmodel_core.data import demo

        if src.path != "builtin:demo":
            raise DataError(f"data.sources[{src.name}].path: format 'demo' needs path 'builtin:demo', got {src.path!r}")
        df = demo.generate(rows=src.rows, seed=src.seed).drop(columns=["dirt"])
        yield table_to_raw(df, src.model_copy(update={"text": ["text"], "label": "label"}), "builtin:demo")
        return
    for path in resolve_paths(src, base):
        name, shown = display_name(path, base), shown_name(path, src, base)
        if src.format in ("csv", "tsv"):
            yield table_to_raw(read_delimited(path, src, shown), src, name, shown)
        elif src.format == "jsonl":
            yield table_to_raw(read_jsonl(path, src, shown), src, name, shown)
        elif src.format == "parquet":
            first = 1
            for part in read_parquet(path, src, shown):
                yield table_to_raw(part, src, name, shown, first_row=first)
                first += len(part)
        elif src.format == "folder":
            yield read_folder(path, src, name, shown)

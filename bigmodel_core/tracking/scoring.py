"""Texts in, predictions out, outside training: the checks every text must pass before it is
scored (served or from a file) and batch scoring of a table file.

    bigmodel predict --input texts.csv --output scored.parquet

No mlflow here: the model is anything with `predict(DataFrame with a 'text' column) -> DataFrame`
(the pyfunc in tracking/ is one), so the same checks run in the server, in the pyfunc and here.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from bigmodel_core.errors import DataError

#: Table formats for `bigmodel predict --input/--output`, by file extension (a compression suffix may follow).
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")


def _kind(value: Any) -> str:
    """How a non-string value is named in an error message."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return f"a boolean ({bool(value)})"
    if isinstance(value, numbers.Number):
        return f"a number ({value})"
    return f"a {type(value).__name__}"


_SURROGATE = re.compile("[\ud800-\udfff]")


def bad_text(texts: Sequence[Any], max_chars: int | None = None) -> tuple[int, str] | None:
    """(row, reason) of the first value that cannot be scored, or None: every value must be a
    string of Unicode characters (no lone surrogate, which JSON's \\ud800 escapes can give) without NUL
    characters (and, when given, at most max_chars long)."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            return i, f"is {_kind(t)}; every text must be a string"
        if "\x00" in t:
            return i, "contains a NUL character (\\u0000); texts must be plain text"
        surrogate = _SURROGATE.search(t)
        if surrogate:
            return i, (
                f"contains a lone surrogate (U+{ord(surrogate.group()):04X}) at character {surrogate.start() + 1}, "
                "which is not a character; texts must be valid Unicode (in JSON, a \\ud8xx escape must be "
                "followed by its \\udcxx pair)"
            )
        if max_chars is not None and len(t) > max_chars:
            return i, f"is {len(t):,} characters long, at most {max_chars:,} are accepted"
    return None


def text_problem(
    texts: Sequence[Any],
    where: str = "text",
    *,
    allow_empty: bool = True,
    max_rows: int | None = None,
    max_chars: int | None = None,
) -> str | None:
    """Why `texts` cannot be scored, or None; rows are counted from 0, as in a JSON list.

    The limits are the server's: a request is one batch, so they bound the work and the memory
    one request can ask for.
    """
    n = len(texts)
    if n == 0 and not allow_empty:
        return f"{where}: no texts to classify (the list is empty)"
    if max_rows is not None and n > max_rows:
        return f"{where}: {n:,} texts in one request, at most {max_rows:,} are accepted; split it into smaller requests"
    bad = bad_text(texts, max_chars)
    return f"{where}[{bad[0]}] {bad[1]}" if bad else None


# --------------------------------------------------------------------------- files


def file_format(path: Path, role: str) -> str:
    """parquet, csv or jsonl from the extension (`scored.csv.gz` is csv); an unknown one is an error."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise DataError(
            f"{path}: unknown {role} format {ext or '(no extension)'!r}; use one of {known}"
            f" (optionally followed by {', '.join(COMPRESSIONS)} for csv/jsonl)"
        )
    return FORMATS[ext]


def read_texts(path: Path) -> pd.DataFrame:
    """The whole input table; its `text` column must hold a string in every row."""
    fmt = file_format(path, "input")
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        elif fmt == "csv":
            df = _read_csv(path)
        else:
            df = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header with a 'text' column)") from None
    except Exception as e:  # pyarrow, csv and json parsers each raise their own kinds
        raise DataError(
            f"{path}: cannot read it as {fmt}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    if "text" not in df.columns:
        cols = ", ".join(map(str, df.columns)) or "none"
        raise DataError(f"{path}: no 'text' column (columns: {cols})")
    bad = bad_text(df["text"].tolist())
    if bad:  # rows of a file are counted from 1 (data rows, the header not counted)
        raise DataError(f"{path}: row {bad[0] + 1}, column 'text' {bad[1]}")
    return df.reset_index(drop=True)


def _read_csv(path: Path) -> pd.DataFrame:
    """The `text` column exactly as written (an empty cell is "", "NA" is the text NA); the other
    columns with pandas' usual type inference (so an id column stays a number)."""
    header = pd.read_csv(path, nrows=0).columns
    if "text" not in header:
        return pd.read_csv(path)
    text = pd.read_csv(path, usecols=["text"], dtype=str, keep_default_na=False, na_values=[])
    if len(header) == 1:
        return text
    rest = pd.read_csv(path, usecols=lambda c: c != "text")
    return pd.concat([rest, text], axis=1)[list(header)]


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write by extension, atomically: a failure leaves no file (and an older file untouched)."""
    from bigmodel_core.io import atomic_path

    fmt = file_format(path, "output")
    suffix = path.suffix.lower()[1:] if path.suffix.lower() in COMPRESSIONS else None
    codecs: dict[str, Literal["zstd", "bz2", "gzip", "xz"]] = {"zst": "zstd", "bz2": "bz2", "gz": "gzip", "xz": "xz"}
    compression = codecs.get(suffix or "")
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        elif fmt == "csv":
            df.to_csv(tmp, index=False, compression=compression)
        else:
            df.to_json(
                tmp, orient="records", lines=True, force_ascii=False, compression=compression, double_precision=15
            )  # pandas' default keeps 10 digits


class _Progress:
    """tqdm when it is installed, else a line on stderr every tenth of the way (only on a terminal)."""

    def __init__(self, total: int, desc: str) -> None:
        try:
            from tqdm import tqdm

            self._bar: tqdm[Any] | None = tqdm(total=total, desc=desc, unit="rows", disable=None, file=sys.stderr)
        except ImportError:
            self._bar = None
            self.total, self.done, self.desc, self._next = total, 0, desc, 0.1
            self._on = sys.stderr.isatty()

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)
            return
        self.done += n
        if self._on and self.total and self.done / self.total >= self._next:
            print(f"{self.desc}: {self.done:,}/{self.total:,} rows", file=sys.stderr, flush=True)
            self._next += 0.1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def score_file(
    predict: Callable[[pd.DataFrame], pd.DataFrame],
    input_path: Path,
    output_path: Path,
    batch_size: int = 256,
    refuse: Callable[[list], tuple[int, str] | None] | None = None,
) -> dict:
    """Score every row of input_path in batches and write input columns + predictions to output_path.

    The output keeps the input's columns (the text included) and adds the model's (label, prob_*);
    an input column with the same name as a model column is kept as `<name>_input`. refuse(texts): (row, why)
    of the first text the model does not score (its input rules), checked over the whole file before any scoring.
    """
    file_format(output_path, "output")  # an unknown output extension fails before any work
    started = time.perf_counter()
    df = read_texts(input_path)
    refused = refuse(df["text"].tolist()) if refuse is not None else None
    if refused:
        raise DataError(f"{input_path}: row {refused[0] + 1}, column 'text' {refused[1]}")
    parts = []
    bar = _Progress(len(df), f"scoring {input_path.name}")
    try:
        for start in range(0, len(df), batch_size):
            batch = df.iloc[start : start + batch_size]
            out = predict(pd.DataFrame({"text": batch["text"].tolist()}))
            if len(out) != len(batch):
                raise DataError(f"{input_path}: the model returned {len(out)} rows for a batch of {len(batch)}")
            parts.append(out)
            bar.update(len(batch))
    finally:
        bar.close()
    if parts:
        scored = pd.concat(parts, ignore_index=True)
    else:  # an input with a header and no rows gives an output with a header and no rows
        scored = predict(pd.DataFrame({"text": pd.Series([], dtype=object)}))
    renamed = {c: f"{c}_input" for c in df.columns if c in scored.columns}
    result = pd.concat([df.rename(columns=renamed), scored.reset_index(drop=True)], axis=1)
    write_table(result, output_path)
    return {"rows": len(df), "renamed": renamed, "seconds": time.perf_counter() - started}

"""CSV and TSV sources: the dialect, the header and every row checked, errors naming file, line and column."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Literal

import pandas as pd

from bigmodel_core.config import Source
from bigmodel_core.data.formats.files import decode, file_bytes
from bigmodel_core.errors import DataError


def read_delimited(path: str, src: Source, shown: str) -> pd.DataFrame:
    data = file_bytes(path, src, shown)
    if not data.strip():
        raise DataError(f"{shown}: file is empty (source {src.name!r})")
    text = decode(data, src, shown)
    dialect = _Dialect(src)
    kwargs: dict = {"dtype": str, "keep_default_na": False, "na_values": [], "sep": dialect.sep}
    if src.format == "tsv":
        kwargs.update(quoting=csv.QUOTE_NONE)
    if src.columns is not None:
        kwargs.update(header=None, names=src.columns)
    else:
        _check_header(text, dialect, src, shown)
    try:
        df = pd.read_csv(io.StringIO(text), **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{shown}: file is empty (source {src.name!r})") from None
    except pd.errors.ParserError as e:
        problem = _first_problem(text, dialect, _expected_fields(text, dialect, src))
        raise DataError(
            f"{shown}: " + (problem or f"cannot parse as {src.format}: {e}") + f" (source {src.name!r})"
        ) from None
    _check_table(df, text, dialect, src, shown)
    return df


class _Dialect:
    """How a csv/tsv source splits fields, for pandas and for Python's csv module alike."""

    def __init__(self, src: Source) -> None:
        self.sep = "\t" if src.format == "tsv" else (src.delimiter or ",")
        self.quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if src.format == "tsv" else csv.QUOTE_MINIMAL  # csv.QUOTE_*

    def reader(self, text: str):
        return csv.reader(io.StringIO(text), delimiter=self.sep, quoting=self.quoting, strict=True)


def _expected_fields(text: str, dialect: _Dialect, src: Source) -> int:
    if src.columns is not None:
        return len(src.columns)
    try:
        return len(next(dialect.reader(text)))
    except (StopIteration, csv.Error):
        return 0


def _rows_with_lines(text: str, dialect: _Dialect) -> Iterator[tuple[int, list[str]]]:
    """(first line of the row, its fields) for every non-blank row; csv.Error carries on to the caller."""
    reader = dialect.reader(text)
    line = 1
    for fields in reader:
        if fields:
            yield line, fields
        line = reader.line_num + 1


def _first_problem(text: str, dialect: _Dialect, expected: int) -> str | None:
    """The first row that breaks quoting or has the wrong number of fields, said in a line."""
    start = 1
    reader = dialect.reader(text)
    try:
        for fields in reader:
            if fields and expected and len(fields) != expected:
                hint = "an unquoted delimiter inside the text?" if len(fields) > expected else "a line cut short?"
                return f"line {start} has {len(fields)} field(s) where the first row has {expected}: {hint}"
            start = reader.line_num + 1
    except csv.Error as e:
        if "end of data" in str(e) or "EOF" in str(e):
            return f"line {start}: a quoted field opened here is never closed: an unbalanced quote"
        return (
            f"line {start}: a quoted field opened here closes inside a field at line {reader.line_num} "
            f"({e}): an unbalanced quote swallowed the lines between"
        )
    return None


def _check_header(text: str, dialect: _Dialect, src: Source, shown: str) -> None:
    try:
        names = next(dialect.reader(text))
    except (StopIteration, csv.Error):
        return  # pandas reports these
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(
                f"{shown}: the header names column {name!r} twice (columns {seen[name]} and {i}; source {src.name!r})"
            )
        seen[name] = i
    needed = [*src.text, src.label]
    if len(names) == 1 and names[0] not in needed:
        for other in (";", "\t", "|", ","):
            if other != dialect.sep and other in names[0]:
                how = "format: tsv" if other == "\t" else f"delimiter: {other!r}"
                raise DataError(
                    f"{shown}: the header is one column, {names[0][:80]!r}: the file looks "
                    f"{other!r}-separated; set {how} on source {src.name!r}"
                )


def _check_table(df: pd.DataFrame, text: str, dialect: _Dialect, src: Source, shown: str) -> None:
    """What pandas reads without complaint but is broken: short rows (missing fields read as NaN, while an
    empty field reads as ''), quotes that swallowed lines, and the header repeated inside the data."""
    expected = len(df.columns)
    # a row cut short reads its missing trailing fields as '' (like empty ones): only then is the slow check run
    maybe_short = bool((df.iloc[:, -1].fillna("") == "").any())
    multiline = any(df[c].str.contains("\n", regex=False, na=False).any() for c in df.columns)
    if maybe_short or (multiline and dialect.quoting != csv.QUOTE_NONE):
        problem = _first_problem(text, dialect, expected)
        if problem:
            raise DataError(f"{shown}: {problem} (source {src.name!r})")
    if src.columns is None:
        header = [str(c) for c in df.columns]
        repeated = (df.astype(str) == header).all(axis=1)
        if repeated.any():
            row = int(repeated.to_numpy().argmax())
            line = next(ln for i, (ln, _) in enumerate(_rows_with_lines(text, dialect)) if i == row + 1)
            raise DataError(
                f"{shown}: line {line} repeats the header row (were files concatenated?; source {src.name!r})"
            )

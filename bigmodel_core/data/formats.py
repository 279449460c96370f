"""Readers: one function per source format, each returning a raw frame with provenance.

Every reader returns the columns of the `raw` schema. Errors name the file (and the column or
row) and the rule broken, so the user can fix the input without reading a traceback.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Literal

import pandas as pd

from bigmodel_core.config import Source
from bigmodel_core.errors import DataError

#: folder names that fix the split of the files below them (a dataset's own validation folder: val/valid/validation)
SPLIT_FOLDERS = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}


def row_id(source: str, file: str, row: int) -> str:
    return hashlib.sha1(f"{source}\0{file}\0{row}".encode()).hexdigest()[:16]


def resolve_paths(src: Source, base: Path) -> list[str]:
    """Expand the source path (glob allowed) into a sorted list of files; error if nothing matches."""
    where = f"data.sources[{src.name}].path"
    if "://" in src.path:
        import fsspec

        fs, _, paths = fsspec.get_fs_token_paths(src.path)
        paths = sorted(p for p in paths if fs.isfile(p))
        if not paths:
            raise DataError(f"{where}: no file matches {src.path!r}")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        return [p if "://" in p else f"{protocol}://{p}" for p in paths]
    pattern = src.path if Path(src.path).is_absolute() else str(base / src.path)
    if glob.has_magic(pattern):
        paths = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file() or src.format == "folder")
    else:
        paths = [pattern] if Path(pattern).exists() else []
    if not paths:
        raise DataError(f"{where}: no file matches {src.path!r} (looked for {pattern})")
    return paths


def display_name(path: str, base: Path) -> str:
    """How a file is named in row ids and reports: relative to the workspace, so that ids (and
    everything seeded from them) do not change when the checkout moves. URLs stay as they are."""
    if "://" in path:
        return path
    return os.path.relpath(path, base)


def shown_name(path: str, src: Source, base: Path) -> str:
    """How errors name a file: the way params.yaml names it (relative to the workspace when the source's
    path is, as written otherwise)."""
    if "://" in path or Path(src.path).is_absolute():
        return path
    return os.path.relpath(path, base)


def _open_bytes(path: str) -> bytes:
    if "://" in path:
        import fsspec

        with fsspec.open(path, "rb") as f:
            return f.read()
    return Path(path).read_bytes()


def _label_str(v) -> str | None:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # a numeric column with gaps reads as float: 1.0 means label "1"
    v = str(v).strip()
    return v or None


def _table_to_raw(
    df: pd.DataFrame, src: Source, file: str, shown: str | None = None, first_row: int = 1
) -> pd.DataFrame:
    """`file` goes into row ids and provenance; errors name the file as `shown` (default: `file`); df's first
    row is row `first_row` of the file."""
    shown = shown or file
    if df.empty:
        raise DataError(f"{shown}: file has no data rows (source {src.name!r})")
    needed = list(dict.fromkeys([*src.text, src.label]))
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(
            f"{shown}: column {missing[0]!r} not found "
            f"(source {src.name!r}; columns are {', '.join(map(str, df.columns))})"
        )
    parts = [df[c].astype("object").where(df[c].notna(), None) for c in src.text]
    if len(parts) == 1:
        text = parts[0].map(lambda v: None if v is None else str(v))
    else:
        joined = []
        for values in zip(*parts, strict=True):
            present = [str(v) for v in values if v is not None and str(v) != ""]
            joined.append(src.text_separator.join(present) if present else None)
        text = pd.Series(joined, index=df.index, dtype="object")
    label = df[src.label].astype("object").map(_label_str)
    if src.label_map is not None:
        # Values missing from the map are kept as they are: validate quarantines them as unknown labels.
        label_map = src.label_map
        label = label.map(lambda v: label_map.get(v, v) if v is not None else None)
    rows = pd.RangeIndex(first_row, first_row + len(df))
    out = pd.DataFrame(
        {
            "row_id": [row_id(src.name, file, r) for r in rows],
            "source": src.name,
            "source_file": file,
            "source_row": pd.Series(rows, dtype="int64"),
            "text": pd.Series(text.to_numpy(), dtype="str"),
            "label": pd.Series(label.to_numpy(), dtype="str"),
            "fixed_split": pd.Series([src.split] * len(df), dtype="str"),
        }
    )
    return out


def _read_delimited(path: str, src: Source, shown: str) -> pd.DataFrame:
    data = _file_bytes(path, src, shown)
    if not data.strip():
        raise DataError(f"{shown}: file is empty (source {src.name!r})")
    text = _decode(data, src, shown)
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


def _file_bytes(path: str, src: Source, shown: str) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz; lines longer than max_line_bytes refused."""
    data = _open_bytes(path)
    if path.endswith(".gz"):
        import gzip
        import zlib

        try:
            data = gzip.decompress(data)
        except gzip.BadGzipFile:
            raise DataError(
                f"{shown}: not gzip data (the name ends in .gz, but the file does not start with "
                f"gzip's signature; source {src.name!r})"
            ) from None
        except (EOFError, zlib.error) as e:
            raise DataError(f"{shown}: damaged or truncated gzip data ({e}; source {src.name!r})") from None
    _check_line_lengths(data, src, shown)
    return data


def _check_line_lengths(data: bytes, src: Source, shown: str) -> None:
    limit = src.max_line_bytes
    if len(data) <= limit:
        return
    pos, line = 0, 1
    while True:
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        if end - pos > limit:
            raise DataError(
                f"{shown}: line {line} is {end - pos:,} bytes long, more than max_line_bytes "
                f"({limit:,}) of source {src.name!r}: a file without line breaks, or a quote left "
                "open? (raise max_line_bytes if the line is real)"
            )
        if nl < 0:
            return
        pos, line = nl + 1, line + 1


def _line_of(data: bytes | str, offset: int) -> int:
    if isinstance(data, bytes):
        return data.count(b"\n", 0, offset) + 1
    return data.count("\n", 0, offset) + 1


def _decode(data: bytes, src: Source, shown: str) -> str:
    """Bytes to text in the source's encoding; UTF-16 without saying so, NUL bytes and undecodable bytes are
    refused with the byte offset and line."""
    hint = "if the file has another encoding, set encoding: on the source (latin-1, cp1252, utf-16, ...)"
    if src.encoding == "utf-8":
        if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (
            len(data) >= 4 and data[:200].count(0) * 3 >= min(len(data), 200)
        ):
            raise DataError(
                f"{shown}: the file is UTF-16, not UTF-8; set encoding: utf-16 on source {src.name!r} "
                "(or save it as UTF-8)"
            )
        nul = data.find(b"\x00")
        if nul >= 0:
            raise DataError(
                f"{shown}: NUL byte at byte {nul} (line {_line_of(data, nul)}): a binary or damaged "
                f"file (source {src.name!r})"
            )
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]  # a UTF-8 byte-order mark is not part of the first column's name
    try:
        text = data.decode(src.encoding)
    except UnicodeDecodeError as e:
        name = "UTF-8" if src.encoding == "utf-8" else src.encoding
        where = f"byte {e.start} (line {_line_of(data, e.start)}"
        if src.undecodable == "fail":
            raise DataError(
                f"{shown}: not {name} text at {where}; source {src.name!r}); {hint}; or set undecodable: "
                "quarantine to set those rows aside"
            ) from None
        text = data.decode(src.encoding, errors="replace")  # U+FFFD marks each bad sequence: validate's rule
        bad = text.count("\ufffd") - data.decode(src.encoding, errors="ignore").count("\ufffd")
        print(
            f"warning: {shown}: {bad} byte sequence(s) that are not {name}, the first at {where}); replaced by "
            "U+FFFD, their rows go to quarantine (rule undecodable)",
            flush=True,
        )
    if src.encoding != "utf-8":
        text = text.lstrip("\ufeff")
        nul = text.find("\x00")
        if nul >= 0:
            raise DataError(
                f"{shown}: NUL character at line {_line_of(text, nul)}: a binary or damaged file (source {src.name!r})"
            )
    return text


def _kind(v) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "text"
    return "list" if isinstance(v, list) else "object"


def _read_jsonl(path: str, src: Source, shown: str) -> pd.DataFrame:
    records = []
    text = _decode(_file_bytes(path, src, shown), src, shown)
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


PARQUET_BATCH_ROWS = 65_536  # rows per batch read from a Parquet source (262,144 took 2.3 GB at 1M rows, this 1.1)


def _read_parquet(path: str, src: Source, shown: str) -> Iterator[pd.DataFrame]:
    """The file's rows in batches (a large file is never held whole); the text columns must be strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def broken(e: Exception) -> DataError:
        return DataError(f"{shown}: cannot read as Parquet: {str(e).replace(path, shown)}")

    try:
        pf = pq.ParquetFile(path if "://" not in path else io.BytesIO(_open_bytes(path)))
        schema = pf.schema_arrow
    except Exception as e:  # pyarrow raises several types for broken files
        raise broken(e) from None
    for col in src.text:
        if col in schema.names:
            t = schema.field(col).type
            value = t.value_type if pa.types.is_dictionary(t) else t
            if not (
                pa.types.is_string(value)
                or pa.types.is_large_string(value)
                or pa.types.is_null(value)
                or getattr(pa.types, "is_string_view", lambda _: False)(value)
            ):
                raise DataError(f"{shown}: column {col!r} is {t}, not text (source {src.name!r}); cast it to string")
    if pf.metadata.num_rows == 0:
        yield schema.empty_table().to_pandas()
        return
    from bigmodel_core.io import iter_batches

    batches = iter_batches(pf, PARQUET_BATCH_ROWS)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as e:  # a damaged row group further into the file
            raise broken(e) from None
        yield batch.to_pandas()


def _folder_members(path: str, src: Source, shown: str) -> Iterator[tuple[str, bytes]]:
    """Yield (relative member path, bytes) for each file of a folder or a .tar.gz, in sorted order."""
    if path.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(
                fileobj=io.BytesIO(_open_bytes(path)) if "://" in path else None, name=None if "://" in path else path
            ) as tar:
                members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
                for m in members:
                    if fnmatch(PurePosixPath(m.name).name, src.file_glob):
                        f = tar.extractfile(m)
                        assert f is not None
                        yield m.name, f.read()
        except (tarfile.TarError, EOFError, OSError) as e:
            first = str(e).splitlines()[0].rstrip(": ") if str(e) else type(e).__name__
            raise DataError(
                f"{shown}: cannot read archive: {first} (a damaged or truncated .tar.gz?; source {src.name!r})"
            ) from None
        return
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{shown}: format 'folder' needs a directory or a .tar.gz archive (source {src.name!r})")
    for p in sorted(root.rglob(src.file_glob)):
        if p.is_file():
            yield p.relative_to(root).as_posix(), p.read_bytes()


def _read_folder(path: str, src: Source, name: str, shown: str) -> pd.DataFrame:
    rows = []
    for member, data in _folder_members(path, src, shown):
        parts = PurePosixPath(member).parts
        if len(parts) < 2:
            continue  # a file at the top has no label folder
        raw_label = parts[-2]
        if src.label_map is not None:
            if raw_label not in src.label_map:
                continue
        elif raw_label in SPLIT_FOLDERS:
            continue
        split = next((SPLIT_FOLDERS[p] for p in reversed(parts[:-2]) if p in SPLIT_FOLDERS), src.split)
        text = _decode(data, src, f"{shown}:{member}")
        rows.append((f"{name}:{member}", text, raw_label, split))
    if not rows:
        raise DataError(f"{shown}: no '{src.file_glob}' files inside label folders (source {src.name!r})")
    files, texts, labels, splits = zip(*rows, strict=True)
    if src.label_map is not None:
        labels = tuple(src.label_map[lab] for lab in labels)
    return pd.DataFrame(
        {
            "row_id": [row_id(src.name, f, 1) for f in files],
            "source": src.name,
            "source_file": list(files),
            "source_row": pd.Series([1] * len(files), dtype="int64"),
            "text": pd.Series(texts, dtype="str"),
            "label": pd.Series(labels, dtype="str"),
            "fixed_split": pd.Series(splits, dtype="str"),
        }
    )


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
        yield _table_to_raw(df, src.model_copy(update={"text": ["text"], "label": "label"}), "builtin:demo")
        return
    for path in resolve_paths(src, base):
        name, shown = display_name(path, base), shown_name(path, src, base)
        if src.format in ("csv", "tsv"):
            yield _table_to_raw(_read_delimited(path, src, shown), src, name, shown)
        elif src.format == "jsonl":
            yield _table_to_raw(_read_jsonl(path, src, shown), src, name, shown)
        elif src.format == "parquet":
            first = 1
            for part in _read_parquet(path, src, shown):
                yield _table_to_raw(part, src, name, shown, first_row=first)
                first += len(part)
        elif src.format == "folder":
            yield _read_folder(path, src, name, shown)

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
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Iterator

import pandas as pd

from bigmodel_core.config import Source
from bigmodel_core.errors import DataError

SPLIT_FOLDERS = {"train", "test"}


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


def _table_to_raw(df: pd.DataFrame, src: Source, file: str, shown: str | None = None) -> pd.DataFrame:
    """`file` goes into row ids and provenance; errors name the file as `shown` (default: `file`)."""
    shown = shown or file
    if df.empty:
        raise DataError(f"{shown}: file has no data rows (source {src.name!r})")
    needed = list(dict.fromkeys([*src.text, src.label]))
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(
            f"{shown}: column {missing[0]!r} not found (source {src.name!r}; columns are {', '.join(map(str, df.columns))})"
        )
    parts = [df[c].astype("object").where(df[c].notna(), None) for c in src.text]
    if len(parts) == 1:
        text = parts[0].map(lambda v: None if v is None else str(v))
    else:
        joined = []
        for values in zip(*parts):
            present = [str(v) for v in values if v is not None and str(v) != ""]
            joined.append(src.text_separator.join(present) if present else None)
        text = pd.Series(joined, index=df.index, dtype="object")
    label = df[src.label].astype("object").map(_label_str)
    if src.label_map is not None:
        # Values missing from the map are kept as they are: validate quarantines them as unknown labels.
        label = label.map(lambda v: src.label_map.get(v, v) if v is not None else None)
    rows = pd.RangeIndex(1, len(df) + 1)
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
    data = _open_bytes(path)
    if not data.strip():
        raise DataError(f"{shown}: file is empty (source {src.name!r})")
    kwargs: dict = {"dtype": str, "keep_default_na": False, "na_values": []}
    if src.format == "tsv":
        kwargs.update(sep="\t", quoting=csv.QUOTE_NONE)
    if src.columns is not None:
        kwargs.update(header=None, names=src.columns)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{shown}: not UTF-8 text at byte {e.start} (source {src.name!r})") from None
    try:
        df = pd.read_csv(io.StringIO(text), **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{shown}: file is empty (source {src.name!r})") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{shown}: cannot parse as {src.format}: {e} (source {src.name!r})") from None
    return df


def _read_jsonl(path: str, src: Source, shown: str) -> pd.DataFrame:
    records = []
    try:
        text = _open_bytes(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{shown}: not UTF-8 text at byte {e.start} (source {src.name!r})") from None
    # split on newlines only: U+2028 and friends are legal inside JSON strings
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{shown}: line {n} is not valid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{shown}: line {n} is not a JSON object")
        records.append(obj)
    if not records:
        raise DataError(f"{shown}: file is empty (source {src.name!r})")
    return pd.DataFrame.from_records(records)


def _read_parquet(path: str, src: Source, shown: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path if "://" not in path else io.BytesIO(_open_bytes(path)))
    except Exception as e:  # pyarrow raises several types for broken files
        raise DataError(f"{shown}: cannot read as Parquet: {e}") from None


def _folder_members(path: str, src: Source, shown: str) -> Iterator[tuple[str, bytes]]:
    """Yield (relative member path, bytes) for each file of a folder or a .tar.gz, in sorted order."""
    if path.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(fileobj=io.BytesIO(_open_bytes(path)) if "://" in path else None, name=None if "://" in path else path) as tar:
                members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
                for m in members:
                    if fnmatch(PurePosixPath(m.name).name, src.file_glob):
                        f = tar.extractfile(m)
                        assert f is not None
                        yield m.name, f.read()
        except tarfile.TarError as e:
            raise DataError(f"{shown}: cannot read archive: {e}") from None
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
        split = next((p for p in reversed(parts[:-2]) if p in SPLIT_FOLDERS), src.split)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{shown}:{member}: not UTF-8 text at byte {e.start}") from None
        rows.append((f"{name}:{member}", text, raw_label, split))
    if not rows:
        raise DataError(f"{shown}: no '{src.file_glob}' files inside label folders (source {src.name!r})")
    files, texts, labels, splits = zip(*rows)
    if src.label_map is not None:
        labels = tuple(src.label_map[l] for l in labels)
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
    if src.format == "demo":
        from bigmodel_core.data import demo

        if src.path != "builtin:demo":
            raise DataError(f"data.sources[{src.name}].path: format 'demo' needs path 'builtin:demo', got {src.path!r}")
        df = demo.generate(rows=src.rows, seed=src.seed).drop(columns=["dirt"])
        return _table_to_raw(df, src.model_copy(update={"text": ["text"], "label": "label"}), "builtin:demo")
    frames = []
    for path in resolve_paths(src, base):
        name, shown = display_name(path, base), shown_name(path, src, base)
        if src.format in ("csv", "tsv"):
            frames.append(_table_to_raw(_read_delimited(path, src, shown), src, name, shown))
        elif src.format == "jsonl":
            frames.append(_table_to_raw(_read_jsonl(path, src, shown), src, name, shown))
        elif src.format == "parquet":
            frames.append(_table_to_raw(_read_parquet(path, src, shown), src, name, shown))
        elif src.format == "folder":
            frames.append(_read_folder(path, src, name, shown))
    return pd.concat(frames, ignore_index=True)

"""What every reader shares: the source's files, their names as errors show them, row ids, bytes read
with limits and decoded as the source says, and the raw layout every reader returns (table_to_raw)."""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path

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


def open_bytes(path: str) -> bytes:
    if "://" in path:
        import fsspec

        with fsspec.open(path, "rb") as f:
            return f.read()
    return Path(path).read_bytes()


def label_str(v) -> str | None:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # a numeric column with gaps reads as float: 1.0 means label "1"
    v = str(v).strip()
    return v or None


def table_to_raw(
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
    label = df[src.label].astype("object").map(label_str)
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


def file_bytes(path: str, src: Source, shown: str) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz; lines longer than max_line_bytes refused."""
    data = open_bytes(path)
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
    check_line_lengths(data, src, shown)
    return data


def check_line_lengths(data: bytes, src: Source, shown: str) -> None:
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


def line_of(data: bytes | str, offset: int) -> int:
    if isinstance(data, bytes):
        return data.count(b"\n", 0, offset) + 1
    return data.count("\n", 0, offset) + 1


def decode(data: bytes, src: Source, shown: str) -> str:
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
                f"{shown}: NUL byte at byte {nul} (line {line_of(data, nul)}): a binary or damaged "
                f"file (source {src.name!r})"
            )
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]  # a UTF-8 byte-order mark is not part of the first column's name
    try:
        text = data.decode(src.encoding)
    except UnicodeDecodeError as e:
        name = "UTF-8" if src.encoding == "utf-8" else src.encoding
        where = f"byte {e.start} (line {line_of(data, e.start)}"
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
                f"{shown}: NUL character at line {line_of(text, nul)}: a binary or damaged file (source {src.name!r})"
            )
    return text

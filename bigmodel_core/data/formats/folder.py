"""Folder sources: one file per row in label folders, as a directory or a tar.gz archive."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import pandas as pd

from bigmodel_core.config import Source
from bigmodel_core.data.formats.files import SPLIT_FOLDERS, decode, open_bytes, row_id
from bigmodel_core.errors import DataError


def _folder_members(path: str, src: Source, shown: str) -> Iterator[tuple[str, bytes]]:
    """Yield (relative member path, bytes) for each file of a folder or a .tar.gz, in sorted order."""
    if path.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(
                fileobj=io.BytesIO(open_bytes(path)) if "://" in path else None, name=None if "://" in path else path
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


def read_folder(path: str, src: Source, name: str, shown: str) -> pd.DataFrame:
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
        text = decode(data, src, f"{shown}:{member}")
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

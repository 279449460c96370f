"""Atomic file output and schema-checked Parquet tables.

Every stage writes through these helpers: a crash or a bad table never leaves a half-written
file behind, and a table that breaks its schema is not written at all.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where a frame is made (so a reader of PARQUET_OPTIONS does not load it)
    import pandas as pd


def _temp_beside(target: Path, make) -> Path:
    """Create a fresh temporary entry next to target with make(path) (which fails if it exists), named
    .<name>.<random>.tmp. Not tempfile.mkstemp/mkdtemp: they create 0600 files and 0700 folders, while these
    are created with 0666/0777 and the kernel applies the umask, as for any file a program writes."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            make(tmp)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(target.parent))


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


@contextlib.contextmanager
def atomic_path(target: str | Path, keep_mode: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to target; on success it is renamed over target with the umask's mode
    (0666 & ~umask), as a remade output should have, whatever mode an older copy had; keep_mode: a target
    that exists keeps its mode (a file of the user's that a command edits, such as params.yaml)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temp_beside(target, _new_file)
    try:
        yield tmp_path
        if keep_mode and target.exists():  # after the writing: a read-only mode must not stop it
            os.chmod(tmp_path, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory (mode 0777 & ~umask); on success it replaces target (old copy removed
    last)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    if old.exists() and not target.exists():
        os.replace(old, target)  # a crash between the two renames below: put the last good copy back
    tmp = _temp_beside(target, lambda path: os.mkdir(path, 0o777))
    try:
        yield tmp
        had_old = target.exists()
        if had_old:
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if had_old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(data: Any, target: str | Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


#: How the stages write Parquet. LZ4 (LZ4_RAW) rather than pyarrow's default Snappy: each stage reads its
#: input again (validate twice), and on the 1M-row benchmark table (850 MiB of text) pyarrow reads LZ4 in
#: 0.61 CPU s against 1.85 s for Snappy and writes it in 3.1 s against 3.0 s, for files 4% larger (607 vs
#: 582 MiB). pyarrow, pandas, DuckDB, Polars and Spark 3.4+ read it.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "lz4"}


def write_table(df: pd.DataFrame, target: str | Path, schema: Any | None = None) -> None:
    """Check df against a pandera schema, then write it as Parquet atomically."""
    if schema is not None:
        df = check_table(df, schema, f"output {shown(target)}")
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False, **PARQUET_OPTIONS)


def shown(path: str | Path) -> str:
    """A workspace file as messages name it: relative to the working directory (the workspace root)
    when it lies inside it, as given otherwise."""
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return str(p)
    return str(p)


def read_table(path: str | Path, schema: Any | None = None) -> pd.DataFrame:
    """Read a Parquet table written by an earlier stage and check it against its schema."""
    import pandas as pd

    from bigmodel_core.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{shown(path)}: input table not found (run the stage that makes it first)")
    df = pd.read_parquet(path)
    if schema is not None:
        df = check_table(df, schema, f"input {shown(path)}")
    return df


def check_table(df: pd.DataFrame, schema: Any, what: str) -> pd.DataFrame:
    import pandera.errors as pe

    from bigmodel_core.errors import DataError

    try:
        return schema.validate(df, lazy=True)
    except pe.SchemaErrors as e:
        cases = e.failure_cases.head(5)
        detail = "; ".join(
            f"column {r.get('column')!s}: {r.get('check')!s} "
            f"(index {r.get('index')!s}, value {r.get('failure_case')!r})"
            for r in cases.to_dict("records")
        )
        raise DataError(f"{what} breaks schema {schema.name}: {detail}") from None


def sha256_file(path: str | Path, into: hashlib._Hash | None = None) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks; with `into`, feed that running hash instead."""
    h = into if into is not None else hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


BATCH_ROWS = 65_536  # rows per record batch when a stage streams a table


def iter_batches(parquet_file, batch_rows: int | None = None):
    """The record batches of a pyarrow ParquetFile, one row group at a time: pyarrow 25's iter_batches over a
    whole file kept the memory of every row group read so far until the end (1.9 GB after 40 row groups of a
    10M-row table), one row group at a time it holds one."""
    for group in range(parquet_file.num_row_groups):
        yield from parquet_file.iter_batches(batch_size=batch_rows or BATCH_ROWS, row_groups=[group])


def iter_frames(path: str | Path, schema: Any | None = None, batch_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """A stage's input table as pandas frames of at most batch_rows rows, each checked against the schema
    (a check that spans rows, like unique ids, holds within a batch; the writing stage checked the whole)."""
    import pyarrow.parquet as pq

    from bigmodel_core.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{shown(path)}: input table not found (run the stage that makes it first)")
    for batch in iter_batches(pq.ParquetFile(path), batch_rows):
        df = batch.to_pandas()
        yield check_table(df, schema, f"input {shown(path)}") if schema is not None else df


class TableWriter:
    """Append schema-checked pandas frames to one Parquet file (use inside atomic_dir, so a failure leaves
    nothing); the Arrow schema comes from the first frame."""

    def __init__(self, target: str | Path, schema: Any | None = None, shown_as: str | None = None):
        self.target, self.schema, self.shown_as = Path(target), schema, shown_as or shown(target)
        self._writer: Any = None  # a pyarrow.parquet.ParquetWriter from the first frame on
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.schema is not None:
            df = check_table(df, self.schema, f"output {self.shown_as}")
        if self._writer is None:
            table = pa.Table.from_pandas(df, preserve_index=False)
            self._writer = pq.ParquetWriter(self.target, table.schema, **PARQUET_OPTIONS)
        else:
            table = pa.Table.from_pandas(df, schema=self._writer.schema, preserve_index=False)
        self._writer.write_table(table)
        self.rows += len(df)

    def close(self, empty_like: pd.DataFrame | None = None) -> None:
        """Finish the file; with no frame written, write empty_like's columns with no rows."""
        if self._writer is None and empty_like is not None:
            self.write(empty_like.iloc[:0])
        if self._writer is not None:
            self._writer.close()

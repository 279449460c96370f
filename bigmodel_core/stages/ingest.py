"""ingest: read every source in data.sources into one raw table with provenance (the reader of data.modality:
modalities/readers.py).

Files are read and written one at a time (a Parquet row group per file), so memory holds one file's rows,
not the corpus; the table appears only when every file has been read (atomic_dir)."""

from __future__ import annotations

from bigmodel_core import modalities
from bigmodel_core.config import Params
from bigmodel_core.errors import DataError
from bigmodel_core.io import TableWriter, atomic_dir, shown, write_json
from bigmodel_core.modalities.readers import READERS
from bigmodel_core.paths import Paths
from bigmodel_core.stages.spec import Out, StageSpec

SPEC = StageSpec(
    inputs=("data/sources",),
    params=("data.sources", "data.modality"),
    outs=(Out("raw"),),
)


def run(params: Params, paths: Paths) -> dict:
    import numpy as np

    modality = modalities.get(params.data.modality)
    read = READERS(modality)
    per_source: dict[str, int] = {}
    files = 0
    ids: list[np.ndarray] = []  # row ids as 64-bit numbers: unique over the whole table, checked at the end
    with atomic_dir(paths.raw) as out:
        writer = TableWriter(out / "rows.parquet", modality.schemas.RAW, shown(paths.raw / "rows.parquet"))
        try:
            for src in params.data.sources:
                per_source[src.name] = 0
                for frame in read(src, paths.root):
                    writer.write(frame)
                    ids.append(np.fromiter((int(x, 16) for x in frame["row_id"]), dtype=np.uint64, count=len(frame)))
                    per_source[src.name] += len(frame)
                    files += int(frame["source_file"].nunique())
        finally:
            writer.close()
        every = np.sort(np.concatenate(ids)) if ids else np.empty(0, dtype=np.uint64)
        repeated = every[1:][every[1:] == every[:-1]]
        if len(repeated):
            raise DataError(
                f"output {shown(paths.raw / 'rows.parquet')} breaks schema raw: row_id "
                f"{int(repeated[0]):016x} is not unique ({len(repeated)} repeated id(s))"
            )
        report = {"rows": writer.rows, "per_source": per_source, "files": files}
        write_json(report, out / "report.json")
    return report

"""ingest: read every source in data.sources into one raw table with provenance."""

from __future__ import annotations

import pandas as pd

from bigmodel_core.config import Params
from bigmodel_core.data import schemas
from bigmodel_core.data.formats import read_source
from bigmodel_core.io import atomic_dir, write_json, write_table
from bigmodel_core.paths import Paths


def run(params: Params, paths: Paths) -> dict:
    frames = [read_source(src, paths.root) for src in params.data.sources]
    raw = pd.concat(frames, ignore_index=True)
    per_source = {src.name: int(len(f)) for src, f in zip(params.data.sources, frames)}
    report = {"rows": int(len(raw)), "per_source": per_source, "files": int(raw["source_file"].nunique())}
    with atomic_dir(paths.raw) as out:
        write_table(raw, out / "rows.parquet", schemas.RAW)
        write_json(report, out / "report.json")
    return report

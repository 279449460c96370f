"""augment: add train-only variants of the rows that the split will put in train."""

from __future__ import annotations

from bigmodel_core.config import Params
from bigmodel_core.data import schemas
from bigmodel_core.data.augment import augment
from bigmodel_core.io import atomic_dir, read_table, write_json, write_table
from bigmodel_core.paths import Paths


def run(params: Params, paths: Paths) -> dict:
    df = read_table(paths.validated / "rows.parquet", schemas.VALIDATED)
    out_df, report = augment(df, params.augment, params.split)
    with atomic_dir(paths.augmented) as out:
        write_table(out_df, out / "rows.parquet", schemas.AUGMENTED)
        write_json(report, out / "report.json")
    return report

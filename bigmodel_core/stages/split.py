"""split: stable hash-bucket split into train / val / test, with leakage checks."""

from __future__ import annotations

from bigmodel_core.config import Params
from bigmodel_core.data import schemas
from bigmodel_core.data import split as splitting
from bigmodel_core.io import atomic_dir, read_table, write_json, write_table
from bigmodel_core.paths import Paths


def run(params: Params, paths: Paths) -> dict:
    df = read_table(paths.augmented / "rows.parquet", schemas.AUGMENTED)
    df = df.copy()
    # Augmented rows inherit their parent's group key, so they land where the parent does (train).
    df["split"] = splitting.assign_frame(df, params.split)
    counts = splitting.check_split(df)
    report = {"rows": {s: int((df["split"] == s).sum()) for s in schemas.SPLITS}, "per_class": counts,
              "augmented_in_train": int(df["is_augmented"].sum())}
    with atomic_dir(paths.split) as out:
        for s in schemas.SPLITS:
            write_table(df[df["split"] == s].reset_index(drop=True), out / f"{s}.parquet", schemas.SPLIT)
        write_json(report, out / "report.json")
    return report

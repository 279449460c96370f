"""split: stable hash-bucket split into train / val / test, with leakage checks.

Streams the augmented table in record batches into the three split files; the invariants (no augmented row
outside train, no text in two splits, every class in every split) are checked over the whole table."""

from __future__ import annotations

from bigmodel_core import modalities
from bigmodel_core.config import Params
from bigmodel_core.data import split as splitting
from bigmodel_core.data.schemas import SPLITS
from bigmodel_core.io import TableWriter, atomic_dir, iter_frames, shown, write_json
from bigmodel_core.paths import Paths
from bigmodel_core.stages.spec import Out, StageSpec

SPEC = StageSpec(
    inputs=("augmented",),
    params=("split", "data.modality"),
    outs=(Out("split"),),
)


def run(params: Params, paths: Paths) -> dict:
    schemas = modalities.get(params.data.modality).schemas  # the tables' content columns are the modality's
    check = splitting.SplitCheck()
    augmented = 0
    rows = paths.augmented / "rows.parquet"
    # validation rows of the data's own (a source with split: val) mean none are carved from train
    carve_val = not splitting.has_own_val(rows) if rows.exists() else True
    with atomic_dir(paths.split) as out:
        writers = {
            s: TableWriter(out / f"{s}.parquet", schemas.SPLIT, shown(paths.split / f"{s}.parquet")) for s in SPLITS
        }
        last = None
        try:
            for df in iter_frames(rows, schemas.AUGMENTED):
                # Augmented rows inherit their parent's group key, so they land where the parent does (train).
                df = df.copy()
                df["split"] = splitting.assign_frame(df, params.split, carve_val)
                check.add(df)
                augmented += int(df["is_augmented"].sum())
                for s in SPLITS:
                    part = df[df["split"] == s].reset_index(drop=True)
                    if len(part):
                        writers[s].write(part)
                last = df
            counts = check.result()
        finally:
            for w in writers.values():
                w.close(empty_like=last)
        report = {
            "rows": {s: writers[s].rows for s in SPLITS},
            "per_class": counts,
            "augmented_in_train": augmented,
            "validation": "carved from train (val_fraction)" if carve_val else "the data's own (split: val)",
        }
        write_json(report, out / "report.json")
    return report

"""augment: add train-only variants of the rows that the split will put in train (the augmentation of
data.modality: modalities/augmenters.py).

Streams the validated table in record batches: a batch's variants follow its originals."""

from __future__ import annotations

from bigmodel_core import modalities
from bigmodel_core.config import Params
from bigmodel_core.data.split import has_own_val
from bigmodel_core.io import TableWriter, atomic_dir, iter_frames, shown, write_json
from bigmodel_core.modalities.augmenters import AUGMENTERS
from bigmodel_core.paths import Paths
from bigmodel_core.stages.spec import Out, StageSpec

SPEC = StageSpec(
    inputs=("validated",),
    params=("augment", "split", "data.modality"),
    outs=(Out("augmented"),),
)


def run(params: Params, paths: Paths) -> dict:
    modality = modalities.get(params.data.modality)
    augment, schemas = AUGMENTERS(modality), modality.schemas
    report = {"originals": 0, "variants": 0, "train_parents": 0}
    carve_val = not has_own_val(paths.validated / "rows.parquet")
    with atomic_dir(paths.augmented) as out:
        writer = TableWriter(out / "rows.parquet", schemas.AUGMENTED, shown(paths.augmented / "rows.parquet"))
        last = None
        try:
            for df in iter_frames(paths.validated / "rows.parquet", schemas.VALIDATED):
                last, part = augment(df, params.augment, params.split, carve_val)
                writer.write(last)
                for k in report:
                    report[k] += int(part.get(k, 0))
        finally:
            writer.close(empty_like=last)
        write_json(report, out / "report.json")
    return report

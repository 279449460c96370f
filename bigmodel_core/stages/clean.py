"""clean: repair and normalise the rows' content (texts: entities, tags, whitespace, length); rows are fixed,
never dropped.

Streams the raw table in record batches: each batch is checked against the raw schema, its content cleaned by
the cleaner of data.modality (modalities/cleaners.py; text: cleaning.clean_array, column-wise) and written;
memory holds one batch, not the corpus."""

from __future__ import annotations

from bigmodel_core import io, modalities
from bigmodel_core.config import Params
from bigmodel_core.errors import DataError
from bigmodel_core.io import atomic_dir, check_table, shown, write_json
from bigmodel_core.modalities.cleaners import CLEANERS
from bigmodel_core.modalities.cleaners import longer_than as _longer_than  # noqa: F401  (text's count, as it was)
from bigmodel_core.paths import Paths
from bigmodel_core.stages.spec import Out, StageSpec

SPEC = StageSpec(
    inputs=("raw",),
    params=("clean", "data.modality"),
    outs=(Out("clean"),),
)


def run(params: Params, paths: Paths) -> dict:
    import pyarrow.parquet as pq

    modality = modalities.get(params.data.modality)
    cleaner = CLEANERS(modality)
    source = paths.raw / "rows.parquet"
    if not source.exists():
        raise DataError(f"{shown(source)}: input table not found (run the stage that makes it first)")
    reader = pq.ParquetFile(source)
    schema = reader.schema_arrow
    missing = [c for c in modality.content.raw if schema.get_field_index(c) < 0]
    if missing:
        raise DataError(f"input {shown(source)} breaks schema raw: column {missing[0]} is missing")
    rows = 0
    counts = dict.fromkeys(cleaner.counters, 0)
    with atomic_dir(paths.clean) as out:
        with pq.ParquetWriter(out / "rows.parquet", schema, **io.PARQUET_OPTIONS) as writer:
            for batch in io.iter_batches(reader):
                check_table(batch.to_pandas(), modality.schemas.RAW, f"input {shown(source)}")
                cleaned, got = cleaner.clean(batch, params)
                for k, v in got.items():
                    counts[k] += v
                rows += batch.num_rows
                writer.write_batch(cleaned)
        report = {"rows": rows, **counts}
        write_json(report, out / "report.json")
    return report

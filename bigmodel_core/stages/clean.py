"""clean: repair and normalise texts (entities, tags, whitespace, length); rows are fixed, never dropped.

Streams the raw table in record batches: each batch is checked against the raw schema, its text column
cleaned column-wise (cleaning.clean_array) and written; memory holds one batch, not the corpus."""

from __future__ import annotations

from bigmodel_core import io
from bigmodel_core.config import Params
from bigmodel_core.data import schemas
from bigmodel_core.data.cleaning import clean_array
from bigmodel_core.errors import DataError
from bigmodel_core.io import atomic_dir, check_table, shown, write_json
from bigmodel_core.paths import Paths
from bigmodel_core.stages.spec import Out, StageSpec

SPEC = StageSpec(
    inputs=("raw",),
    params=("clean",),
    outs=(Out("clean"),),
)


def run(params: Params, paths: Paths) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = paths.raw / "rows.parquet"
    if not source.exists():
        raise DataError(f"{shown(source)}: input table not found (run the stage that makes it first)")
    reader = pq.ParquetFile(source)
    schema = reader.schema_arrow
    text_at = schema.get_field_index("text")
    if text_at < 0:
        raise DataError(f"input {shown(source)} breaks schema raw: column text is missing")
    rows = changed = truncated = 0
    with atomic_dir(paths.clean) as out:
        with pq.ParquetWriter(out / "rows.parquet", schema, **io.PARQUET_OPTIONS) as writer:
            for batch in io.iter_batches(reader):
                check_table(batch.to_pandas(), schemas.RAW, f"input {shown(source)}")
                before = batch.column(text_at)
                after = clean_array(before, params.clean).cast(schema.field(text_at).type)
                changed += int(pc.sum(pc.fill_null(pc.not_equal(before, after), False)).as_py() or 0)
                truncated += _longer_than(before, params.clean.max_chars)
                rows += batch.num_rows
                writer.write_batch(
                    pa.RecordBatch.from_arrays(
                        [after if i == text_at else batch.column(i) for i in range(batch.num_columns)], schema=schema
                    )
                )
        report = {"rows": rows, "changed": changed, "truncated_to_max_chars": truncated}
        write_json(report, out / "report.json")
    return report


def _longer_than(texts, max_chars: int) -> int:
    """How many texts have more than max_chars characters. A character is one byte or more, so only the
    texts of more than max_chars bytes (their offsets say so) are counted in characters."""
    import pyarrow as pa
    import pyarrow.compute as pc

    long_ = pc.fill_null(pc.greater(pc.binary_length(texts), max_chars), False).to_numpy(zero_copy_only=False)
    if not long_.any():
        return 0
    return int(pc.sum(pc.greater(pc.utf8_length(texts.filter(pa.array(long_))), max_chars)).as_py() or 0)

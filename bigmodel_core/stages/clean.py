"""clean: repair and normalise texts (entities, tags, whitespace, length); rows are fixed, never dropped."""

from __future__ import annotations

from bigmodel_core.config import Params
from bigmodel_core.data import schemas
from bigmodel_core.data.cleaning import clean_array
from bigmodel_core.io import atomic_dir, read_table, write_json, write_table
from bigmodel_core.paths import Paths


def run(params: Params, paths: Paths) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = read_table(paths.raw / "rows.parquet", schemas.RAW)
    before = pa.array(raw["text"].astype("object").where(raw["text"].notna(), None), type=pa.large_string())
    after = clean_array(before, params.clean)
    out_df = raw.copy()
    out_df["text"] = after.to_pandas()
    out_df = out_df.astype({"text": "str"})
    changed = int(pc.sum(pc.fill_null(pc.not_equal(before, after), False)).as_py() or 0)
    truncated = int(pc.sum(pc.fill_null(pc.greater(pc.utf8_length(before), params.clean.max_chars), False)).as_py() or 0)
    report = {"rows": int(len(out_df)), "changed": changed, "truncated_to_max_chars": truncated}
    with atomic_dir(paths.clean) as out:
        write_table(out_df, out / "rows.parquet", schemas.CLEAN)
        write_json(report, out / "report.json")
    return report

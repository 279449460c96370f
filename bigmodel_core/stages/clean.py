"""clean: repair and normalise texts (entities, tags, whitespace, length); rows are fixed, never dropped."""

from __future__ import annotations

from bigmodel_core.config import Params
from bigmodel_core.data import schemas
from bigmodel_core.data.cleaning import clean_text
from bigmodel_core.io import atomic_dir, read_table, write_json, write_table
from bigmodel_core.paths import Paths


def run(params: Params, paths: Paths) -> dict:
    raw = read_table(paths.raw / "rows.parquet", schemas.RAW)
    before = raw["text"].astype("object").where(raw["text"].notna(), None).tolist()
    after = [clean_text(t, params.clean) for t in before]
    out_df = raw.copy()
    out_df["text"] = after
    out_df = out_df.astype({"text": "str"})
    changed = sum(1 for a, b in zip(before, after) if a != b)
    truncated = sum(1 for t in before if t is not None and len(t) > params.clean.max_chars)
    report = {"rows": int(len(out_df)), "changed": changed, "truncated_to_max_chars": truncated}
    with atomic_dir(paths.clean) as out:
        write_table(out_df, out / "rows.parquet", schemas.CLEAN)
        write_json(report, out / "report.json")
    return report

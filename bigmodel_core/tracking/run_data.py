"""The data a pipeline run is about, attached to its MLflow run: the split files as MLflow datasets (training,
validation, testing) and the data-quality report with its quarantined rows; a data gate that closed is recorded too."""

from __future__ import annotations

import json
from pathlib import Path

DQ_HTML = "reports/data_quality.html"


DQ_JSON = "reports/data_quality.json"


SPLIT_CONTEXT = {"train": "training", "val": "validation", "test": "testing"}


# --------------------------------------------------------------------------- inputs and reports
def _split_dataset(path: Path, name: str):
    """A dataset entity read from the parquet file's footer (rows, schema) without loading the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mlflow.entities import Dataset
    from mlflow.types import ColSpec, DataType, Schema

    from bigmodel_core.io import sha256_file

    meta = pq.read_metadata(path)
    arrow = meta.schema.to_arrow_schema()

    def dtype(t) -> DataType:
        if pa.types.is_boolean(t):
            return DataType.boolean
        if pa.types.is_integer(t):
            return DataType.long if t.bit_width > 32 else DataType.integer
        if pa.types.is_float32(t):
            return DataType.float
        if pa.types.is_floating(t):
            return DataType.double
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return DataType.binary
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return DataType.datetime
        return DataType.string

    schema = Schema([ColSpec(dtype(f.type), f.name) for f in arrow if not f.name.startswith("__index_level_")])
    profile = {
        "num_rows": meta.num_rows,
        "num_elements": meta.num_rows * len(schema.inputs),
        "bytes": path.stat().st_size,
    }
    return Dataset(
        name=name,
        digest=sha256_file(path)[:16],
        source_type="local",
        source=json.dumps({"uri": str(path.resolve())}),
        schema=json.dumps({"mlflow_colspec": schema.to_dict()}),
        profile=json.dumps(profile),
    )


def log_split_datasets(client, run_id: str, split_dir: Path) -> None:
    """The train/val/test split files as the run's inputs (contexts training/validation/testing).
    MLflow keeps one input per (dataset, run), so logging again is harmless."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for split, context in SPLIT_CONTEXT.items():
        path = Path(split_dir) / f"{split}.parquet"
        if path.exists():
            inputs.append(DatasetInput(_split_dataset(path, split), [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def has_artifact(client, run_id: str, path: str) -> bool:
    folder = path.rsplit("/", 1)[0] if "/" in path else None
    return any(f.path == path for f in client.list_artifacts(run_id, folder))


def attach_data_quality(client, run_id: str, report: dict, quarantine=None, note: str | None = None) -> None:
    """The data-quality report as JSON and as a readable page (reports/data_quality.{json,html})."""
    from bigmodel_core.reporting.report_html import data_quality_html

    client.log_dict(run_id, report, DQ_JSON)
    client.log_text(run_id, data_quality_html(report, quarantine, note=note), DQ_HTML)


def workspace_quality(root: Path) -> tuple[dict, object] | None:
    """reports/data_quality.json and the quarantined rows next to it, if the validate stage has passed here."""
    import pandas as pd

    from bigmodel_core.paths import Paths

    paths = Paths(root)
    if not paths.quality_report.exists():
        return None
    report = json.loads(paths.quality_report.read_text())
    quarantine = None
    q = paths.validated / "quarantine.parquet"
    if q.exists():
        try:
            quarantine = pd.read_parquet(q)
        except Exception:  # the report alone is still worth attaching
            quarantine = None
    return report, quarantine

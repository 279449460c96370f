"""validate: apply the data-quality rules, quarantine bad rows with a reason, and gate the run.

A closed gate keeps the previous good outputs, writes this failure's report to .bigmodel/failures/ and
records it in MLflow (the report readable as HTML) before the stage exits 3.
"""

from __future__ import annotations

import time

from bigmodel_core.config import Params
from bigmodel_core.data import quality, schemas
from bigmodel_core.errors import GateFailed
from bigmodel_core.io import atomic_dir, read_table, write_json, write_table
from bigmodel_core.paths import Paths


def run(params: Params, paths: Paths) -> dict:
    df = read_table(paths.clean / "rows.parquet", schemas.CLEAN)
    result = quality.check(df, params.validate, params.data.labels)
    if not result.ok:
        # The previous good outputs stay; the full report of this failure is kept aside.
        report_path = paths.failures / f"validate-{time.strftime('%Y%m%d-%H%M%S')}.json"
        write_json(result.report, report_path)
        message = f"data gate failed: {' | '.join(result.failures)} (full report: {report_path})"
        from bigmodel_core.tracking.pipeline_run import record_data_gate

        # findable in MLflow: attached to the flow's run, or (plain `dvc repro`) a FAILED run of its own
        record_data_gate(params, paths.root, message, result.report, result.quarantined)
        raise GateFailed(message)
    for warning in result.report.get("warnings", []):
        print(f"warning: {warning}", flush=True)
    with atomic_dir(paths.validated) as out:
        write_table(result.passed, out / "rows.parquet", schemas.VALIDATED)
        write_table(result.quarantined, out / "quarantine.parquet", schemas.QUARANTINE)
    write_json(result.report, paths.quality_metrics)
    return result.report

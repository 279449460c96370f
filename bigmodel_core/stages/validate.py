"""validate: apply the data-quality rules, quarantine bad rows with a reason, and gate the run."""

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
        raise GateFailed(f"data gate failed: {' | '.join(result.failures)} (full report: {report_path})")
    with atomic_dir(paths.validated) as out:
        write_table(result.passed, out / "rows.parquet", schemas.VALIDATED)
        write_table(result.quarantined, out / "quarantine.parquet", schemas.QUARANTINE)
    write_json(result.report, paths.quality_metrics)
    return result.report

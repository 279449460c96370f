"""validate: apply the data-quality rules, quarantine bad rows with a reason, and gate the run.

Writes metrics/data_quality.json and reports/data_quality.html (charts, rules, examples, near-duplicate
pairs, drift). A closed gate keeps the previous good outputs, writes this failure's report (JSON and HTML) to
.bigmodel/failures/ and records it in MLflow before the stage exits 3.
"""

from __future__ import annotations

import os
import time

from bigmodel_core.config import Params
from bigmodel_core.data import quality, schemas
from bigmodel_core.data.profile import compare, profile
from bigmodel_core.errors import GateFailed
from bigmodel_core.io import atomic_dir, read_table, shown, write_json, write_table
from bigmodel_core.paths import Paths


def run(params: Params, paths: Paths) -> dict:
    df = read_table(paths.clean / "rows.parquet", schemas.CLEAN)
    result = quality.check(df, params.validate, params.data.labels, max_tokens=params.tokenizer.max_length)
    current = profile(result.passed["text"], result.passed["label"])
    result.report["profile"] = {k: current[k] for k in ("rows", "label_priors", "length_bins", "length_hist", "words")}
    result.report["profile"]["top_words"] = dict(list(current["vocab"].items())[:20])
    _drift(params, paths, result, current)
    if not result.ok:
        # The previous good outputs stay; the full report of this failure is kept aside, as JSON and as a page.
        stem = paths.failures / f"validate-{time.strftime('%Y%m%d-%H%M%S')}"
        write_json(result.report, stem.with_suffix(".json"))
        _write_html(result, stem.with_suffix(".html"), "this run's data, stopped at the data gate")
        message = f"data gate failed: {' | '.join(result.failures)} (report: {shown(stem.with_suffix('.html'))})"
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
    _write_html(result, paths.quality_html, None)
    return result.report


def _write_html(result: quality.QualityResult, target, note: str | None) -> None:
    from bigmodel_core.io import atomic_path
    from bigmodel_core.tracking.report_html import data_quality_html

    with atomic_path(target) as tmp:
        tmp.write_text(data_quality_html(result.report, result.quarantined, note=note))


def _drift(params: Params, paths: Paths, result: quality.QualityResult, current: dict) -> None:
    """Compare the passing rows with the champion's data profile; a drift beyond the thresholds closes the
    gate (policy fail) or is reported (warn). Without a champion, or one made before profiles, it is skipped
    and the report says why."""
    p = params.validate.drift
    if p.policy == "off":
        result.report["drift"] = {"checked": False, "reason": "validate.drift.policy is off"}
        return
    reference, version, why = _champion_profile(params, paths)
    if reference is None:
        result.report["drift"] = {"checked": False, "reason": why}
        return
    drift = compare(result.passed["text"], current, reference, p, version)
    result.report["drift"] = drift
    if not drift["passed"]:
        line = f"drift vs champion v{version} ({p.policy}): " + "; ".join(drift["findings"])
        (result.failures if p.policy == "fail" else result.report.setdefault("warnings", [])).append(line)
        result.report["passed"] = not result.failures


def _champion_profile(params: Params, paths: Paths) -> tuple[dict | None, str | None, str]:
    import json

    from bigmodel_core.data.profile import FILE
    from bigmodel_core.errors import BigmodelError

    uri = params.tracking.uri
    if uri.startswith("sqlite:///") and "MLFLOW_TRACKING_URI" not in os.environ:
        db = uri[len("sqlite:///"):].split("?", 1)[0]
        if not os.path.isabs(db) and not (paths.root / db).exists():
            return None, None, "no registry yet, so no champion to compare with"
    try:
        from bigmodel_core.tracking.mlflow_store import champion_bundle

        found = champion_bundle(params, paths.root)
    except BigmodelError as e:
        return None, None, f"not checked: {e}"
    except Exception as e:  # the registry is unreachable: drift is a check, not a reason to stop
        return None, None, f"not checked: the champion could not be read ({type(e).__name__}: {e})"
    if found is None:
        return None, None, "no champion yet"
    version, bundle = found
    try:
        return json.loads((bundle / FILE).read_text()), version, ""
    except OSError:
        return None, version, f"champion v{version} has no data profile (it was made before profiles were kept)"

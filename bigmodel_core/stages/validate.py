"""validate: apply the data-quality rules, quarantine bad rows with a reason, and gate the run.

Writes the report as reports/data_quality.json (every rule with its examples, classes, profile, drift) and
reports/data_quality.html (charts, rules, examples, near-duplicate pairs, drift), and its headline figures
(quality.headline: rows in and out, quarantined, passed) as metrics/data_quality.json, the file DVC's
`metrics show` and `exp show` read. A closed gate keeps the previous good outputs, writes this failure's report
(JSON and HTML) to .bigmodel/failures/ and records it in MLflow before the stage exits 3.
"""

from __future__ import annotations

import os
import time

import pandas as pd
import pyarrow.parquet as pq

from bigmodel_core import modalities
from bigmodel_core.config import Params
from bigmodel_core.data import quality
from bigmodel_core.errors import GateFailed
from bigmodel_core.io import TableWriter, atomic_dir, iter_frames, shown, write_json
from bigmodel_core.modalities.checks import CHECKS
from bigmodel_core.paths import Paths
from bigmodel_core.stages.spec import Out, StageSpec, metric

SPEC = StageSpec(
    inputs=("clean", "champion_ref"),
    # the truncated rule counts words past tokenizer.max_length; drift compares with the registry's champion
    params=(
        "validate",
        "data.labels",
        "data.modality",
        "tokenizer.max_length",
        "deploy.model_name",
        "deploy.champion_alias",
        "tracking.uri",
    ),
    bookkeeping=("tracking.experiment", "tracking.artifact_root"),  # where a closed gate's MLflow run is filed
    outs=(
        Out("validated"),
        Out("quality_report"),
        Out("quality_html"),
        Out("data_profile"),
        metric("quality_metrics"),
    ),
)


def run(params: Params, paths: Paths) -> dict:
    modality = modalities.get(params.data.modality)
    checks, schemas = CHECKS(modality), modality.schemas
    source = paths.clean / "rows.parquet"
    reference, version, why = (
        (None, None, "validate.drift.policy is off")
        if params.validate.drift.policy == "off"
        else _champion_profile(params, paths)
    )
    checker = checks.checker(params, reference)
    rows = pq.read_metadata(source).num_rows if source.exists() else None  # the per-row arrays, allocated once
    passes: list[int] = []

    def batches():  # the schema is checked on the first pass; the second reads the same file again
        passes.append(1)
        return iter_frames(source, schemas.CLEAN if len(passes) == 1 else None)

    checker.scan(batches, rows)
    sample: list = []  # the first quarantined rows, for the page

    with atomic_dir(paths.validated) as out:
        kept = TableWriter(out / "rows.parquet", schemas.VALIDATED, shown(paths.validated / "rows.parquet"))
        aside = TableWriter(
            out / "quarantine.parquet", schemas.QUARANTINE, shown(paths.validated / "quarantine.parquet")
        )

        def quarantine(df) -> None:
            aside.write(df)
            if sum(len(x) for x in sample) < SAMPLE_ROWS:
                sample.append(df.head(SAMPLE_ROWS))

        try:
            checker.write(kept.write, quarantine)
        finally:
            kept.close(empty_like=checker.empty_passed())
            aside.close(empty_like=checker.empty_quarantine())
        result = checker.result()
        if kept.rows + aside.rows != checker.n:  # nothing lost: every row read is written once, kept or aside
            raise AssertionError(
                f"validate read {checker.n} rows but wrote {kept.rows} kept + {aside.rows} quarantined"
            )
        result.quarantined = pd.concat(sample, ignore_index=True) if sample else checker.empty_quarantine()
        current = checker.profiler.result()
        result.report["profile"] = checks.report_profile(current)
        measure = lambda ref: checks.drift(checker, current, ref, params, version)  # noqa: E731
        _drift(params, result, current, reference, version, why, measure)
        if not result.ok:
            # The previous good outputs stay (this directory is dropped); the full report of this failure is
            # kept aside, as JSON and as a page.
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
    write_json(result.report, paths.quality_report)
    write_json(current, paths.data_profile)  # train puts it in the model bundle (what the next run is compared with)
    _write_html(result, paths.quality_html, None)
    write_json(quality.headline(result.report), paths.quality_metrics)
    return result.report


SAMPLE_ROWS = 50  # quarantined rows shown on the page (the report has every count)


def _write_html(result: quality.QualityResult, target, note: str | None) -> None:
    from bigmodel_core.io import atomic_path
    from bigmodel_core.reporting.report_html import data_quality_html

    with atomic_path(target) as tmp:
        tmp.write_text(data_quality_html(result.report, result.quarantined, note=note))


def _drift(
    params: Params,
    result: quality.QualityResult,
    current: dict,
    reference: dict | None,
    version: str | None,
    why: str,
    measure,
) -> None:
    """Compare the passing rows with the champion's data profile; a drift beyond the thresholds closes the
    gate (policy fail) or is reported (warn). Without a champion, or one made before profiles, it is skipped
    and the report says why."""
    p = params.validate.drift
    if reference is None:
        result.report["drift"] = {"checked": False, "reason": why}
        return
    if not current["rows"]:  # the gate is closed already; an empty profile against the champion's says nothing
        result.report["drift"] = {"checked": False, "reason": "no row passed the rules: nothing to compare"}
        return
    drift = measure(reference)  # the modality's drift of `current` against it (modalities/checks.py)
    result.report["drift"] = drift
    if not drift["passed"]:
        line = f"drift vs champion v{version} ({p.policy}): " + "; ".join(drift["findings"])
        (result.failures if p.policy == "fail" else result.report.setdefault("warnings", [])).append(line)
        result.report["passed"] = not result.failures


def _champion_profile(params: Params, paths: Paths) -> tuple[dict | None, str | None, str]:
    import json

    from bigmodel_core.errors import BigmodelError
    from bigmodel_core.models.bundle import PROFILE_FILE

    uri = params.tracking.uri
    if uri.startswith("sqlite:///") and "MLFLOW_TRACKING_URI" not in os.environ:
        db = uri[len("sqlite:///") :].split("?", 1)[0]
        if not os.path.isabs(db) and not (paths.root / db).exists():
            return None, None, "no registry yet, so no champion to compare with"
    try:
        from bigmodel_core.tracking.store import champion_bundle

        found = champion_bundle(params, paths.root)
    except BigmodelError as e:
        return None, None, f"not checked: {e}"
    except Exception as e:  # the registry is unreachable: drift is a check, not a reason to stop
        return None, None, f"not checked: the champion could not be read ({type(e).__name__}: {e})"
    if found is None:
        return None, None, "no champion yet"
    version, bundle = found
    try:
        return json.loads((bundle / PROFILE_FILE).read_text()), version, ""
    except OSError:
        return None, version, f"champion v{version} has no data profile (it was made before profiles were kept)"

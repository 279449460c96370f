"""Data with no usable row: every label missing, every text empty, no row at all. The data gate closes (exit 3)
naming the rules and the file, and its report is written; nothing crashes on the empty arrays."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bigmodel_core.config import ValidateParams, load_params
from bigmodel_core.data.profile import profile
from bigmodel_core.data.quality import QUARANTINE_COLUMNS, check
from bigmodel_core.reporting.report_html import data_quality_html
from tests.conftest import BIN, dvc, make_workspace, run_cmd, tiny_params_dict

LABELS = ["sports", "business", "science", "travel"]


def frame(texts: list, labels: list) -> pd.DataFrame:
    n = len(texts)
    return pd.DataFrame({
        "row_id": [f"r{i}" for i in range(n)], "source": "mine", "source_file": "data/sources/rows.csv",
        "source_row": pd.Series(range(1, n + 1), dtype="int64"), "text": pd.Series(texts, dtype="str"),
        "label": pd.Series(labels, dtype="str"), "fixed_split": pd.Series([None] * n, dtype="str"),
    })


NO_LABELS = frame([f"story {i} about the match" for i in range(60)], [None] * 60)
NO_TEXTS = frame(["", "   ", None, "\t"] * 15, [LABELS[i % 4] for i in range(60)])
NO_ROWS = frame([], [])
# the gate as params.yaml sets it: rules at max_fraction 0.05
P = load_params(Path(__file__).resolve().parents[1] / "params.yaml").validate


@pytest.mark.parametrize("df, rule, reason", [(NO_LABELS, "missing_label", "label is missing"),
                                              (NO_TEXTS, "empty_text", "text is empty or whitespace only")],
                         ids=["all-labels-missing", "all-texts-empty"])
def test_no_usable_row_quarantines_every_row_and_closes_the_gate(df, rule, reason):
    r = check(df, P, LABELS)
    assert r.report["rows_in"] == 60 and r.report["rows_out"] == 0 and r.report["rows_quarantined"] == 60
    assert r.passed.empty and list(r.passed.columns) == [*df.columns, "group_key"]
    assert list(r.quarantined.columns) == list(QUARANTINE_COLUMNS)
    assert r.quarantined["rule"].eq(rule).all() and r.quarantined["reason"].eq(reason).all()
    assert r.report["rules"][rule]["rows"] == 60 and r.report["rules"][rule]["fraction"] == 1.0
    assert sum(x["rows"] for x in r.report["rules"].values()) == 60  # no other rule claims a row
    assert not r.ok
    assert r.failures[0].startswith(f"rule {rule}: 60 row(s) = 100.0% > max_fraction 5.0%, e.g. "
                                    "data/sources/rows.csv row 1 ")
    assert f"only 0 rows pass, min_rows is {P.min_rows}" in r.failures
    assert r.report["class_counts"] == {}
    page = data_quality_html(r.report, r.quarantined)
    assert rule in page and "data/sources/rows.csv" in page


def test_no_row_at_all_closes_the_gate_on_min_rows():
    r = check(NO_ROWS, P, LABELS)
    assert (r.report["rows_in"], r.report["rows_out"], r.report["rows_quarantined"]) == (0, 0, 0)
    assert r.passed.empty and r.quarantined.empty and list(r.quarantined.columns) == list(QUARANTINE_COLUMNS)
    assert all(x["rows"] == 0 for x in r.report["rules"].values())
    assert f"only 0 rows pass, min_rows is {P.min_rows}" in r.failures and not r.ok
    assert "min_rows" in data_quality_html(r.report, r.quarantined)


def test_loose_rules_still_stop_on_no_usable_row():
    """With every rule at max_fraction 1 the rows are quarantined without a rule failing; min_rows and the
    quarantine fraction still close the gate."""
    loose = ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0)
    for df in (NO_LABELS, NO_TEXTS):
        r = check(df, loose, LABELS)
        assert r.failures == ["only 0 rows pass, min_rows is 1"] + [
            f"rule too_few_rows_per_class (fail): " + "; ".join(
                f"class {lab!r} has 0 passing row(s), min_rows_per_class is 1" for lab in sorted(LABELS))]


@pytest.mark.stage
def test_the_validate_stage_with_no_usable_row_against_a_champion(tmp_path, monkeypatch):
    """The whole stage (scan, write, profile, drift against the champion's profile, label_noise, both reports)
    on rows of which none passes: the gate closes with the report kept aside, the last good outputs stay."""
    from bigmodel_core.errors import GateFailed
    from bigmodel_core.io import write_table
    from bigmodel_core.paths import Paths
    from bigmodel_core.stages import validate
    from bigmodel_core.tracking import pipeline_run

    root = tmp_path / "ws"
    raw = tiny_params_dict()
    raw["validate"]["drift"]["policy"] = "fail"
    (root / "data/clean").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(root / "params.yaml")
    paths = Paths(root)
    monkeypatch.chdir(root)
    reference = profile(pd.Series(["the team won the match", "markets fell today"] * 50), pd.Series(["sports", "business"] * 50))
    monkeypatch.setattr(validate, "_champion_profile", lambda params, paths: (reference, "3", ""))
    recorded = []
    monkeypatch.setattr(pipeline_run, "record_data_gate", lambda *a, **k: recorded.append(a[2]))
    for df, rule in ((NO_LABELS, "missing_label"), (NO_TEXTS, "empty_text")):
        write_table(df, paths.clean / "rows.parquet")
        with pytest.raises(GateFailed) as e:
            validate.run(params, paths)
        message = str(e.value)
        assert message.startswith(f"data gate failed: rule {rule}: 60 row(s) = 100.0% > max_fraction 5.0%, e.g. "
                                  "data/sources/rows.csv row 1 ")
        assert "drift" not in message  # nothing passed: there is nothing to compare with the champion
        stem = message.rsplit("(report: ", 1)[1].rstrip(")")
        report = json.loads((root / stem).with_suffix(".json").read_text())
        assert report["rows_out"] == 0 and report["rules"][rule]["rows"] == 60
        assert report["drift"] == {"checked": False, "reason": "no row passed the rules: nothing to compare"}
        assert report["profile"]["rows"] == 0 and report["profile"]["words"] == 0
        assert rule in (root / stem).read_text()
        assert recorded[-1] == message
        assert not paths.validated.exists() and not paths.quality_metrics.exists()  # nothing half-written
        for old in paths.failures.iterdir():
            old.unlink()  # one second apart at most: the next report could take the same name


def _csv_workspace(root: Path) -> Path:
    raw = tiny_params_dict()
    raw["data"]["sources"] = [{"name": "mine", "path": "data/sources/rows.csv", "format": "csv"}]
    make_workspace(root, raw)
    dvc(root, "init", "--no-scm", "-q")
    return root


@pytest.mark.e2e
def test_bigmodel_run_on_all_missing_labels_then_all_empty_texts_closes_the_data_gate(tmp_path):
    root = _csv_workspace(tmp_path / "ws")
    source = root / "data/sources/rows.csv"
    cases = [("missing_label", "text,label\n" + "".join(f"story number {i} about the match,\n" for i in range(300)),
              "text='story number 0 about the match', label=None"),
             ("empty_text", "text,label\n" + "".join(f"\"  \",{LABELS[i % 4]}\n" for i in range(300)),
              "text='', label='sports'")]
    for rule, text, example in cases:
        source.write_text(text)
        proc = run_cmd([str(Path(BIN) / "bigmodel"), "run"], root, check=False)
        everything = proc.stdout + proc.stderr
        assert proc.returncode == 3, everything
        assert "IndexError" not in everything and "Traceback" not in everything
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, everything
        assert errors[0].startswith(f"error: stage 'validate' failed (exit 3): data gate failed: rule {rule}: 300 "
                                    f"row(s) = 100.0% > max_fraction 5.0%, e.g. data/sources/rows.csv row 1 "
                                    f"({example})")
        assert "only 0 rows pass, min_rows is 50" in errors[0]
        page = errors[0].rsplit("(report: ", 1)[1].rstrip(")")
        assert page.startswith(".bigmodel/failures/validate-") and (root / page).is_file()
        report = json.loads((root / page).with_suffix(".json").read_text())
        assert report["rows_in"] == 300 and report["rows_out"] == 0 and report["rules"][rule]["rows"] == 300
        assert not (root / "data/validated").exists() and not (root / "models").exists()
        for old in (root / ".bigmodel/failures").iterdir():
            old.unlink()

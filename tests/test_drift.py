"""Drift against the champion's data: the profile travels in the model bundle, validate compares."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bigmodel_core.config import DriftParams
from bigmodel_core.data.profile import compare, oov_rate, profile
from bigmodel_core.models.bundle import PROFILE_FILE as FILE
from tests.conftest import BIN, copy_workspace, run_cmd

BIGMODEL = str(Path(BIN) / "bigmodel")


def length_js(current: list[float], reference: list[float]) -> float:
    """compare()'s length drift of two length histograms (the Jensen-Shannon divergence, base 2)."""
    def prof(hist: list[float]) -> dict:
        return {"label_priors": {}, "length_hist": hist}

    return compare(None, prof(current), prof(reference), DriftParams(), oov=0.0)["length_js"]


def test_distances_have_their_textbook_values():
    assert length_js([3, 0], [0, 5]) == pytest.approx(1.0)
    assert length_js([2, 7, 1], [4, 14, 2]) == pytest.approx(0.0)
    assert length_js([1, 1], [1, 0]) == pytest.approx(0.311278, abs=1e-6)
    assert length_js([0, 0], [1, 0]) == 0.0  # an empty histogram is no drift
    assert oov_rate(pd.Series(["a c", "b"]), {"a": 5, "b": 1}) == pytest.approx(1 / 3)


def test_profile_and_compare_name_what_moved():
    ref_rows = pd.DataFrame({"text": ["one two three"] * 6 + ["four five six seven"] * 2, "label": ["x"] * 4 + ["y"] * 4})
    ref = profile(ref_rows["text"], ref_rows["label"])
    assert ref["rows"] == 8 and ref["label_priors"] == {"x": 0.5, "y": 0.5}
    assert ref["length_hist"][ref["length_bins"].index("<=5")] == 8 and ref["oov_rate"] == 0.0
    new_rows = pd.DataFrame({"text": ["alpha beta gamma delta epsilon zeta eta theta iota kappa lambda"] * 8,
                             "label": ["x"] * 7 + ["y"]})
    cur = profile(new_rows["text"], new_rows["label"])
    d = compare(new_rows["text"], cur, ref, DriftParams(policy="fail"), version="3")
    assert d["label_shift"] == pytest.approx(0.375) and d["label_shift_class"] == "x"
    assert d["length_js"] == pytest.approx(1.0) and d["oov_rate"] == pytest.approx(1.0)
    assert d["findings"] == [
        "label priors moved by 0.375 (L-infinity; class 'x': 0.500 -> 0.875) > max_label_shift 0.1",
        "text lengths moved: Jensen-Shannon divergence 1.000 > max_length_js 0.1",
        "out-of-vocabulary words rose from 0.000 to 1.000 (+1.000 > max_oov_increase 0.05)"]
    same = compare(ref_rows["text"], ref, ref, DriftParams(), version="3")
    assert same["passed"] and same["label_shift"] == 0 and same["length_js"] == 0 and same["oov_increase"] == 0


def test_profiler_counts_added_in_parts_and_taken_away_like_one_profile(monkeypatch):
    import pyarrow as pa

    from bigmodel_core.data import profile as prof

    texts = pd.Series(["b a a", "c b", "a d d d", "e", "b b c"] * 3)
    labels = pd.Series(["x", "y", "x", "y", "x"] * 3)
    whole = profile(texts, labels)
    monkeypatch.setattr(prof, "MERGE_AT", 4)  # merges while the parts come in, not only at the end
    p = prof.Profiler()
    for s in range(0, len(texts), 4):
        p.add(texts[s:s + 4], labels[s:s + 4])
    p.add_counts(pa.array(["z", "a"]), [5, 2])
    p.add_counts(pa.array(["a", "z"]), [2, 5], sign=-1)  # taken away again: "z" leaves the vocabulary
    got = p.result()
    assert got == whole and got["words"] == 39
    assert list(got["vocab"].items()) == [("b", 12), ("a", 9), ("d", 9), ("c", 6), ("e", 3)]
    p.add_counts(pa.array(["never"]), [1], sign=-1)
    with pytest.raises(ValueError, match="cannot take away 1 word\\(s\\) never added, e.g. 'never'"):
        p.result()


@pytest.fixture(scope="module")
def champion_ws(trained_ws, tmp_path_factory) -> Path:
    """A copy of the session's completed `bigmodel run` (conftest.trained_ws): champion v1, tiny params."""
    return copy_workspace(trained_ws, tmp_path_factory.mktemp("drift") / "ws")


def _params(root: Path, **drift) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["data"]["labels"] = ["sports", "business", "science"]  # the travel rows drop out: the priors move
    raw["validate"]["rules"]["unknown_label"]["max_fraction"] = 0.5
    raw["validate"]["max_quarantine_fraction"] = 0.6
    raw["validate"]["drift"] = drift
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.e2e
def test_the_profile_travels_with_the_model_and_drift_closes_the_gate(champion_ws):
    root = champion_ws
    bundled = json.loads((root / "models/model" / FILE).read_text())
    assert set(bundled["label_priors"]) == {"sports", "business", "science", "travel"} and bundled["rows"] > 500
    quality_before = (root / "reports/data_quality.json").read_text()
    headline_before = (root / "metrics/data_quality.json").read_text()
    validated_before = (root / "data/validated/rows.parquet").read_bytes()

    _params(root, policy="fail")
    proc = run_cmd([BIGMODEL, "stage", "validate"], root, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1
    assert re.search(r"drift vs champion v1 \(fail\): label priors moved by 0\.2\d\d \(L-infinity; class 'travel': "
                     r"0\.2\d\d -> 0\.000\) > max_label_shift 0\.1", errors[0]), errors[0]
    assert (root / "reports/data_quality.json").read_text() == quality_before  # the last good outputs stay
    assert (root / "metrics/data_quality.json").read_text() == headline_before
    assert (root / "data/validated/rows.parquet").read_bytes() == validated_before

    _params(root, policy="warn")
    proc = run_cmd([BIGMODEL, "stage", "validate"], root)
    assert any(l.startswith("warning: drift vs champion v1 (warn): label priors moved by") for l in proc.stdout.splitlines())
    drift = json.loads((root / "reports/data_quality.json").read_text())["drift"]
    assert drift["checked"] and drift["reference_version"] == "1" and not drift["passed"]
    assert drift["length_js"] < 0.05 and drift["oov_increase"] < 0.05  # the same generator: only the labels moved


@pytest.mark.e2e
def test_report_data_and_the_page_show_rules_classes_and_drift(champion_ws, tmp_path):
    import shutil

    root = champion_ws
    _params(root, policy="warn")
    run_cmd([BIGMODEL, "stage", "validate"], root)
    out = run_cmd([BIGMODEL, "report", "data"], root).stdout
    assert out.startswith("# Data quality: passed\n")
    assert re.search(r"\| unknown_label \| quarantine \| \d{2,}", out) and "| near_duplicate | warn |" in out
    assert "Drift against champion v1: label shift 0.2" in out and "warning: drift vs champion v1 (warn)" in out
    assert out.rstrip().endswith("Full report: reports/data_quality.html")
    assert json.loads(run_cmd([BIGMODEL, "report", "data", "--json"], root).stdout)["drift"]["checked"] is True
    page = (root / "reports/data_quality.html").read_text()
    assert "<svg" in page and "Rows per class (kept)" in page and "Drift against champion v1" in page
    if shutil.which("chromium") is None:
        pytest.skip("the page was checked as text; Debian's chromium is not installed to render it")
    from tests.test_ui_browser import ARTIFACTS, chromium, html_text

    text = html_text(chromium(tmp_path, (root / "reports/data_quality.html").as_uri(), "--dump-dom").stdout)
    assert "Data quality: PASSED" in text and "Near-duplicate pairs" in text and "label priors, L-infinity" in text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "data-quality-report.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, (root / "reports/data_quality.html").as_uri(), f"--screenshot={shot}", height=2400)
    assert shot.exists() and shot.stat().st_size > 10_000

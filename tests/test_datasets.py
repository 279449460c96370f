"""The example params read the real datasets in ../shared/datasets (skipped when absent)."""

from __future__ import annotations

import pytest

from bigmodel_core.config import CleanParams, ValidateParams, load_params
from bigmodel_core.data.cleaning import clean_text
from bigmodel_core.data.formats import read_source
from bigmodel_core.data.quality import check
from tests.conftest import REPO, needs_datasets

pytestmark = [needs_datasets, pytest.mark.datasets]


def read_all(name):
    params = load_params(REPO / "examples" / f"{name}-transformer.yaml")
    import pandas as pd

    return params, pd.concat([read_source(s, REPO) for s in params.data.sources], ignore_index=True)


def test_sms_spam_counts_and_quotes():
    params, df = read_all("sms_spam")
    assert len(df) == 5574
    assert df["label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}
    assert df["text"].str.startswith('"').sum() > 0  # quotes are read literally, lines never merge
    q = check(df.assign(text=[clean_text(t, params.clean) for t in df["text"]]).astype({"text": "str"}), params.validate, params.data.labels)
    assert q.report["rules"]["duplicate"]["rows"] >= 403 and q.report["rules"]["conflicting_labels"]["rows"] == 0


def test_ag_news_two_files_one_label_space():
    params, df = read_all("ag_news")
    assert len(df) == 12600
    assert df.groupby("fixed_split").size().to_dict() == {"test": 7600, "train": 5000}
    test = df[df["fixed_split"] == "test"]
    assert test["label"].value_counts().to_dict() == {l: 1900 for l in ("World", "Sports", "Business", "Sci/Tech")}
    assert set(df["label"]) == set(params.data.labels)
    cleaned = clean_text(test["text"].iloc[1], CleanParams())
    assert "#36;" not in cleaned and "$10 million" in cleaned


def test_imdb_tarball_keeps_train_and_test():
    params, df = read_all("imdb")
    assert len(df) == 50000
    counts = df.groupby(["fixed_split", "label"]).size().to_dict()
    assert counts == {("test", "negative"): 12500, ("test", "positive"): 12500,
                      ("train", "negative"): 12500, ("train", "positive"): 12500}
    assert df["source_file"].str.contains(r"aclImdb/(?:train|test)/(?:pos|neg)/\d+_\d+\.txt$").all()


def test_sms_spam_bag_model_beats_tfidf_logistic_regression(tmp_path, monkeypatch):
    """The bag recipe against the built-in baseline of benchmarks/baseline.py, on the same split files."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import baseline

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    work = baseline.make_workspace(tmp_path, "sms_spam", REPO.parent / "shared" / "datasets", "bag")
    monkeypatch.chdir(work)
    pipe = baseline.run_pipeline(work)
    ours, base = pipe["reports"]["evaluate"], baseline.run_baseline(work, pipe["labels"])
    assert base["accuracy"] > 0.95  # the baseline itself is sane
    assert ours["accuracy"] >= base["accuracy"] and ours["macro_f1"] >= base["macro_f1"]

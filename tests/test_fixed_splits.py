"""A dataset's own splits are the user's: fixed test rows are scored as given (validate.fixed_test), and a
dataset that brings its own validation rows keeps every train row for training."""

from __future__ import annotations

import pandas as pd
import pytest

from bigmodel_core.config import AugmentParams, SplitParams, ValidateParams
from bigmodel_core.data.augment import augment
from bigmodel_core.data.quality import check, group_key
from bigmodel_core.data.split import assign, assign_frame

LOOSE = dict(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0)


def _frame(rows) -> pd.DataFrame:
    """rows: (text, label, fixed split or None)."""
    n = len(rows)
    return pd.DataFrame({
        "row_id": [f"r{i}" for i in range(n)], "source": "t", "source_file": "f.csv",
        "source_row": pd.Series(range(1, n + 1), dtype="int64"),
        "text": pd.Series([r[0] for r in rows], dtype="str"), "label": pd.Series([r[1] for r in rows], dtype="str"),
        "fixed_split": pd.Series([r[2] for r in rows], dtype="str"),
    })


FILLER = [(f"plain sentence number {w} about nothing much", lab, None)
          for w, lab in zip(["one", "two", "three", "four", "five", "six"], "xyxyxy")]


def _outcome(result) -> dict[str, str]:
    """row_id -> 'passed' or the rule that set it aside."""
    out = {rid: "passed" for rid in result.passed["row_id"]}
    out.update(dict(zip(result.quarantined["row_id"], result.quarantined["rule"])))
    return out


def test_a_conflicting_train_copy_goes_aside_and_the_test_row_stays():
    # the same question in train and test with other labels, differing only in case
    rows = [("What is the capital of France?", "x", "train"), ("what is the capital of france?", "y", "test"),
            *FILLER]
    got = _outcome(check(_frame(rows), ValidateParams(**LOOSE), ["x", "y"]))
    assert got["r0"] == "conflicting_labels" and got["r1"] == "passed"
    # checked: the rules apply to test rows too, so both copies go (the behaviour before fixed_test existed)
    got = _outcome(check(_frame(rows), ValidateParams(**LOOSE, fixed_test="checked"), ["x", "y"]))
    assert got["r0"] == got["r1"] == "conflicting_labels"


def test_test_rows_breaking_text_rules_are_kept_and_reported():
    rows = [("a test post with a control \x07 character", "x", "test"), ("a train post with a \x07 bell", "y", None),
            ("ok", "y", "test"), ("k", "x", "test"), *FILLER]
    p = ValidateParams(**LOOSE, rules={"too_short": {"policy": "quarantine", "min_chars": 3}})
    r = check(_frame(rows), p, ["x", "y"])
    got = _outcome(r)
    assert got["r0"] == "passed" and got["r1"] == "control_chars"
    assert got["r2"] == got["r3"] == "passed"  # too short, but test rows are scored as given
    fixed = r.report["fixed_test"]
    assert fixed == {"policy": "as_given", "rows": 3, "set_aside": 0,
                     "kept_despite": {"too_short": 2, "control_chars": 1}}
    # counts and the gate's fractions are of the rows the rules set aside
    assert r.report["rules"]["control_chars"]["rows"] == 1 and r.report["rules"]["too_short"]["rows"] == 0
    assert r.report["rows_in"] == r.report["rows_out"] + r.report["rows_quarantined"]


def test_duplicates_within_test_stay_and_a_train_copy_of_a_test_text_goes():
    rows = [("the same headline", "x", "test"), ("the same headline", "x", "test"), ("the same headline", "x", None),
            ("The  same headline", "x", "train"), *FILLER]
    got = _outcome(check(_frame(rows), ValidateParams(**LOOSE), ["x", "y"]))
    assert [got[f"r{i}"] for i in range(4)] == ["passed", "passed", "duplicate", "duplicate"]


def test_test_rows_that_cannot_be_scored_still_go():
    rows = [("", "x", "test"), ("no label here", None, "test"), ("an unknown label", "zzz", "test"),
            ("a good test row", "y", "test"), *FILLER]
    r = check(_frame(rows), ValidateParams(**LOOSE), ["x", "y"])
    got = _outcome(r)
    assert [got[f"r{i}"] for i in range(4)] == ["empty_text", "missing_label", "unknown_label", "passed"]
    assert r.report["fixed_test"]["set_aside"] == 3 and r.report["fixed_test"]["rows"] == 4


def test_label_noise_never_reads_test_labels():
    # 40 rows a keyword decides, 8 of them in test with the wrong label: the check may flag train rows only
    rows = []
    for i in range(120):
        lab = "x" if i % 2 else "y"
        word = "apples" if lab == "x" else "rockets"
        test = i < 16
        given = ("y" if lab == "x" else "x") if test and i % 4 == 1 else lab
        rows.append((f"sample {i} talks about {word} and {word} again", given, "test" if test else None))
    p = ValidateParams(**LOOSE, rules={"label_noise": {"policy": "quarantine", "folds": 2, "sample_rows": 1000},
                                       "near_duplicate": {"policy": "warn", "min_jaccard": 0.99}})
    r = check(_frame(rows), p, ["x", "y"])
    test_ids = {f"r{i}" for i in range(16)}
    assert not test_ids & set(r.quarantined["row_id"])
    assert r.report["rules"]["label_noise"]["checked"] == 120 - 16


def test_a_dataset_with_its_own_validation_rows_carves_none():
    p = SplitParams(val_fraction=0.3, test_fraction=0.2)
    texts = [f"row {i} of the corpus" for i in range(600)]
    fixed = ["train"] * 200 + ["val"] * 100 + [None] * 300
    df = pd.DataFrame({"group_key": [group_key(t) for t in texts], "fixed_split": pd.Series(fixed, dtype="str")})
    carved, own = assign_frame(df, p), assign_frame(df, p, carve_val=False)
    assert set(carved[:200]) == {"train", "val"}  # without a validation set of its own, val comes from train
    assert set(own[:200]) == {"train"} and set(own[200:300]) == {"val"} and set(own[300:]) == {"train", "test"}
    # the split of a free row into test does not depend on where validation comes from
    assert ((carved[300:] == "test") == (own[300:] == "test")).all()
    # the row function agrees with the frame function
    assert own.tolist() == [assign(k, f, p, carve_val=False) for k, f in zip(df["group_key"], fixed)]


def test_augment_follows_the_split_when_validation_is_the_datas_own():
    texts = [f"the {i}th training sentence with words" for i in range(200)]
    df = pd.DataFrame({
        "row_id": [f"r{i}" for i in range(200)], "source": "s", "source_file": "f",
        "source_row": pd.Series(range(200), dtype="int64"), "text": pd.Series(texts, dtype="str"),
        "label": pd.Series(["a", "b"] * 100, dtype="str"), "fixed_split": pd.Series(["train"] * 200, dtype="str"),
        "group_key": pd.Series([group_key(t) for t in texts], dtype="str"),
    })
    p = SplitParams(val_fraction=0.3, test_fraction=0.2)
    _, carved = augment(df, AugmentParams(copies=1), p)
    _, own = augment(df, AugmentParams(copies=1), p, carve_val=False)
    assert carved["train_parents"] < 180 and own["train_parents"] == own["variants"] == 200


@pytest.mark.parametrize("folder", ["val", "valid", "validation"])
def test_a_validation_folder_fixes_the_split(tmp_path, folder):
    from bigmodel_core.config import Source
    from bigmodel_core.data.formats import read_source

    for split, n in (("train", 3), (folder, 2), ("test", 1)):
        for lab in ("ants", "bees"):
            d = tmp_path / "corpus" / split / lab
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i}.txt").write_text(f"{lab} text {i} in {split}")
    df = read_source(Source(name="c", path=str(tmp_path / "corpus"), format="folder"), tmp_path)
    assert df.groupby("fixed_split").size().to_dict() == {"test": 2, "train": 6, "val": 4}


@pytest.mark.stage
def test_data_stages_keep_a_datasets_own_splits(tmp_path, monkeypatch):
    """ingest -> split on three CSV sources (train, val, test): validation is the val source exactly, every train
    row is trained on, and a test row whose text is also in train (with another label) is scored as given."""
    from bigmodel_core import stages
    from bigmodel_core.config import parse_params
    from bigmodel_core.data import schemas
    from bigmodel_core.data.demo import generate
    from bigmodel_core.io import read_json, read_table
    from bigmodel_core.paths import Paths
    from tests.conftest import make_workspace, tiny_params_dict

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = make_workspace(tmp_path / "ws")
    monkeypatch.chdir(root)
    labels = ["sports", "business", "science", "travel"]
    rows = generate(rows=1600, seed=5)[["text", "label"]].dropna()
    rows = rows[rows["label"].isin(labels) & (rows["text"].str.strip().str.len() > 20)]
    rows = rows.drop_duplicates("text").reset_index(drop=True)
    train, val, test = rows.iloc[:600].copy(), rows.iloc[600:700], rows.iloc[700:800].copy()
    # a test text that is also in train under another label, differing only in case
    clash = train.iloc[0]["text"]
    other = next(l for l in labels if l != train.iloc[0]["label"])
    test.iloc[0] = [clash.upper(), other]
    for name, frame in (("train", train), ("val", val), ("test", test)):
        frame.to_csv(root / f"data/sources/{name}.csv", index=False)
    raw = tiny_params_dict()
    raw["data"]["sources"] = [{"name": n, "path": f"data/sources/{n}.csv", "format": "csv", "split": n}
                              for n in ("train", "val", "test")]
    raw["augment"]["enabled"] = False
    params, paths = parse_params(raw), Paths(root)
    for name in ("ingest", "clean", "validate", "augment", "split"):
        stages.get(name).run(params, paths)
    got = {s: read_table(paths.split / f"{s}.parquet", schemas.SPLIT) for s in schemas.SPLITS}
    q = read_table(paths.validated / "quarantine.parquet", schemas.QUARANTINE)
    # the rules apply to train and val rows; what passes of each stays where its source put it
    assert set(got["val"]["source"]) == {"val"} and len(got["val"]) + int((q["source"] == "val").sum()) == len(val)
    assert set(got["train"]["source"]) == {"train"}
    assert len(got["train"]) + int((q["source"] == "train").sum()) == len(train)  # nothing carved for validation
    assert len(got["test"]) == len(test) and clash.upper() in set(got["test"]["text"])
    assert q.loc[(q["source"] == "train") & (q["source_row"] == 1), "rule"].tolist() == ["conflicting_labels"]
    assert "conflicting_labels" not in set(q.loc[q["source"] == "test", "rule"])
    assert read_json(paths.split / "report.json")["validation"] == "the data's own (split: val)"

"""model.kind linear and auto, tuning (train.tune): config, the linear model and its bundle, the choice.

Unit tests first (seconds); then the stage tier: the pipeline up to the train stage in temporary workspaces
with two small datasets built here, one where a keyword decides the label (TF-IDF must win) and one where
only the characters of words never seen in training do (a bag with character n-grams must win).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bigmodel_core.config import (BagCandidate, LinearCandidate, TRANSFORMER_MIN_ROWS, candidate_params,
                                  default_candidates, parse_params)
from bigmodel_core.errors import ConfigError
from tests.conftest import env_for, make_workspace, tiny_params_dict, write_params


def auto_raw(candidates=None, **sections) -> dict:
    raw = tiny_params_dict()
    raw["model"].update(kind="auto", candidates=candidates)
    for section, values in sections.items():
        raw[section].update(values)
    return raw


# --------------------------------------------------------------------------- config
def test_candidates_are_typed_by_kind_and_errors_name_the_key():
    for candidates, message in [
        ([{"kind": "bag", "C": 3}], "model.candidates[0].bag.C: unknown key"),
        ([{"kind": "linear", "n_layers": 2}], "model.candidates[0].linear.n_layers: unknown key"),
        ([{"kind": "linear", "C": 0}], "model.candidates[0].linear.C: Input should be greater than 0"),
        ([{"kind": "bag", "train": {"lr": -1}}], "model.candidates[0].bag.train: train.lr: Input should be greater than 0"),
        ([{"kind": "bag", "train": {"learning_rate": 1}}], "unknown train key(s) ['learning_rate']"),
        ([{"kind": "linear"}, {"kind": "svm"}], "model.candidates[1]: Input tag 'svm' found using 'kind' does not match"),
        ([{"kind": "transformer", "d_model": 30, "n_heads": 4}],
         "model.candidates[0] (transformer): model: n_heads (4) must divide d_model (30)"),
        ([{"kind": "bag"}, {"kind": "bag", "name": "bag"}], "names must be unique, repeated: ['bag']"),
        ([], "candidates is an empty list"),
    ]:
        with pytest.raises(ConfigError) as e:
            parse_params(auto_raw(candidates))
        assert message in str(e.value), (candidates, str(e.value))
    with pytest.raises(ConfigError, match="train.nproc is 2, but model.kind auto trains in one process"):
        parse_params(auto_raw(train={"nproc": 2}))
    with pytest.raises(ConfigError, match="train.tune.trials: Input should be greater than or equal to 0"):
        parse_params(auto_raw(train={"tune": {"trials": -1}}))


def test_every_existing_key_still_parses_and_the_linear_defaults_are_the_reference():
    raw = tiny_params_dict()  # the repository's params.yaml, shrunk: a transformer
    p = parse_params(raw)
    assert p.model.kind == "transformer" and p.model.candidates is None and p.train.tune.trials == 0
    assert (p.model.C, p.model.min_df, p.model.sublinear_tf, p.model.ngrams, p.model.char_ngrams) == (10.0, 2, True, 2, None)
    assert p.evaluate.min_gain_over_baseline is None  # the tiny fixture opts out; the default is -0.005
    from bigmodel_core.config import ModelParams

    assert ModelParams().kind == "auto"  # a params.yaml without model.kind gets the best candidate too
    repo = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    assert repo["model"]["kind"] == "auto" and repo["evaluate"]["min_gain_over_baseline"] == -0.005


def test_bigmodel_init_writes_auto_and_the_baseline_tolerance():
    from bigmodel_core.pipeline.workspace_init import params_template

    template = yaml.safe_load(params_template())
    assert template["model"]["kind"] == "auto" and template["model"]["candidates"] is None
    assert template["evaluate"]["min_gain_over_baseline"] == -0.005
    assert template["train"]["tune"] == {"trials": 0, "minutes": None}


def test_a_candidate_starts_from_the_sections_then_its_kind_preset_then_its_own_keys():
    p = parse_params(auto_raw([{"kind": "bag", "d_model": 48, "train": {"epochs": 2}}, {"kind": "linear", "C": 3},
                               {"kind": "transformer"}], train={"lr": 0.003, "seed": 9}))
    bag, linear, transformer = (candidate_params(p, c) for c in p.model.candidates)
    assert (bag.model.kind, bag.model.d_model, bag.model.dropout) == ("bag", 48, 0.0)  # own key, then the preset
    assert (bag.train.lr, bag.train.epochs, bag.train.grad_clip, bag.train.seed) == (0.01, 2, 0.0, 9)
    assert (linear.model.kind, linear.model.C, linear.train.lr) == ("linear", 3.0, 0.003)
    # the transformer has no preset: the model section's keys (the tiny fixture's d_model 32, one layer) and lr
    assert (transformer.model.d_model, transformer.model.n_layers, transformer.train.lr) == (32, 1, 0.003)
    # a tuning trial's keys come last
    assert candidate_params(p, p.model.candidates[0], {"d_model": 16}, {"lr": 0.05}).model.d_model == 16


def test_default_candidates_add_the_transformer_on_a_gpu_or_with_enough_rows():
    kinds = lambda cands: [c.kind for c in cands]  # noqa: E731
    assert kinds(default_candidates(5000, gpu=False)) == ["linear", "bag"]
    assert kinds(default_candidates(TRANSFORMER_MIN_ROWS - 1, gpu=False)) == ["linear", "bag"]
    assert kinds(default_candidates(TRANSFORMER_MIN_ROWS, gpu=False)) == ["linear", "bag", "transformer"]
    assert kinds(default_candidates(500, gpu=True)) == ["linear", "bag", "transformer"]


def test_choice_is_the_best_validation_macro_f1_and_a_tie_goes_to_the_cheaper_kind():
    from bigmodel_core.training.select import choose

    r = lambda name, kind, f1: {"name": name, "kind": kind, "val_macro_f1": f1}  # noqa: E731
    # selection: best (and no predictions to compare): the highest wins outright, an exact tie to the cheaper kind
    assert choose([r("linear", "linear", 0.90), r("bag", "bag", 0.91)])[0] == 1
    assert choose([r("bag", "bag", 0.91), r("linear", "linear", 0.91)])[0] == 1  # wherever linear is listed
    assert choose([r("t", "transformer", 0.8), r("b1", "bag", 0.8), r("b2", "bag", 0.8)])[0] == 1  # then listed first
    assert choose([r("linear", "linear", 0.1 + 0.2), r("bag", "bag", 0.3)])[0] == 0  # equal but for float rounding
    with pytest.raises(ValueError):
        choose([])


def _preds(y: np.ndarray, wrong: list[int]) -> np.ndarray:
    out = y.copy()
    out[wrong] = 1 - out[wrong]
    return out


def test_one_standard_error_rule_gives_an_unresolved_difference_to_the_cheaper_candidate():
    """400 validation rows. A bag with 58 errors against linear's 60, where the two disagree on 58 rows, is within
    one standard error of it (linear is kept); a bag with 20 errors, all of them linear's too, is not (the bag
    wins); 'best' takes the higher score either way."""
    from bigmodel_core.training.select import choose, within_one_se

    y = np.array([0, 1] * 200)
    linear = _preds(y, list(range(0, 60)))  # 60 errors
    bag_close = _preds(y, list(range(30, 88)))  # 58 errors; right on 30 of linear's, wrong on 28 linear gets right
    bag_far = _preds(y, list(range(30, 50)))  # 20 errors, every one linear's too
    row = lambda name, kind, pred: {"name": name, "kind": kind, "val_pred": pred,  # noqa: E731
                                    "val_macro_f1": __import__("bigmodel_core.evaluation.metrics", fromlist=["x"])
                                    .classification_metrics(y, pred, 2)["macro_f1"]}
    close = [row("linear", "linear", linear), row("bag", "bag", bag_close)]
    winner, why = choose(close, y, 2, "one_se")
    assert winner == 0 and "within one standard error of the cheaper linear's" in why, why
    assert choose(close, y, 2, "best")[0] == 1
    winner, why = choose([row("linear", "linear", linear), row("bag", "bag", bag_far)], y, 2, "one_se")
    assert winner == 1 and "more than one standard error above every cheaper candidate's" in why
    test = within_one_se(y, bag_far, linear, 2)
    assert test["within"] is False and test["low"] > 0 and test["confidence"] == pytest.approx(0.6827)
    assert within_one_se(y, bag_close, linear, 2) == within_one_se(y, bag_close, linear, 2)  # seeded
    # the cheapest within one SE wins, even when a middle one is also within it
    three = [row("t", "transformer", _preds(y, list(range(0, 20)))), row("b", "bag", _preds(y, list(range(10, 31)))),
             row("l", "linear", _preds(y, list(range(15, 37))))]
    assert choose(three, y, 2, "one_se")[0] == 2


def test_a_tuned_candidate_keeps_its_written_settings_unless_a_trial_is_clearly_better():
    from bigmodel_core.training.select import choose_trial

    y = np.array([0, 1] * 200)
    t = lambda pred: {"val_pred": pred, "val_macro_f1": float((pred == y).mean())}  # noqa: E731
    written = t(_preds(y, list(range(60))))
    close = t(_preds(y, list(range(30, 89))))  # 59 errors, 59 rows of disagreement with the written settings
    assert choose_trial([written, close, t(_preds(y, list(range(70))))], y, 2) == 0
    assert choose_trial([written, close, t(_preds(y, list(range(10))))], y, 2) == 2
    assert choose_trial([written, close], y, 2, "best") == 1


# --------------------------------------------------------------------------- the linear model
def _texts(n=240, seed=0):
    rng = random.Random(seed)
    words = {"sports": ["goal", "match", "striker"], "business": ["shares", "profit", "market"],
             "travel": ["flight", "hotel", "beach"]}
    filler = ["the", "a", "today", "new", "big", "report", "says", "ça", "naïve"]
    labels = [list(words)[i % 3] for i in range(n)]
    texts = [" ".join(rng.sample(filler, 4) + rng.sample(words[lab], 2)) for lab in labels]
    return texts, labels


def test_linear_bundle_is_plain_data_loads_to_the_same_predictions_and_is_the_same_bytes_twice(tmp_path):
    from bigmodel_core.models.linear import LinearText, reference_settings

    texts, labels = _texts()
    settings = {**reference_settings(), "char_ngrams": [2, 4]}
    first, second = tmp_path / "a", tmp_path / "b"
    for d in (first, second):
        d.mkdir()
        LinearText.fit(texts, labels, settings).save(d)
    files = sorted(f.name for f in first.iterdir())
    assert files == ["linear.json", "linear_coef.npy", "linear_idf_0.npy", "linear_idf_1.npy", "linear_intercept.npy"]
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)  # deterministic on a CPU
    for f in files:  # no pickle anywhere: every array loads with allow_pickle=False
        if f.endswith(".npy"):
            np.load(first / f, allow_pickle=False)
    fitted = LinearText.fit(texts, labels, settings)
    loaded = LinearText.load(first)
    probe = ["the striker scored", "profit at the hotel", "", "naïve ça"]
    assert np.array_equal(fitted.predict_proba(probe), loaded.predict_proba(probe))
    assert loaded.classes == ["business", "sports", "travel"] and loaded.predict(probe[:1]) == ["sports"]
    doc = json.loads((first / "linear.json").read_text(encoding="utf-8"))
    assert "naïve" in doc["blocks"][0]["terms"] and doc["settings"]["C"] == 10.0


def test_linear_min_df_falls_back_to_one_on_tiny_data_and_one_class_is_an_error():
    from bigmodel_core.models.linear import LinearText, reference_settings

    model = LinearText.fit(["red apple", "green pear"], ["a", "b"], reference_settings())
    assert model.min_df_used == 1 and model.predict(["red apple"]) == ["a"]
    with pytest.raises(ValueError, match="1 class"):
        LinearText.fit(["x y", "y z"], ["a", "a"], reference_settings())


def test_evaluate_baseline_is_the_linear_kind_with_its_defaults():
    from bigmodel_core.evaluation import baseline
    from bigmodel_core.models.linear import LinearText, reference_settings

    texts, labels = _texts()
    pred, info = baseline.fit_predict(texts[:200], labels[:200], texts[200:])
    assert pred == LinearText.fit(texts[:200], labels[:200], reference_settings()).predict(texts[200:])
    assert info["model"] == ("TF-IDF (word 1-2 grams, sublinear tf, min_df 2) + logistic regression (C 10)")


def test_predictor_puts_linear_columns_in_the_bundle_label_order(tmp_path):
    from bigmodel_core.config import CleanParams, ModelParams, TokenizerParams
    from bigmodel_core.models.bundle import Predictor, save_bundle
    from bigmodel_core.models.linear import LinearText, reference_settings

    texts, labels = _texts()
    model = LinearText.fit(texts, labels, reference_settings())
    order = ["travel", "sports", "science", "business"]  # data.labels order, with a label no train row has
    save_bundle(tmp_path, model, None, order, ModelParams(kind="linear"), TokenizerParams(), CleanParams())
    pred = Predictor(tmp_path)
    probs = pred.predict_proba(["<b>The striker</b> scored a goal", "hotel by the beach"])
    assert probs.shape == (2, 4) and np.allclose(probs.sum(1), 1) and (probs[:, 2] == 0).all()
    assert pred.predict(["<b>The striker</b> scored a goal"]) == ["sports"] and pred.parameter_count() == model.parameters


# --------------------------------------------------------------------------- the choice, on data of its own
def keyword_rows(n=600, seed=1) -> pd.DataFrame:
    """Support tickets in a made-up filler language; the one word 'refund' or 'crash' decides the label. TF-IDF's
    idf weighs the keyword up against the filler words every ticket shares; the bag's mean pooling drowns it."""
    rng = random.Random(seed)
    filler = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8))) for _ in range(400)]
    rows = []
    for i in range(n):
        label = "billing" if i % 2 else "bug"
        words = rng.choices(filler, k=rng.randint(40, 80))
        words.insert(rng.randrange(len(words)), "refund" if label == "billing" else "crash")
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def language_rows(n=600, seed=2) -> pd.DataFrame:
    """Which of two made-up languages a text is in. Words are 4-5 syllables drawn anew for every word, so almost
    no word of the validation rows occurs in training: word n-grams (TF-IDF) learn nothing that carries over,
    the syllables (character n-grams of the bag) carry the label."""
    rng = random.Random(seed)
    syllables = {"north": ["ka", "lo", "mi", "tu", "ne", "ra", "so", "vi"],
                 "south": ["sch", "ung", "eit", "ach", "ver", "ble", "tz", "ck"]}
    rows = []
    for i in range(n):
        label = "north" if i % 2 else "south"
        words = ["".join(rng.choices(syllables[label], k=rng.randint(4, 5))) for _ in range(rng.randint(5, 9))]
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def data_workspace(root: Path, rows: pd.DataFrame, labels: list[str], candidates=None, **sections) -> Path:
    raw = auto_raw(candidates, **sections)
    raw["data"] = {"sources": [{"name": "tickets", "path": "data/sources/rows.csv", "format": "csv"}], "labels": labels}
    make_workspace(root, raw)
    rows.to_csv(root / "data/sources/rows.csv", index=False)
    return root


def run_to_split(root: Path) -> None:
    from bigmodel_core import stages
    from bigmodel_core.config import load_params
    from bigmodel_core.paths import Paths

    params = load_params(root / "params.yaml")
    for name in ("ingest", "clean", "validate", "augment", "split"):
        stages.get(name).run(params, Paths(root))


class ReadLog:
    """Every read of a split file while the train stage runs (pandas, pyarrow, or a plain open()), in order,
    with the moment the choice is made among them."""

    def __init__(self, monkeypatch, split_dir: Path) -> None:
        import pyarrow.parquet as pq

        import bigmodel_core.training.select as select

        self.events: list[str] = []
        self.split_dir = str(split_dir.resolve())
        self.active = True

        def wrap(fn):
            def inner(source, *a, **k):
                self._saw(source)
                return fn(source, *a, **k)
            return inner

        monkeypatch.setattr(pd, "read_parquet", wrap(pd.read_parquet))
        monkeypatch.setattr(pq, "read_table", wrap(pq.read_table))
        choose = select.choose

        def choosing(*args, **kwargs):
            self.events.append("CHOICE")
            return choose(*args, **kwargs)

        monkeypatch.setattr(select, "choose", choosing)
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args) -> None:
        if self.active and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            self._saw(args[0])

    def _saw(self, source) -> None:
        try:
            path = str(Path(os.fsdecode(source)).resolve())
        except (TypeError, ValueError):
            return
        if path.startswith(self.split_dir) and path.endswith(".parquet"):
            name = Path(path).stem
            if not self.events or self.events[-1] != name:
                self.events.append(name)

    def before_choice(self) -> set[str]:
        return set(self.events[:self.events.index("CHOICE")])


def train_in_process(root: Path, monkeypatch) -> tuple[dict, ReadLog]:
    from bigmodel_core import stages
    from bigmodel_core.config import load_params
    from bigmodel_core.paths import Paths

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    log = ReadLog(monkeypatch, root / "data/split")
    try:
        stages.get("train").run(load_params(root / "params.yaml"), Paths(root))
    finally:
        log.active = False
    return json.loads((root / "metrics/train.json").read_text()), log


def val_macro_f1_of_bundle(root: Path) -> float:
    from bigmodel_core.evaluation.metrics import classification_metrics
    from bigmodel_core.models.bundle import Predictor

    val = pd.read_parquet(root / "data/split/val.parquet")
    pred = Predictor(root / "models/model")
    index = {lab: i for i, lab in enumerate(pred.labels)}
    y = [index[lab] for lab in val["label"]]
    p = [index[lab] for lab in pred.predict(val["text"].tolist())]
    return classification_metrics(y, p, num_classes=len(pred.labels))["macro_f1"]


@pytest.mark.stage
def test_keyword_data_chooses_tfidf_on_validation_rows_only(tmp_path, monkeypatch):
    root = data_workspace(tmp_path / "ws", keyword_rows(), ["billing", "bug"])  # the default candidates
    run_to_split(root)
    train, log = train_in_process(root, monkeypatch)
    table = {r["name"]: r for r in train["candidates"]}
    assert list(table) == ["linear", "bag"] and train["chosen"] == "linear" and train["model_kind"] == "linear"
    assert table["linear"]["chosen"] and not table["bag"]["chosen"]
    assert table["linear"]["why"].startswith("linear has the highest validation macro-F1")
    assert table["linear"]["val_macro_f1"] > table["bag"]["val_macro_f1"] + 0.05, table
    # the test split was not read before the choice; train and validation were
    assert log.before_choice() == {"train", "val"}, log.events
    # the figure the choice used is the chosen model's score on the validation rows
    assert val_macro_f1_of_bundle(root) == pytest.approx(train["val_macro_f1"])
    assert json.loads((root / "models/model/model.json").read_text())["kind"] == "linear"
    assert train["val_rows"] == len(pd.read_parquet(root / "data/split/val.parquet"))


@pytest.mark.stage
def test_language_data_chooses_the_bag_whatever_the_test_split_says(tmp_path, monkeypatch):
    candidates = [{"kind": "linear"}, {"kind": "bag", "name": "bag-chars", "char_ngrams": [2, 4]}]
    root = data_workspace(tmp_path / "ws", language_rows(), ["north", "south"], candidates)
    run_to_split(root)
    test_file = root / "data/split/test.parquet"
    test = pd.read_parquet(test_file)
    # a test split whose labels are all wrong: had it informed the choice, it would push it the other way
    flipped = test.assign(label=test["label"].map({"north": "south", "south": "north"}))
    flipped.to_parquet(test_file, index=False)
    train, log = train_in_process(root, monkeypatch)
    table = {r["name"]: r for r in train["candidates"]}
    assert train["chosen"] == "bag-chars" and train["model_kind"] == "bag" and table["bag-chars"]["chosen"]
    assert table["bag-chars"]["why"].endswith("more than one standard error above every cheaper candidate's")
    assert table["bag-chars"]["val_macro_f1"] > 0.95 and table["linear"]["val_macro_f1"] < 0.8, table
    assert log.before_choice() == {"train", "val"}, log.events
    assert val_macro_f1_of_bundle(root) == pytest.approx(train["val_macro_f1"])
    meta = json.loads((root / "models/model/model.json").read_text())
    assert meta["kind"] == "bag" and meta["model"]["char_ngrams"] == [2, 4] and meta["model"]["d_model"] == 32


# --------------------------------------------------------------------------- tuning
@pytest.mark.e2e
def test_tuning_with_a_seed_chooses_the_same_settings_twice(tmp_path):
    """Two train stages, each its own process, on the same split: the same trials, scores and choice."""
    root = data_workspace(tmp_path / "first", keyword_rows(300, seed=3), ["billing", "bug"],
                          [{"kind": "linear"}, {"kind": "bag", "train": {"epochs": 2}}],
                          train={"tune": {"trials": 4}})
    run_to_split(root)
    second = tmp_path / "second"
    shutil.copytree(root, second)
    outcomes = []
    for ws in (root, second):
        proc = subprocess.run([sys.executable, "-m", "bigmodel_core.cli", "stage", "train"], cwd=ws, env=env_for(ws),
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "trial 3" in proc.stdout
        train = json.loads((ws / "metrics/train.json").read_text())
        outcomes.append(train)
    a, b = outcomes
    tried = lambda t: [(r["name"], [(x["trial"], x["settings"], x["val_macro_f1"]) for x in r["search"]])  # noqa: E731
                       for r in t["candidates"]]
    assert tried(a) == tried(b) and a["chosen"] == b["chosen"]
    assert [r["trials"] for r in a["candidates"]] == [4, 4]
    for r in a["candidates"]:  # trial 0 is the candidate as written; the others search around it
        assert len({json.dumps(x["settings"], sort_keys=True) for x in r["search"]}) == 4
        best = max(r["search"], key=lambda x: x["val_macro_f1"])  # the first of the best
        assert r["chosen_trial"] in (0, best["trial"])  # the best, or the written settings within 1 SE of it
        kept = r["search"][r["chosen_trial"]]
        assert (r["val_macro_f1"], r["settings"]) == (kept["val_macro_f1"], kept["settings"])
    # the winning settings are what the bundle holds
    meta_a = json.loads((root / "models/model/model.json").read_text())
    meta_b = json.loads((second / "models/model/model.json").read_text())
    assert meta_a == {**meta_b, "bigmodel_version": meta_a["bigmodel_version"]}
    chosen = next(r for r in a["candidates"] if r["chosen"])["settings"]
    assert {k: meta_a["model"][k] for k in chosen if k in meta_a["model"] and k != "kind"} == \
        {k: v for k, v in chosen.items() if k in meta_a["model"] and k != "kind"}
    runs = _mlflow_runs(root)
    assert sum(1 for r in runs if r.data.tags.get("bigmodel.trial") is not None) == 8  # every trial is a nested run
    parents = {r.info.run_id: r for r in runs}
    for r in runs:
        if r.data.tags.get("bigmodel.trial") is not None:
            assert parents[r.data.tags["mlflow.parentRunId"]].data.tags.get("bigmodel.candidate") in ("linear", "bag")


def _mlflow_runs(root: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])

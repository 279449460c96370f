"""Promotion safety: paired statistics with known answers, the gate's rules, experiments, compare-and-set,
the ledger, promote and rollback by hand."""

from __future__ import annotations

import subprocess
import threading

import numpy as np
import pytest

from bigmodel_core import stages
from bigmodel_core.config import EvaluateParams, parse_params
from bigmodel_core.errors import BigmodelError
from bigmodel_core.evaluation.gate import decide
from bigmodel_core.evaluation.metrics import classification_metrics
from bigmodel_core.evaluation.stats import _macro_f1_rows, mcnemar, paired_bootstrap
from bigmodel_core.paths import Paths
from bigmodel_core.stages.deploy import experiment_reason
from tests.conftest import make_workspace, tiny_params_dict


# --------------------------------------------------------------------------- statistics, known answers
@pytest.mark.unit
def test_mcnemar_exact_and_chi_square_match_their_formulas():
    y = np.zeros(12, dtype=int)
    new = np.array([0] * 10 + [1] * 2)  # right on 10 rows
    old = np.array([1] * 10 + [0] * 2)  # right on the other 2
    t = mcnemar(y, new, old)
    # exact two-sided binomial: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert (t["new_only"], t["old_only"], t["method"]) == (10, 2, "exact")
    assert t["p_value"] == pytest.approx(158 / 4096)
    y = np.zeros(60, dtype=int)
    new, old = np.array([0] * 40 + [1] * 20), np.array([1] * 40 + [0] * 20)
    t = mcnemar(y, new, old)
    assert t["method"] == "chi2" and t["statistic"] == pytest.approx(19 ** 2 / 60)
    assert t["p_value"] == pytest.approx(0.014171, abs=1e-6)  # chi-square(1) survival at 6.0167
    same = mcnemar(y, old, old)
    assert same["p_value"] == 1.0 and same["new_only"] == same["old_only"] == 0


@pytest.mark.unit
def test_bootstrap_macro_f1_matches_the_metric_and_brackets_the_truth():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    good = np.where(rng.random(2000) < 0.9, y, rng.integers(0, 3, 2000))
    poor = np.where(rng.random(2000) < 0.6, y, rng.integers(0, 3, 2000))
    counts = np.bincount(y * 3 + good, minlength=9)
    assert _macro_f1_rows(counts, 3)[0] == pytest.approx(classification_metrics(y, good, 3)["macro_f1"])
    r = paired_bootstrap(y, good, poor, 3, samples=500)
    truth = classification_metrics(y, good, 3)["macro_f1"] - classification_metrics(y, poor, 3)["macro_f1"]
    assert r["difference"] == pytest.approx(truth)
    assert 0 < r["low"] < truth < r["high"] and r["high"] - r["low"] < 0.1
    tie = paired_bootstrap(y, good, good, 3, samples=200)
    assert tie["low"] == tie["high"] == tie["difference"] == 0.0
    # two equally good models that err on different rows: the interval must contain 0
    other = np.where(rng.random(2000) < 0.9, y, rng.integers(0, 3, 2000))
    r = paired_bootstrap(y, good, other, 3, samples=500)
    assert r["low"] < 0 < r["high"]
    assert paired_bootstrap(y, good, poor, 3, samples=300, seed=7) == paired_bootstrap(y, good, poor, 3, samples=300, seed=7)


def _gate(y, new, old, **rules):
    p = EvaluateParams(**{"min_accuracy": 0.0, "min_macro_f1": 0.0, "bootstrap_samples": 300, **rules})
    m = classification_metrics(y, new, 2)
    champion = {"version": "1", "accuracy": 0.0, "macro_f1": classification_metrics(y, old, 2)["macro_f1"]}
    return decide(m, champion, p, y=y, pred=new, champion_pred=old)


@pytest.mark.unit
def test_the_gate_decides_on_the_interval_not_the_point_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    old = np.where(rng.random(400) < 0.85, y, 1 - y)
    flip = rng.choice(400, 6, replace=False)  # 6 more errors: a point estimate a hair below the champion
    new = old.copy()
    new[flip] = 1 - y[flip]
    d = _gate(y, new, old, max_regression=0.05)
    rule = next(c for c in d["checks"] if c["rule"] == "max_regression_vs_champion")
    assert rule["difference"] < 0 and rule["value"] >= -0.05 and d["promote"]
    d = _gate(y, new, old, max_regression=0.0)  # no regression allowed: the interval's low end is below 0
    assert not d["promote"] and d["reasons"][0].startswith("max_regression_vs_champion")
    # min_gain: a better point estimate is not enough if the interval reaches below the required gain
    d = _gate(y, old, new, min_gain=0.02)
    rule = next(c for c in d["checks"] if c["rule"] == "min_gain_vs_champion")
    assert rule["difference"] > 0 and not rule["passed"]


@pytest.mark.unit
def test_mcnemar_rule_fails_a_challenger_with_significantly_more_errors():
    y = np.zeros(200, dtype=int)
    old = np.zeros(200, dtype=int)
    new = old.copy()
    new[:30] = 1  # wrong on 30 rows the champion gets right, right on none it gets wrong
    d = _gate(y, new, old, max_regression=1.0)  # the interval rule lets anything through here
    mc = next(c for c in d["checks"] if c["rule"] == "mcnemar_vs_champion")
    assert (mc["old_only"], mc["new_only"]) == (30, 0) and not mc["passed"] and not d["promote"]
    assert "wrong on 30 rows the champion gets right" in d["reasons"][0]


# --------------------------------------------------------------------------- three verdicts
def _wrong_on(y: np.ndarray, rows) -> np.ndarray:
    """Right everywhere but on `rows` (two classes: the other one there)."""
    pred = y.copy()
    pred[list(rows)] = 1 - y[list(rows)]
    return pred


@pytest.mark.unit
def test_three_verdicts_on_synthetic_predictions():
    y = np.array([0, 1] * 200)
    champion = _wrong_on(y, range(0, 20))
    # as good as the champion, wrong on 20 other rows: the interval (about +-0.03) straddles 0 and reaches below
    # -max_regression, McNemar is 20 against 20: not shown non-inferior, not shown worse
    equal = _wrong_on(y, range(20, 40))
    d = _gate(y, equal, champion, max_regression=0.01)
    boot = d["comparison"]["bootstrap"]
    assert boot["low"] < -0.01 and boot["high"] > 0 and d["comparison"]["mcnemar"]["p_value"] > 0.5
    assert (d["verdict"], d["promote"], d["closed_by"]) == ("inconclusive", False, [])
    assert d["reasons"][0].startswith("max_regression_vs_champion: macro-F1 difference to champion v1 is +0.0000")
    assert d["summary"].startswith("champion kept (inconclusive") and "test rows (this split has 400)" in d["summary"]
    need = d["comparison"]["rows_needed"]
    # 40 of 400 rows discordant: (1.96 + 0.84)^2 * 0.1 / 0.01^2 = 7,849 rows from the formula
    assert need["disagreement"] == 0.1 and need["rows_needed_from_disagreement"] == 7849
    assert 0.8 < need["rows_needed"] / 7849 < 1.25  # the same from this split's bootstrap interval
    # the same pair under a margin the split can show: passed
    d = _gate(y, equal, champion, max_regression=0.05)
    assert (d["verdict"], d["promote"], d["summary"]) == ("passed", True, "gate passed")
    # wrong on 40 more rows than the champion: the whole interval is below 0 and McNemar agrees: closed
    worse = _wrong_on(y, range(0, 60))
    d = _gate(y, worse, champion, max_regression=0.01)
    assert d["comparison"]["bootstrap"]["high"] < 0
    assert d["verdict"] == "closed" and d["closed_by"] == ["max_regression_vs_champion", "mcnemar_vs_champion"]
    assert d["summary"].startswith("gate closed: max_regression_vs_champion")
    # worse beyond doubt even under a margin that lets the low end through (max_regression 1.0): closed
    d = _gate(y, worse, champion, max_regression=1.0)
    assert d["verdict"] == "closed" and d["closed_by"] == ["mcnemar_vs_champion"]
    # an inconclusive comparison does not soften a floor: closed, by the floor alone
    d = _gate(y, equal, champion, max_regression=0.01, min_accuracy=0.99)
    assert d["verdict"] == "closed" and d["closed_by"] == ["min_accuracy"]
    assert [r.split(":")[0] for r in d["reasons"]] == ["min_accuracy", "max_regression_vs_champion"]
    # min_gain: as good is not better: inconclusive, and the hint says no number of rows shows a gain that is not there
    d = _gate(y, equal, champion, min_gain=0.01)
    assert d["verdict"] == "inconclusive" and "more test rows would not show the gain" in d["summary"]
    better = _wrong_on(y, range(10, 24))  # right on 10 rows the champion gets wrong, wrong on 4 it gets right
    d = _gate(y, better, champion, min_gain=0.01)  # +0.015, an interval reaching below +0.01: more rows would tell
    assert d["verdict"] == "inconclusive" and d["comparison"]["rows_needed"]["rows_needed"] > 400
    # no champion: nothing to compare, the floors decide
    p = EvaluateParams(min_accuracy=0.5, min_macro_f1=0.5)
    assert decide({"accuracy": 0.9, "macro_f1": 0.9}, None, p)["verdict"] == "passed"
    assert decide({"accuracy": 0.4, "macro_f1": 0.9}, None, p)["verdict"] == "closed"


def _equal_models(rng, n: int, k: int, accuracy: float, d: float):
    """Labels and two equally good models' predictions that differ in correctness on a share d of the rows."""
    y = rng.integers(0, k, n)
    differ = rng.random(n) < d
    first = rng.random(n) < 0.5
    both = rng.random(n) < (accuracy - d / 2) / (1 - d)
    right_a, right_b = np.where(differ, first, both), np.where(differ, ~first, both)

    def predict(right):
        return np.where(right, y, (y + rng.integers(1, k, n)) % k)
    return y, predict(right_a), predict(right_b)


@pytest.mark.unit
def test_the_rows_needed_formula_matches_the_bootstrap():
    """docs/promotion.md: the half-width of the macro-F1 difference's interval is z * sqrt(d / n) for balanced
    classes, and n = (z + 0.84)^2 d / m^2 rows let two equally good models clear max_regression m 80% of the time."""
    from statistics import NormalDist

    rng = np.random.default_rng(11)
    z = NormalDist().inv_cdf(0.975)
    for n, k, accuracy, d in [(400, 4, 0.9, 0.05), (1000, 2, 0.9, 0.06), (2000, 4, 0.85, 0.08), (1000, 10, 0.8, 0.1)]:
        ratios = []
        for _ in range(6):
            y, a, b = _equal_models(rng, n, k, accuracy, d)
            r = paired_bootstrap(y, a, b, k, samples=400)
            seen = float(((a == y) != (b == y)).mean())
            ratios.append((r["high"] - r["low"]) / 2 / (z * np.sqrt(seen / n)))
        assert 0.9 < np.mean(ratios) < 1.1, (n, k, d, ratios)
    # the rows the formula asks for: equally good models pass max_regression 0.02 about 80% of the time there
    d, m = 0.06, 0.02
    n = int(np.ceil((z + NormalDist().inv_cdf(0.8)) ** 2 * d / m ** 2))  # 1,178
    verdicts = []
    for _ in range(60):
        y, a, b = _equal_models(rng, n, 4, 0.9, d)
        p = EvaluateParams(min_accuracy=0.0, min_macro_f1=0.0, bootstrap_samples=300, max_regression=m)
        out = decide(classification_metrics(y, a, 4), {"version": "1", "accuracy": 0.0, "macro_f1": 0.0}, p,
                     y=y, pred=a, champion_pred=b)
        verdicts.append(out["verdict"])
    assert 0.62 <= verdicts.count("passed") / 60 <= 0.95, verdicts
    # and an equally good model is called significantly worse about as often as the confidence allows (5%)
    assert verdicts.count("closed") / 60 <= 0.12, verdicts


# --------------------------------------------------------------------------- experiments
def test_experiments_are_recognised(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert experiment_reason(tmp_path) is None  # not a git work tree: nothing to compare with
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "params.yaml").write_text("a: 1\n")
    git("add", "params.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert experiment_reason(tmp_path) is None
    (tmp_path / "params.yaml").write_text("# a comment and another layout, same values\na:   1\n")
    assert experiment_reason(tmp_path) is None
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert experiment_reason(tmp_path) == "uncommitted changes to params.yaml"
    (tmp_path / "bigmodel_core").mkdir()
    (tmp_path / "bigmodel_core" / "new_model.py").write_text("x = 1\n")  # new code, not yet in git
    assert experiment_reason(tmp_path) == "uncommitted changes to params.yaml, bigmodel_core/"
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-lr")
    assert experiment_reason(tmp_path) == "dvc exp run (lucky-lr)"


def test_a_workspace_that_never_committed_its_params_runs_no_experiments(tmp_path, monkeypatch):
    from bigmodel_core.stages.deploy import params_never_committed

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    # no commit at all (`git init`, then `bigmodel init`): everything is new, nothing is an experiment
    assert params_never_committed(tmp_path) and experiment_reason(tmp_path) is None
    (tmp_path / "README.md").write_text("mine\n")
    git("add", "README.md")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a repository with history, no params yet")
    assert params_never_committed(tmp_path) and experiment_reason(tmp_path) is None
    git("add", "params.yaml", "dvc.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the pipeline")
    assert not params_never_committed(tmp_path) and experiment_reason(tmp_path) is None
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert experiment_reason(tmp_path) == "uncommitted changes to params.yaml"
    assert not params_never_committed(tmp_path / "nowhere")  # no params.yaml there


def test_a_registry_without_champion_takes_an_experiment_and_keeps_the_champion_against_the_next(tmp_path, monkeypatch):
    """A run from uncommitted changes becomes the first champion when the gate passes (there is none to keep); the
    next such run leaves that champion where it is."""
    from bigmodel_core.io import read_json
    from bigmodel_core.tracking.registry import alias_version, ledger
    from tests.conftest import write_params

    for var in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(var, raising=False)
    root = make_workspace(tmp_path / "ws")
    monkeypatch.chdir(root)
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=root,  # noqa: E731
                                    check=True, capture_output=True)
    git("init", "-q")
    git("add", "params.yaml", "dvc.yaml", "bigmodel_core")
    git("commit", "-qm", "the pipeline")
    raw = tiny_params_dict()
    raw["train"]["seed"] = 11
    write_params(root, raw)  # an uncommitted change: this run is an experiment
    params = parse_params(raw)
    for name in stages.STAGES:
        stages.get(name).run(params, Paths(root))
    d = read_json(root / "reports/deploy.json")
    assert d["experiment"] == "uncommitted changes to params.yaml" and d["promoted"] and d["version"] == "1"
    assert d["note"] == ("first champion of tiny-model; an experiment (uncommitted changes to params.yaml) never "
                         "replaces a champion, but there was none to keep")
    client = _client(root)
    assert alias_version(client, "tiny-model", "champion") == "1"
    (record,) = ledger(client, "tiny-model")
    assert record["action"] == "promote" and record["from"] is None and "first champion of tiny-model" in record["why"]

    d = _retrain_and_deploy(root, seed=12)  # still uncommitted: an experiment, and now there is a champion
    assert d["experiment"] == "uncommitted changes to params.yaml" and not d["promoted"] and d["version"] == "2"
    assert "does not move the champion" in d["note"] and "bigmodel promote VERSION" in d["note"]
    assert alias_version(client, "tiny-model", "champion") == "1"
    assert [r["action"] for r in ledger(client, "tiny-model")] == ["promote", "kept"]


def test_a_dvc_experiment_does_not_fill_an_empty_champion_seat(tmp_path, monkeypatch):
    """Under `dvc exp run` even a registry without champion stays without one (a sweep would crown whichever point
    finished first); tests/test_e2e_dvc.py checks the same through DVC."""
    from bigmodel_core.io import read_json
    from bigmodel_core.tracking.registry import alias_version

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "first-point")
    root = make_workspace(tmp_path / "ws")
    monkeypatch.chdir(root)
    params = parse_params(tiny_params_dict())
    for name in stages.STAGES:
        stages.get(name).run(params, Paths(root))
    d = read_json(root / "reports/deploy.json")
    assert not d["promoted"] and d["experiment"] == "dvc exp run (first-point)" and "does not move" in d["note"]
    assert alias_version(_client(root), "tiny-model", "champion") is None


# --------------------------------------------------------------------------- registry
@pytest.fixture(scope="module")
def registry_ws(tmp_path_factory):
    """The tiny pipeline run once: v1 is the champion."""
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        mp.delenv(var, raising=False)
    root = make_workspace(tmp_path_factory.mktemp("registry") / "ws")
    mp.chdir(root)
    params = parse_params(tiny_params_dict())
    for name in stages.STAGES:
        stages.get(name).run(params, Paths(root))
    yield root, params
    mp.undo()


def _client(root=None):
    """The workspace's store, named explicitly: another test may have pointed mlflow's global URI elsewhere."""
    import mlflow

    from bigmodel_core.tracking.store import tracking_uri

    if root is None:
        return mlflow.MlflowClient()
    return mlflow.MlflowClient(tracking_uri(parse_params(tiny_params_dict()), root))


def _retrain_and_deploy(root, seed: int, evaluate: dict | None = None, **deploy):
    raw = tiny_params_dict()
    raw["train"]["seed"] = seed
    raw["evaluate"]["max_regression"] = 1.0  # any retrained model passes the comparison
    raw["evaluate"].update(evaluate or {})
    raw["deploy"].update(deploy)
    params = parse_params(raw)
    for name in ("train", "evaluate", "deploy"):
        out = stages.get(name).run(params, Paths(root))
    return out


def test_a_closed_gate_ends_a_dvc_experiment_without_an_error(registry_ws, monkeypatch):
    """Under `dvc exp run` a closed model gate is recorded but deploy returns normally: a failing stage would make
    DVC drop the experiment, and a sweep's `dvc exp show` would lose the points that lost. Elsewhere it exits 3."""
    from bigmodel_core.errors import GateFailed
    from bigmodel_core.tracking.registry import alias_version

    root, params = registry_ws
    client = _client(root)
    champion = alias_version(client, "tiny-model", "champion")
    closed = {"min_gain_over_baseline": 1.0}  # out of reach: the gate closes
    monkeypatch.setenv("DVC_EXP_NAME", "sweep-point")
    d = _retrain_and_deploy(root, seed=21, evaluate=closed)
    assert not d["promoted"] and d["reasons"][0].startswith("min_gain_over_baseline")
    assert client.get_model_version("tiny-model", d["version"]).tags["bigmodel.gate"] == "failed"
    monkeypatch.delenv("DVC_EXP_NAME")
    with pytest.raises(GateFailed, match="model gate closed: min_gain_over_baseline"):
        _retrain_and_deploy(root, seed=22, evaluate=closed)
    assert alias_version(client, "tiny-model", "champion") == champion


def test_policy_experiments_and_never_register_without_promoting(registry_ws, monkeypatch):
    from bigmodel_core.tracking.registry import alias_version, ledger

    root, params = registry_ws
    client = _client(root)
    assert alias_version(client, "tiny-model", "champion") == "1"
    monkeypatch.setenv("DVC_EXP_NAME", "try-seed-5")
    d = _retrain_and_deploy(root, seed=5)
    assert not d["promoted"] and d["experiment"] == "dvc exp run (try-seed-5)" and "does not move the champion" in d["note"]
    assert client.get_model_version("tiny-model", d["version"]).tags["bigmodel.experiment"] == "dvc exp run (try-seed-5)"
    assert alias_version(client, "tiny-model", "champion") == "1"
    monkeypatch.delenv("DVC_EXP_NAME")
    d = _retrain_and_deploy(root, seed=6, promote="never")
    assert not d["promoted"] and "deploy.promote is never" in d["note"]
    assert alias_version(client, "tiny-model", "champion") == "1"
    assert [r["action"] for r in ledger(client, "tiny-model")][-2:] == ["kept", "kept"]


def test_compare_and_set_lets_one_of_two_racing_runs_promote(registry_ws):
    from bigmodel_core.tracking.registry import alias_version, ledger, move_champion

    root, params = registry_ws
    client = _client(root)
    before = alias_version(client, "tiny-model", "champion")
    versions = sorted(int(v.version) for v in client.search_model_versions("name = 'tiny-model'"))
    a, b = str(versions[-1]), str(versions[-2])
    results = []

    def race(version):
        results.append(move_champion(_client(root), root, "tiny-model", "champion", version, before,
                                     why="race", who="pipeline"))

    threads = [threading.Thread(target=race, args=(v,)) for v in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(moved for moved, _ in results) == [False, True]
    winner = alias_version(client, "tiny-model", "champion")
    assert winner in (a, b) and winner != before
    refused = next(msg for moved, msg in results if not moved)
    assert f"champion is v{winner} now, not v{before}" in refused
    assert sorted(r["action"] for r in ledger(client, "tiny-model")[-2:]) == ["promote", "refused"]


def test_promote_rollback_and_history_by_hand(registry_ws):
    from typer.testing import CliRunner

    from bigmodel_core.cli import app
    from bigmodel_core.tracking.registry import alias_version

    root, params = registry_ws
    client = _client(root)
    runner = CliRunner()
    current = alias_version(client, "tiny-model", "champion")
    res = runner.invoke(app, ["promote", "1", "--reason", "back to the first model"])
    assert res.exit_code == 0, res.output
    assert alias_version(client, "tiny-model", "champion") == "1"
    res = runner.invoke(app, ["rollback", "--reason", "v1 was a mistake"])
    assert res.exit_code == 0, res.output
    assert f"champion: v1 -> v{current}" in res.output and alias_version(client, "tiny-model", "champion") == current
    res = runner.invoke(app, ["promote", "99", "--reason", "x"])
    assert res.exit_code == 1 and "tiny-model has no version '99'" in res.output
    res = runner.invoke(app, ["registry", "history"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0] == f"tiny-model: champion is v{current}"
    assert "promote  v" in lines[-2] and "-> v1  by user:" in lines[-2] and "back to the first model" in lines[-2]
    assert f"v1 -> v{current}  by user:" in lines[-1] and "rollback: v1 was a mistake" in lines[-1]
    assert "promote  none -> v1  by pipeline: gate passed" in lines[1]


def test_rollback_without_an_earlier_champion_refuses_and_changes_nothing(tmp_path, monkeypatch):
    from bigmodel_core.tracking.store import _setup
    from bigmodel_core.tracking.registry import ledger, move_champion, rollback

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = parse_params({**tiny_params_dict(), "tracking": {"uri": f"sqlite:///{tmp_path}/m.db"}})
    client = _setup(params, tmp_path).MlflowClient()
    client.create_registered_model("tiny-model")
    with pytest.raises(BigmodelError, match="tiny-model has no champion: nothing to roll back"):
        rollback(params, tmp_path, "x")
    client.create_model_version("tiny-model", source=str(tmp_path))
    assert move_champion(client, tmp_path, "tiny-model", "champion", "1", None, why="first", who="pipeline")[0]
    with pytest.raises(BigmodelError, match="v1 is the first champion on record: there is no earlier version"):
        rollback(params, tmp_path, "x")
    assert str(client.get_model_version_by_alias("tiny-model", "champion").version) == "1"
    assert len(ledger(client, "tiny-model")) == 1


def test_a_broken_version_fails_the_smoke_test_and_the_alias_stays(tmp_path, monkeypatch):
    from bigmodel_core.tracking.store import _setup
    from bigmodel_core.tracking.registry import ledger, move_champion, promote_by_hand

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = parse_params({**tiny_params_dict(), "tracking": {"uri": f"sqlite:///{tmp_path}/m.db"}})
    client = _setup(params, tmp_path).MlflowClient()
    client.create_registered_model("tiny-model")
    for _ in range(2):
        client.create_model_version("tiny-model", source=str(tmp_path / "nothing-here"))
    move_champion(client, tmp_path, "tiny-model", "champion", "1", None, why="first", who="pipeline")
    with pytest.raises(BigmodelError, match=r"models:/tiny-model/2: smoke test failed in a fresh process, champion "
                                            r"was not moved"):
        promote_by_hand(params, tmp_path, "2", "try it")
    assert str(client.get_model_version_by_alias("tiny-model", "champion").version) == "1"
    assert len(ledger(client, "tiny-model")) == 1


def test_rollback_walks_back_through_the_champions_and_refuses_an_alias_moved_elsewhere(tmp_path, monkeypatch):
    from bigmodel_core.tracking import registry
    from bigmodel_core.tracking.store import _setup

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(registry, "smoke_test", lambda *a, **k: None)  # the versions here have no model files
    params = parse_params({**tiny_params_dict(), "tracking": {"uri": f"sqlite:///{tmp_path}/m.db"}})
    client = _setup(params, tmp_path).MlflowClient()
    client.create_registered_model("tiny-model")
    for _ in range(4):
        client.create_model_version("tiny-model", source=str(tmp_path))
    for old, new in ((None, "1"), ("1", "2"), ("2", "3")):
        assert registry.move_champion(client, tmp_path, "tiny-model", "champion", new, old, why="gate", who="pipeline")[0]
    assert registry.rollback(params, tmp_path, "bad") == "champion: v3 -> v2"
    assert registry.rollback(params, tmp_path, "worse") == "champion: v2 -> v1"  # not back to v3
    with pytest.raises(BigmodelError, match="v1 is the first champion on record"):
        registry.rollback(params, tmp_path, "again")
    client.set_registered_model_alias("tiny-model", "champion", "4")  # by hand, in the MLflow UI
    with pytest.raises(BigmodelError, match=r"v4 became champion outside bigmodel \(the ledger ends at v1\)"):
        registry.rollback(params, tmp_path, "x")
    assert registry.alias_version(client, "tiny-model", "champion") == "4"
    assert [r["action"] for r in registry.ledger(client, "tiny-model")] == ["promote"] * 3 + ["rollback"] * 2
    assert (tmp_path / "m.db.bigmodel-lock").exists()  # the lock lives beside the shared store


@pytest.mark.unit
def test_a_champion_with_other_labels_closes_the_gate_with_a_reason():
    y = np.array([0, 1, 0, 1])
    m = classification_metrics(y, y, 2)
    d = decide(m, None, EvaluateParams(min_accuracy=0, min_macro_f1=0), y=y, pred=y,
               champion_with_other_labels={"version": "4", "labels": ["ham", "spam", "promo"]}, labels=["ham", "spam"])
    assert not d["promote"]
    assert d["reasons"] == ["same_labels_as_champion: this model's labels ['ham', 'spam'] differ from champion v4's "
                            "['ham', 'promo', 'spam'], so the two cannot be compared; if the change is intended, set "
                            "evaluate.allow_label_change: true (or promote it by hand with `bigmodel promote VERSION "
                            "--reason ...`)"]
    allowed = decide(m, None, EvaluateParams(min_accuracy=0, min_macro_f1=0, allow_label_change=True), y=y, pred=y,
                     champion_with_other_labels={"version": "4", "labels": ["ham", "spam", "promo"]}, labels=["ham", "spam"])
    assert allowed["promote"] and allowed["reasons"] == []
    assert [c["passed"] for c in allowed["checks"] if c["rule"] == "same_labels_as_champion"] == [True]


def test_a_retried_deploy_stands_by_the_earlier_decision_after_a_rollback(registry_ws):
    """Deploy re-run on an already registered bundle (a crash, a tracking-code change) must not undo a rollback."""
    import json

    from bigmodel_core.tracking.registry import alias_version, ledger, move_champion

    root, _ = registry_ws
    client = _client(root)
    raw = tiny_params_dict()
    raw["train"]["seed"] = 11
    params, paths = parse_params(raw), Paths(root)
    stages.get("train").run(params, paths)
    stages.get("evaluate").run(params, paths)
    before = alias_version(client, "tiny-model", "champion")
    decision_file = paths.evaluation / "decision.json"
    decision = json.loads(decision_file.read_text())
    decision.update(promote=True, reasons=[])  # this test is about deploy: let the gate pass whatever the luck
    decision_file.write_text(json.dumps(decision))
    new = stages.get("deploy").run(params, paths)
    assert new["promoted"] and alias_version(client, "tiny-model", "champion") == new["version"] != before
    assert move_champion(client, root, "tiny-model", "champion", before, new["version"], why="rollback: test",
                         who="user:test", action="rollback")[0]
    entries = len(ledger(client, "tiny-model"))
    again = stages.get("deploy").run(params, paths)
    assert again["version"] == new["version"] and not again["promoted"] and "was decided on before" in again["note"]
    assert alias_version(client, "tiny-model", "champion") == before and len(ledger(client, "tiny-model")) == entries

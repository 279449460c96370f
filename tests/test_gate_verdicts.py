"""Acceptance: the model gate's three verdicts on the user's path, `bigmodel run` in a workspace with a champion.

A retrain within noise keeps the champion and is no error (exit 0, `NOT promoted`, no `error:`, no `gate_closed`
notification), while a model that has learned nothing closes the gate (exit 3). The retrain is made inconclusive
by construction, not by luck: only a warn rule's setting changes, so validate's output and train's data and seed
are the same and the new bundle (its input rules differ) predicts what the champion predicts; with
`evaluate.min_gain` it cannot show a gain and nothing shows it worse.

    .venv/bin/python -m pytest -q tests/test_gate_verdicts.py
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import dvc, make_workspace, run_cmd
from tests.test_e2e_dvc import registry_versions
from tests.test_notify import receiver  # noqa: F401  (a webhook on 127.0.0.1, as a fixture)

pytestmark = pytest.mark.e2e

BIGMODEL = [sys.executable, "-m", "bigmodel_core.cli"]


def stages_ran(stdout: str) -> list[str]:
    names = ("ingest", "clean", "validate", "augment", "split", "train", "evaluate", "deploy")
    return [p[0] for p in (line.split() for line in stdout.splitlines() if line.startswith("  "))
            if len(p) > 1 and p[0] in names and p[1] == "ran"]


def test_a_retrain_within_noise_keeps_the_champion_and_a_worse_one_closes_the_gate(tmp_path, receiver):  # noqa: F811
    port, received = receiver
    root = make_workspace(tmp_path / "ws")
    dvc(root, "init", "--no-scm", "-q")
    hook = f"notify.urls=[json://127.0.0.1:{port}/hook]"
    first = run_cmd([*BIGMODEL, "run", "-S", hook], root, timeout=900)
    assert "registered tiny-model version 1" in first.stdout and "promoted" in first.stdout
    versions, client = registry_versions(root)
    champion = lambda: str(client.get_model_version_by_alias("tiny-model", "champion").version)  # noqa: E731
    assert versions == [1] and champion() == "1"
    assert [body["type"] for _, body in received] == ["success"]  # the promotion

    # within noise: the same model again, under a rule that asks for a gain of 0.01
    proc = run_cmd([*BIGMODEL, "run", "-S", "validate.rules.too_long.max_words=4000", "-S", "evaluate.min_gain=0.01"],
                   root, check=False, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "error:" not in out and "gate closed" not in out
    assert stages_ran(proc.stdout) == ["validate", "train", "evaluate", "deploy"], proc.stdout
    decision = json.loads((root / "reports/evaluate/decision.json").read_text())
    test = decision["comparison"]["mcnemar"]
    assert (test["new_only"], test["old_only"]) == (0, 0)  # the construction: the champion's predictions
    assert (decision["verdict"], decision["promote"], decision["closed_by"]) == ("inconclusive", False, [])
    assert [r.split(":")[0] for r in decision["reasons"]] == ["min_gain_vs_champion"]
    assert json.loads((root / "metrics/eval.json").read_text())["verdict"] == "inconclusive"
    line = next(l for l in proc.stdout.splitlines() if "registered tiny-model version 2" in l)
    assert "NOT promoted: champion kept (inconclusive" in line and "min_gain_vs_champion" in line, line
    assert "more test rows would not show the gain" in line  # no gain at all: no number of rows would show one
    versions, client = registry_versions(root)
    assert versions == [1, 2] and champion() == "1"
    assert str(client.get_model_version_by_alias("tiny-model", "challenger").version) == "2"
    assert client.get_model_version("tiny-model", "2").tags["bigmodel.gate"] == "inconclusive"
    assert [body["type"] for _, body in received] == ["success"]  # no gate_closed, no failure
    deploy = json.loads((root / "reports/deploy.json").read_text())
    assert deploy["verdict"] == "inconclusive" and not deploy["promoted"]

    # a model that has learned nothing: significantly worse than the champion, which closes the gate even with
    # the floors at 0
    proc = run_cmd([*BIGMODEL, "run", "-S", "train.lr=1e-07", "-S", "train.epochs=1", "-S", "evaluate.min_gain=null",
                    "-S", "evaluate.min_accuracy=0", "-S", "evaluate.min_macro_f1=0"], root, check=False, timeout=900)
    assert proc.returncode == 3, (proc.stdout + proc.stderr)[-3000:]
    assert "error:" in proc.stderr and "model gate closed: max_regression_vs_champion" in proc.stderr
    decision = json.loads((root / "reports/evaluate/decision.json").read_text())
    assert decision["verdict"] == "closed" and "max_regression_vs_champion" in decision["closed_by"]
    assert decision["comparison"]["bootstrap"]["high"] < 0
    versions, _ = registry_versions(root)
    assert versions == [1, 2, 3] and champion() == "1"
    assert [body["type"] for _, body in received] == ["success", "warning"]  # gate_closed
    assert "gate closed at deploy" in received[-1][1]["title"]

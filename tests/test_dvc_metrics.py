"""End-to-end tier: metrics and plots are git-tracked, so `dvc exp show` and `dvc metrics diff` show numbers.

dvc.yaml declares metrics/*.json and plots/*.csv `cache: false`: DVC leaves them to git. A file that
.gitignore hides is missing from every commit and experiment, and DVC prints `!` instead of its values.
The workspace here uses the repo's own .gitignore, so this fails if metrics/ or plots/ are ignored again.
"""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
import yaml

from tests.conftest import REPO, dvc, make_workspace, run_cmd, tiny_params_dict

pytestmark = pytest.mark.e2e

# What the README tells the user to commit after a run (section "Reproducing with DVC").
TO_COMMIT = ("dvc.lock", "metrics/", "plots/")


def git(root, *args):
    return run_cmd(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], root)


def changed_paths(root) -> set[str]:
    out = git(root, "status", "--porcelain", "--untracked-files=all").stdout
    return {line[3:] for line in out.splitlines() if line.strip()}


def exp_metrics(rows: list[dict]) -> dict[str, dict]:
    """`dvc exp show --json` -> {commit name or experiment name: {metrics file: values}}."""
    found = {}

    def take(entry, name):
        data = entry.get("data") or {}
        found[name] = {path: (m.get("data") or {}) for path, m in (data.get("metrics") or {}).items()}

    for row in rows:
        if row.get("rev") == "workspace":
            continue
        take(row, "baseline")
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                take(rev, rev.get("name") or rev["rev"])
    return found


def test_exp_show_and_metrics_diff_have_real_numbers(tmp_path):
    raw = tiny_params_dict()
    raw["train"]["epochs"] = 1
    # This test is about DVC's view of the metrics, not the gate: let the experiment through whatever it scores.
    raw["evaluate"].update(max_regression=1.0, confidence=0.999)
    root = make_workspace(tmp_path / "ws", raw)
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    git(root, "init", "-q")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "project")

    dvc(root, "repro")
    changed = changed_paths(root)
    assert changed, "a run changed nothing git can see"
    assert {"dvc.lock", "metrics/eval.json", "metrics/train.json", "metrics/data_quality.json",
            "plots/confusion.csv", "plots/training.csv"} <= changed
    assert all(p.startswith(TO_COMMIT) for p in changed), f"not covered by the README's commit list: {sorted(changed)}"
    # deploy's record of this workspace's registry is written, and git ignores it
    assert (root / "reports/deploy.json").exists()
    git(root, "check-ignore", "-q", "reports/deploy.json")

    git(root, "add", *TO_COMMIT)
    git(root, "commit", "-qm", "baseline: one epoch")
    assert changed_paths(root) == set()

    dvc(root, "exp", "run", "-n", "two-epochs", "-S", "train.epochs=2")

    shown = exp_metrics(json.loads(dvc(root, "exp", "show", "--json").stdout))
    assert set(shown) == {"baseline", "two-epochs"}, shown.keys()
    for name, files in shown.items():
        ev, tr = files.get("metrics/eval.json", {}), files.get("metrics/train.json", {})
        assert isinstance(ev.get("accuracy"), float) and 0.0 <= ev["accuracy"] <= 1.0, (name, files)
        assert isinstance(ev.get("macro_f1"), float), (name, files)
        assert isinstance(files.get("metrics/data_quality.json"), dict) and files["metrics/data_quality.json"], (name, files)
        assert tr.get("epochs_run") == (1 if name == "baseline" else 2), (name, tr)
    # the baseline's numbers are the committed file's
    committed = json.loads(git(root, "show", "HEAD:metrics/eval.json").stdout)
    assert shown["baseline"]["metrics/eval.json"]["accuracy"] == committed["accuracy"]

    # the table a person reads: a number in every accuracy cell, where `!` used to be
    rows = list(csv.DictReader(io.StringIO(dvc(root, "exp", "show", "--csv").stdout)))
    accuracy = {r["Experiment"] or "baseline": float(r["accuracy"]) for r in rows if r["rev"] != "workspace"}
    assert accuracy == {name: files["metrics/eval.json"]["accuracy"] for name, files in shown.items()}, rows

    # the workspace holds the experiment's results; HEAD the baseline's
    diff = json.loads(dvc(root, "metrics", "diff", "--json").stdout)
    epochs = diff["metrics/train.json"]["epochs_run"]
    assert (epochs["old"], epochs["new"], epochs["diff"]) == (1, 2, 1)
    assert isinstance(diff["metrics/eval.json"]["latency_p50_ms"]["old"], float)
    text = dvc(root, "metrics", "diff").stdout
    line = next(ln for ln in text.splitlines() if "epochs_run" in ln)
    assert line.split()[-3:] == ["1", "2", "1"], text
    assert yaml.safe_load((root / "params.yaml").read_text())["train"]["epochs"] == 2

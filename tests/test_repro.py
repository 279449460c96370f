"""Verified reproduction in a repository of one's own (`bigmodel init`), end to end on a tiny config:

deploy.git_commit commits, tags and pushes; `bigmodel verify-repro` re-derives the version from the commit and
the DVC remote (and fails when the data was tampered with); a 2-point `dvc exp run --queue` sweep gives each
experiment its own MLflow run in the workspace's registry. The tests share one workspace and run in order.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, dvc, run_cmd, tiny_params_dict

pytestmark = pytest.mark.e2e

TAG = "model/tiny-model/v1"


def bigmodel(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cmd([str(Path(BIN) / "bigmodel"), *args], root, check=check, timeout=900)


def git(root: Path, *args: str) -> str:
    return run_cmd(["git", *args], root).stdout.strip()


def registry(root: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.MlflowClient()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A git repository made a workspace by `bigmodel init`: a CSV source kept by DVC (`dvc add`) in
    data/sources/, a second one outside the repository, deploy.git_commit on, everything committed."""
    import pandas as pd

    from bigmodel_core.data.demo import generate

    base = tmp_path_factory.mktemp("repro")
    root = base / "mine"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    bigmodel(root, "init")
    rows = generate(rows=700, seed=3)[["text", "label"]].dropna()
    rows = rows[rows["label"].isin(["sports", "business", "science", "travel"])]
    rows.iloc[:550].to_csv(root / "data/sources/mine.csv", index=False)
    rows.iloc[550:].to_csv(base / "extra.csv", index=False)
    raw = tiny_params_dict()
    raw["data"]["sources"] = [{"name": "mine", "path": "data/sources/mine.csv", "format": "csv"},
                              {"name": "extra", "path": "../extra.csv", "format": "csv"}]
    raw["validate"]["max_quarantine_fraction"] = 0.5
    raw["deploy"]["git_commit"] = True
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    dvc(root, "add", "-q", "data/sources/mine.csv")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "a workspace of my own")
    assert pd.read_csv(base / "extra.csv").shape[0] > 50
    return root


def test_git_commit_refuses_uncommitted_inputs_before_anything_runs(ws):
    (ws / "data/sources/README.md").write_text("edited, not committed\n")
    refused = bigmodel(ws, "run", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "uncommitted changes to inputs of the pipeline: data/sources/README.md" in refused.stderr
    assert not (ws / "dvc.lock").exists() and not (ws / "data/raw").exists()
    git(ws, "checkout", "--", "data/sources/README.md")


def test_a_run_pushes_commits_tags_and_records_the_version(ws):
    before = git(ws, "rev-parse", "HEAD")
    out = bigmodel(ws, "run").stdout
    assert "added the local folder remote bigmodel-local" in out
    assert "source extra (../extra.csv) lies outside the pipeline's inputs" in out
    head = git(ws, "rev-parse", "HEAD")
    assert head != before and git(ws, "rev-parse", "HEAD~1") == before
    assert f"reproducible from commit {head[:12]} (tag {TAG})" in out
    assert git(ws, "log", "-1", "--format=%s").startswith("tiny-model v1: promoted, test accuracy ")
    committed = set(git(ws, "show", "--name-only", "--format=", "HEAD").splitlines())
    assert {"dvc.lock", "metrics/eval.json", "metrics/data_quality.json", "plots/training.csv",
            "data/.gitignore", "models/.gitignore"} <= committed
    assert git(ws, "status", "--porcelain") == ""  # nothing the run wrote is left uncommitted or unignored
    assert git(ws, "rev-parse", f"{TAG}^{{commit}}") == head
    assert "up to date" in dvc(ws, "status").stdout
    # the remote holds every cached output: DVC finds nothing to push
    assert "Everything is up to date" in dvc(ws, "push").stdout + dvc(ws, "push").stderr
    tags = registry(ws).get_model_version("tiny-model", "1").tags
    assert tags["bigmodel.repro.commit"] == head and tags["bigmodel.repro.tag"] == TAG
    assert tags["bigmodel.repro.dvc_remote"] == str((ws / ".bigmodel/dvc-storage").resolve())
    lock = yaml.safe_load(git(ws, "show", "HEAD:dvc.lock"))
    assert lock["stages"]["deploy"]["outs"][0]["path"] == "reports/deploy.json"


def test_verify_repro_re_derives_the_version_exactly(ws):
    proc = bigmodel(ws, "verify-repro", "tiny-model", "1")
    assert re.search(r"reproduced: tiny-model v1 from commit [0-9a-f]{12} \(model/tiny-model/v1\): \d+ metrics match "
                     r"exactly", proc.stdout), proc.stdout[-3000:]
    assert re.search(r"test_macro_f1 +\S+ +\S+ +ok", proc.stdout)
    assert "data and model byte for byte as recorded in dvc.lock: data/raw" in proc.stdout
    # the workspace is as it was: one worktree, one registered version, nothing to commit
    assert len(git(ws, "worktree", "list").splitlines()) == 1
    assert [str(v.version) for v in registry(ws).search_model_versions("name='tiny-model'")] == ["1"]
    assert git(ws, "status", "--porcelain") == ""


def test_verify_repro_fails_when_the_data_was_tampered_with(ws, tmp_path):
    # 1. the source kept by DVC, altered in the remote: DVC refuses the object, verify-repro names the file
    md5 = yaml.safe_load((ws / "data/sources/mine.csv.dvc").read_text())["outs"][0]["md5"]
    stored = ws / ".bigmodel/dvc-storage/files/md5" / md5[:2] / md5[2:]
    original = stored.read_bytes()
    stored.chmod(0o644)
    stored.write_bytes(original.replace(b",sports\n", b",travel\n"))
    altered = bigmodel(ws, "verify-repro", "tiny-model", "1", check=False)
    assert altered.returncode == 1, altered.stdout + altered.stderr
    assert "has no intact copy of data/sources/mine.csv" in altered.stderr
    assert "changed since it was pushed" in altered.stderr
    stored.write_bytes(original)

    # 2. the source outside the repository, edited: the re-derived figures differ, and the message says which
    extra = ws.parent / "extra.csv"
    text = extra.read_text().splitlines(keepends=True)
    extra.write_text("".join(text[: len(text) // 2]))
    differs = bigmodel(ws, "verify-repro", "tiny-model", "1", check=False)
    assert differs.returncode == 1, differs.stdout + differs.stderr
    found = re.search(r"was not reproduced from commit [0-9a-f]{12}: data_rows_in registered (\d+), reproduced (\d+)",
                      differs.stderr)
    assert found, differs.stderr
    registered = registry(ws).get_run(registry(ws).get_model_version("tiny-model", "1").run_id).data.metrics
    assert int(found.group(1)) == registered["data_rows_in"] > int(found.group(2))
    assert "data/raw" in differs.stderr  # the first output that differs from the record
    assert len(git(ws, "worktree", "list").splitlines()) == 1
    extra.write_text("".join(text))

    # 3. a version with no record, and one that does not exist
    missing = bigmodel(ws, "verify-repro", "tiny-model", "9", check=False)
    assert missing.returncode == 2 and "tiny-model has no version '9'" in missing.stderr


def test_a_queued_sweep_gives_each_experiment_its_own_mlflow_run(ws):
    for lr, name in (("0.001", "lr-low"), ("0.01", "lr-high")):
        dvc(ws, "exp", "run", "--queue", "-S", f"train.lr={lr}", "-n", name)
    dvc(ws, "queue", "start")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = dvc(ws, "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(3)
    assert status.count("Success") == 2, status + dvc(ws, "queue", "logs", "lr-low", check=False).stdout[-3000:]

    shown = json.loads(dvc(ws, "exp", "show", "--json").stdout)
    exps = {e["name"]: e["data"] for row in shown for ex in (row.get("experiments") or []) for e in ex["revs"]}
    assert set(exps) == {"lr-low", "lr-high"}
    for name, lr in (("lr-low", 0.001), ("lr-high", 0.01)):
        assert exps[name]["params"]["params.yaml"]["data"]["train"]["lr"] == lr
        assert 0 <= exps[name]["metrics"]["metrics/eval.json"]["data"]["accuracy"] <= 1

    # each experiment is a run of the workspace's registry, named after it, not of DVC's temporary copy
    client = registry(ws)
    exp_id = client.get_experiment_by_name("bigmodel").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([exp_id]) if r.info.run_name in ("lr-low", "lr-high")}
    assert set(runs) == {"lr-low", "lr-high"}
    assert runs["lr-low"].data.params["train.lr"] == "0.001" and runs["lr-high"].data.params["train.lr"] == "0.01"
    assert runs["lr-low"].data.tags["bigmodel.dvc_experiment"] == "lr-low"
    versions = {str(v.version): v for v in client.search_model_versions("name='tiny-model'")}
    assert sorted(versions) == ["1", "2", "3"]
    assert {versions[v].tags["bigmodel.experiment"] for v in ("2", "3")} == {"dvc exp run (lr-low)",
                                                                              "dvc exp run (lr-high)"}
    assert str(client.get_model_version_by_alias("tiny-model", "champion").version) == "1"  # experiments never promote
    assert not list((ws / ".dvc/tmp/exps").glob("tmp*/mlflow.db"))


def test_a_failed_release_keeps_the_version_and_bigmodel_release_records_it_later(ws):
    head = git(ws, "rev-parse", "HEAD")
    failed = bigmodel(ws, "run", "-S", "train.seed=5", "-S", "evaluate.max_regression=1.0",
                      "-S", "deploy.dvc_remote=team", check=False)
    assert failed.returncode == 2, failed.stdout[-2000:] + failed.stderr[-2000:]
    assert "deploy.dvc_remote: no DVC remote named 'team'" in failed.stderr
    assert "the version is registered: once the cause is fixed, `bigmodel release` records it" in failed.stderr
    assert git(ws, "rev-parse", "HEAD") == head  # nothing committed
    client = registry(ws)
    latest = max(int(v.version) for v in client.search_model_versions("name='tiny-model'"))
    assert "bigmodel.repro.commit" not in client.get_model_version("tiny-model", str(latest)).tags

    store = ws.parent / "team-store"
    dvc(ws, "remote", "add", "team", str(store))
    done = bigmodel(ws, "release")
    assert f"recorded tiny-model v{latest}: commit " in done.stdout and f"tag model/tiny-model/v{latest}" in done.stdout
    new_head = git(ws, "rev-parse", "HEAD")
    assert new_head != head and git(ws, "rev-parse", f"model/tiny-model/v{latest}^{{commit}}") == new_head
    assert yaml.safe_load(git(ws, "show", "HEAD:params.yaml"))["train"]["seed"] == 5  # what ran is committed
    assert git(ws, "status", "--porcelain") == "M .dvc/config"  # the remote added here, for the user to commit
    assert any(p.is_file() for p in store.rglob("*"))
    tags = registry(ws).get_model_version("tiny-model", str(latest)).tags
    assert tags["bigmodel.repro.commit"] == new_head and tags["bigmodel.repro.dvc_remote"] == str(store)

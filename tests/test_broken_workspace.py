"""A workspace whose own state is broken: a corrupt dvc.lock, a deleted mlflow.db. `bigmodel run` (and the flow a
schedule runs) stops before its first stage with one `error:` line naming the file, the place and the fix, exit 2,
and changes nothing: no stage runs, every output and params.yaml stay as they were."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import env_for, run_cmd, snapshot
from tests.test_failures import BIGMODEL, copy_of, done_ws, error_lines  # noqa: F401  (done_ws: one completed run)

pytestmark = pytest.mark.e2e

LOCK_FIX = "Fix: restore the committed one with `git checkout dvc.lock`, or delete it to re-run every stage"


def _cut_short(text: str) -> tuple[str, str]:
    """dvc.lock ending after the `size:` key of a dependency (a full disk, a killed editor): still YAML, but not
    what DVC's schema allows. Returns the text and the start of the error line (DVC names the entry's first line)."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if i > 20 and line.strip().startswith("size:"))
    entry = max(j for j in range(i) if lines[j].lstrip().startswith("- path:"))
    bad = "\n".join(lines[:i] + [lines[i].split(":")[0] + ":"]) + "\n"
    return bad, f"error: dvc.lock: line {entry + 1}, column "


def _garbled(text: str) -> tuple[str, str]:
    """One line of dvc.lock damaged in the middle of the file (a bracket that is never closed): not YAML at all."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if i > 5 and line.strip().startswith("cmd:"))
    lines[i] = lines[i].replace("cmd: ", "cmd: [")
    return "\n".join(lines) + "\n", f"error: dvc.lock: line {i + 2}, column "


@pytest.mark.parametrize("damage", [_cut_short, _garbled], ids=["cut-short", "garbled"])
def test_a_corrupt_dvc_lock_is_named_with_its_line_and_the_fix(done_ws, tmp_path, damage):  # noqa: F811
    root = copy_of(done_ws, tmp_path / "ws")
    good = (root / "dvc.lock").read_text()
    bad, starts = damage(good)
    (root / "dvc.lock").write_text(bad)
    before, params = snapshot(root), (root / "params.yaml").read_text()
    # plain: asked before any server starts; --force: asked by the flow's first task
    for args in (["run"], ["run", "--force"]):
        proc = run_cmd([BIGMODEL, *args], root, check=False)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        errors = error_lines(proc.stderr)
        assert len(errors) == 1 and errors[0].startswith(starts), proc.stderr[-3000:]
        assert errors[0].endswith(LOCK_FIX) and "DVC cannot read it, so nothing was run" in errors[0]
        if damage is _cut_short:
            assert "expected int at stages -> " in errors[0] and errors[0].split(" -> ")[-1].startswith("size;")
        else:
            # libyaml's wording ("did not find expected ',' or ']'") where ruamel.yaml.clib is installed, the pure
            # parser's ("expected ',' or ']', but got ':'") in a fresh install, which no longer pulls clib in
            assert re.search(r"not valid YAML: (did not find )?expected ',' or '\]'.* \(while parsing a flow sequence "
                             rf"that starts at line {int(starts.split('line ')[1].split(',')[0]) - 1}, column \d+\)",
                             errors[0]), errors[0]
        assert "Running stage" not in proc.stdout + proc.stderr and "[1/8]" not in proc.stdout
    assert snapshot(root) == before and (root / "params.yaml").read_text() == params
    assert (root / "dvc.lock").read_text() == bad
    # the fix it names: the committed file back (what `git checkout dvc.lock` does), and the run is a no-op again
    (root / "dvc.lock").write_text(good)
    assert "nothing to do" in run_cmd([BIGMODEL, "run"], root).stdout


def test_a_deleted_mlflow_db_stops_the_run_before_its_first_stage(done_ws, tmp_path):  # noqa: F811
    root = copy_of(done_ws, tmp_path / "ws")
    for f in root.glob("mlflow.db*"):
        f.unlink()
    before, params = snapshot(root), (root / "params.yaml").read_text()
    for args in (["run"], ["run", "--force"], ["run", "-S", "train.epochs=1"]):
        proc = run_cmd([BIGMODEL, *args], root, check=False)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        errors = error_lines(proc.stderr)
        assert len(errors) == 1, proc.stderr[-3000:]
        assert errors[0].startswith("error: tracking database mlflow.db is missing, but reports/deploy.json records "
                                    "tiny-model v1 registered in it")
        assert "Restore the database" in errors[0] and "deploy.allow_new_registry: true" in errors[0]
        assert "prefect:" not in proc.stdout and "[1/8]" not in proc.stdout  # stopped before any server or stage
    # the flow itself (what a schedule or a deployment runs) refuses the same way before its first stage
    flow = subprocess.run([sys.executable, "-m", "bigmodel_flows.retrain"], cwd=root, env=env_for(root),
                          capture_output=True, text=True, timeout=600)
    assert flow.returncode != 0
    assert "tracking database mlflow.db is missing" in flow.stdout + flow.stderr
    assert "[1/8]" not in flow.stdout
    assert snapshot(root) == before and (root / "params.yaml").read_text() == params
    assert not list(root.glob("mlflow.db*"))  # no empty registry was made on the way

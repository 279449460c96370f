"""A workspace whose own state is broken: a corrupt dvc.lock. `bigmodel run` stops before its first stage with one `error:` line naming the file, the place and the fix, exit 2,
and changes nothing: no stage runs, every output and params.yaml stay as they were."""

from __future__ import annotations

import pytest

from tests.conftest import run_cmd, snapshot
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
            assert "not valid YAML: did not find expected ',' or ']' (while parsing a flow sequence" in errors[0]
        assert "Running stage" not in proc.stdout + proc.stderr and "[1/8]" not in proc.stdout
    assert snapshot(root) == before and (root / "params.yaml").read_text() == params
    assert (root / "dvc.lock").read_text() == bad
    # the fix it names: the committed file back (what `git checkout dvc.lock` does), and the run is a no-op again
    (root / "dvc.lock").write_text(good)
    assert "nothing to do" in run_cmd([BIGMODEL, "run"], root).stdout


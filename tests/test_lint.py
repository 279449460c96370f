"""`make lint` (ruff check, ruff format --check, mypy over bigmodel_core, flows and tasks) on a copy of the repo:
clean it passes; one lint error, one formatting fault and one type error put into three modules make it fail,
and its output names each file with the rule it broke."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

VENV = Path(sys.executable).parent.parent


def _copy_repo(dest: Path) -> Path:
    """What make lint reads: the Makefile, the tool configuration and the three packages (mypy's cache too, when
    there is one: only its entries for the installed libraries are reused, so this copy is checked afresh)."""
    dest.mkdir()
    for name in ("Makefile", "pyproject.toml", "setup.py", "constraints.txt"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("bigmodel_core", "flows", "tasks"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    if (REPO / ".mypy_cache").is_dir():
        shutil.copytree(REPO / ".mypy_cache", dest / ".mypy_cache", ignore=shutil.ignore_patterns("links"))
    return dest


def _make_lint(root: Path) -> subprocess.CompletedProcess:
    # this test's interpreter's environment has the tools; -o: never reinstall it from the copy
    args = ["make", "--no-print-directory", f"VENV={VENV}", "-o", f"{VENV}/.bigmodel-installed", "lint"]
    return subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=900)


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code)


@pytest.mark.e2e
def test_make_lint_names_the_file_and_rule_of_each_fault(tmp_path):
    root = _copy_repo(tmp_path / "repo")
    clean = _make_lint(root)
    assert clean.returncode == 0, (
        f"make lint fails on the repo as it is:\n{clean.stdout[-6000:]}\n{clean.stderr[-3000:]}"
    )
    assert "All checks passed!" in clean.stdout
    assert re.search(r"^Success: no issues found in \d+ source files$", clean.stdout, re.M)

    # a lint error (an unused import) in one module, a formatting fault in another, a type error in a task
    _append(root / "bigmodel_core/paths.py", "def _probe() -> None:\n    import os\n")
    _append(root / "bigmodel_core/reporting/notify.py", "SPACING = [1,2,  3]\n")
    _append(root / "tasks/release.py", 'STAGE_COUNT: int = "eight"\n')
    broken = _make_lint(root)
    out = broken.stdout + broken.stderr

    assert broken.returncode != 0, out[-6000:]
    # ruff check: the rule, then where (" --> file:line:col")
    assert re.search(r"^F401 \[\*\] `os` imported but unused$", out, re.M), out[-6000:]
    assert re.search(r"^\s*--> bigmodel_core/paths\.py:\d+:\d+$", out, re.M), out[-6000:]
    # ruff format --check: the file it would rewrite (and where), and only that one
    unformatted = re.findall(r"^unformatted: File would be reformatted\n\s*--> ([^:\n]+):\d+:\d+$", out, re.M)
    assert unformatted == ["bigmodel_core/reporting/notify.py"], out[-6000:]
    assert re.search(r"^1 file would be reformatted, \d+ files already formatted$", out, re.M), out[-6000:]
    # mypy: the task's file under its own path (not the bigmodel_tasks link mypy reads it through), and the code
    mypy_errors = re.findall(r"^(\S+):(\d+): error: (.+)  \[([a-z-]+)\]$", out, re.M)
    assert [(f, code) for f, _, _, code in mypy_errors] == [("tasks/release.py", "assignment")], out[-6000:]
    assert 'expression has type "str", variable has type "int"' in mypy_errors[0][2]

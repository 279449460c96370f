"""End-to-end tier: metrics and plots are git-tracked, so `dvc exp show` and `dvc metrics diff` show numbers.

dvc.yaml declares metrics/*.json and plots/*.csv `cache: false`: DVC leaves them to git. A file that
.gitignore hides is missing from every commit and experiment, and DVC prints `!` instead of its values.
The workspace here uses the repo's own .gitignore, so this fails if metrics/ or plots/ are ignored again.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sys

import pytest
import yaml

from bigmodel_core.data.quality import HEADLINE
from tests.conftest import REPO, dvc, env_for, make_workspace, run_cmd, tiny_params_dict

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


def in_terminal(args: list[str], cwd, columns: int, rows: int = 50, seconds: float = 300) -> list[str]:
    """The lines a terminal `columns` wide shows while `args` runs in it (a pseudo-terminal; escape sequences
    taken out). A pager that waits at the end of its text ('(END)') is told to quit."""
    import fcntl
    import os
    import pty
    import select
    import signal
    import struct
    import termios
    import time

    env = {k: v for k, v in env_for(cwd).items() if k not in ("LESS", "PAGER", "DVC_PAGER")}
    env.update(TERM="xterm", COLUMNS=str(columns), LINES=str(rows))
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's size, then the command
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.chdir(cwd)
            os.execvpe(args[0], args, env)
        finally:
            os._exit(127)
    out, deadline = b"", time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child is gone
                    break
                if not chunk:
                    break
                out += chunk
                if b"(END)" in out[-200:]:
                    os.write(fd, b"q")
            elif os.waitpid(pid, os.WNOHANG)[0]:
                break
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>()][0-9A-Za-z]?|\r|\x07", "", out.decode("utf-8", "replace"))
    return [line.rstrip() for line in text.splitlines() if line.strip() and "(END)" not in line]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    """A git workspace with one run committed (one epoch) and one experiment (two epochs): (root, what `dvc exp
    show --json` says)."""
    tmp_path = tmp_path_factory.mktemp("exp")
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
    return root, exp_metrics(json.loads(dvc(root, "exp", "show", "--json").stdout))


def test_exp_show_and_metrics_diff_have_real_numbers(experiments):
    root, shown = experiments
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

    # the table a person reads: every metric of the three files has a column of its own, none folded into `…`
    # (the whole data-quality report, 300 columns of it, once pushed every other figure out)
    table = dvc(root, "exp", "show").stdout.splitlines()
    header = next(line for line in table if "Experiment" in line).split()
    names = {k for files in shown.values() for values in files.values() for k in values}
    assert names - {"history"} <= {h.split(":")[-1] for h in header}, sorted(names - set(header))
    metrics_show = dvc(root, "metrics", "show").stdout.splitlines()
    assert len(metrics_show[0]) < 1000 and "quarantine_fraction" in metrics_show[0], metrics_show[0][:300]

    # the workspace holds the experiment's results; HEAD the baseline's
    diff = json.loads(dvc(root, "metrics", "diff", "--json").stdout)
    epochs = diff["metrics/train.json"]["epochs_run"]
    assert (epochs["old"], epochs["new"], epochs["diff"]) == (1, 2, 1)
    assert isinstance(diff["metrics/eval.json"]["latency_p50_ms"]["old"], float)
    text = dvc(root, "metrics", "diff").stdout
    line = next(ln for ln in text.splitlines() if "epochs_run" in ln)
    assert line.split()[-3:] == ["1", "2", "1"], text
    assert yaml.safe_load((root / "params.yaml").read_text())["train"]["epochs"] == 2


@pytest.mark.skipif(shutil.which("less") is None, reason="less is not installed (DVC pages `dvc exp show` through it)")
def test_exp_show_in_a_terminal_200_columns_wide(experiments):
    """`dvc exp show` as a 200-column terminal shows it: DVC renders the table for its pager (`less -S`), which
    shows the first 200 columns. There the headline data metrics stand, named, with their numbers."""
    root, _ = experiments
    screen = in_terminal([sys.executable, "-m", "dvc", "exp", "show"], root, columns=200)
    assert screen and max(len(line) for line in screen) <= 200, screen
    header = next(line for line in screen if "Experiment" in line)
    assert all(name in header.split() for name in HEADLINE), header
    branch = git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    baseline = next(line for line in screen if line.split()[:1] == [branch])
    committed = json.loads(git(root, "show", "HEAD:metrics/data_quality.json").stdout)
    cells = baseline.split()
    assert str(committed["rows_in"]) in cells and str(committed["rows_out"]) in cells and "…" not in cells[:8], baseline

"""Failure behaviour, tried with real processes, real signals and real file operations.

Each case ends with one `error:` line naming the cause and a documented exit code, the last good outputs
unchanged, and the registry unchanged (or one legitimately new version, history intact).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, dvc, env_for, make_workspace, run_cmd, snapshot
from tests.test_e2e_dvc import registry_versions

pytestmark = pytest.mark.e2e

BIGMODEL = str(Path(BIN) / "bigmodel")


@pytest.fixture(scope="module")
def done_ws(trained_ws) -> Path:
    """A workspace after one completed `bigmodel run`: tiny-model v1 is the champion. It is the session's
    (conftest.trained_ws, made once): every test here copies it before it changes anything."""
    return trained_ws


def copy_of(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def set_params(root: Path, **changes) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def champion(root: Path) -> str:
    _, client = registry_versions(root)
    return str(client.get_model_version_by_alias("tiny-model", "champion").version)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _last_mlflow_run(root: Path) -> dict:
    with sqlite3.connect(root / "mlflow.db") as con:
        run_uuid, status = con.execute("SELECT run_uuid, status FROM runs ORDER BY start_time DESC LIMIT 1").fetchone()
        tags = dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_uuid,)).fetchall())
    return {"status": status, "tags": tags}


@pytest.mark.parametrize("signum, whole_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c-to-the-terminal-group", "sigterm-to-bigmodel-run"])
def test_an_interrupted_run_stops_in_seconds_with_one_line_and_leaves_nothing_behind(done_ws, tmp_path, signum,
                                                                                     whole_group):
    root = copy_of(done_ws, tmp_path / "ws")
    set_params(root, train__epochs=400, train__patience=400)  # long enough to be interrupted while training
    before, lock_before = snapshot(root), (root / "dvc.lock").read_text()
    proc = subprocess.Popen([BIGMODEL, "run"], cwd=root, env=env_for(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.strip().startswith("epoch 2:"):
            break
    else:
        pytest.fail("training never reached epoch 2:\n" + "".join(out) + proc.stderr.read())
    children = _descendants(proc.pid)
    assert children, "bigmodel run had no child processes while training"
    sent = time.monotonic()
    (os.killpg if whole_group else os.kill)(proc.pid, signum)
    rest, err = proc.communicate(timeout=120)
    seconds = time.monotonic() - sent
    everything = "".join(out) + rest + err

    assert proc.returncode == 128 + signum, everything
    assert seconds < 20, f"took {seconds:.1f}s to stop"
    name = signal.Signals(signum).name
    assert error_lines(err) == [f"error: bigmodel run interrupted by {name} during stage 'train': stopped; the last "
                                "good outputs and dvc.lock are unchanged, and the next run goes on from there"]
    assert "Traceback" not in everything and "Error logging to API" not in everything
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(p) for p in children):
        time.sleep(0.1)
    assert [p for p in children if _running(p)] == [], "processes left behind"
    assert snapshot(root) == before and (root / "dvc.lock").read_text() == lock_before
    last = _last_mlflow_run(root)
    assert last["status"] == "KILLED"
    assert last["tags"]["bigmodel.failure_reason"] == f"interrupted by {name} during stage 'train'"
    # DVC's locks were released: the next DVC command runs, and train is what is left to do
    status = dvc(root, "status", "--json")
    assert "train" in json.loads(status.stdout.strip().splitlines()[-1])
    assert registry_versions(root)[0] == [1] and champion(root) == "1"


def test_an_interrupted_stage_run_by_dvc_exits_130_with_one_line(done_ws, tmp_path):
    root = copy_of(done_ws, tmp_path / "ws")
    set_params(root, train__epochs=400, train__patience=400)
    model_before = snapshot(root)
    proc = subprocess.Popen([BIGMODEL, "stage", "train"], cwd=root, env=env_for(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch 2:"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert error_lines(err) == ["error: stage train interrupted by SIGINT: stopped; its last good outputs are unchanged"]
    assert "Traceback" not in err
    assert snapshot(root) == model_before


def _read_only(path: Path):
    """Make a directory unwritable, for root too (chattr +i) or by mode bits; returns the undo."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a directory read-only for root here: chattr +i said {done.stderr.strip()!r}")
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o555)
    return lambda: path.chmod(0o755)


def test_a_stage_failing_for_its_own_reason_names_the_cause_everywhere(tmp_path):
    root = make_workspace(tmp_path / "ws")
    dvc(root, "init", "--no-scm", "-q")
    undo = _read_only(root / "data")
    try:
        proc = run_cmd([BIGMODEL, "run"], root, check=False)
    finally:
        undo()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: stage 'ingest' failed (exit 1): stage ingest: ")
    assert "(PermissionError)" in errors[0] and ": data/.raw." in errors[0]  # the cause, the file as the user sees it
    assert "Traceback" not in proc.stdout + proc.stderr
    assert error_lines(proc.stdout.replace("    error:", "error:")) == []  # not twice: the closing line says it
    # the Prefect task log has the stage's traceback and its line
    with sqlite3.connect(root / ".prefect/prefect.db") as con:
        logs = [m for (m,) in con.execute("SELECT message FROM log")]
    assert any("ingest | Traceback (most recent call last):" in m for m in logs)
    assert any("ingest | PermissionError:" in m for m in logs)
    assert not (root / "data/raw").exists()
    last = _last_mlflow_run(root)  # the execution's MLflow run says the same
    assert last["status"] == "FAILED" and "(PermissionError)" in last["tags"]["bigmodel.failure_reason"]
    assert registry_versions(root)[0] == []


def test_errors_name_files_the_way_params_yaml_does(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.csv").write_text("text,label\nfine text,sports\n")
    (corpus / "bad.csv").write_bytes(b"text,label\n\xff\xfe broken,sports\n")
    root = make_workspace(tmp_path / "deep" / "ws")
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["data"]["sources"] = [{"name": "mine", "path": "../../corpus/*.csv", "format": "csv"}]
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = run_cmd([BIGMODEL, "stage", "ingest"], root, check=False)
    assert proc.returncode == 2
    hint = ("if the file has another encoding, set encoding: on the source (latin-1, cp1252, utf-16, ...); or set "
            "undecodable: quarantine to set those rows aside")
    assert error_lines(proc.stderr) == [f"error: ../../corpus/bad.csv: not UTF-8 text at byte 11 (line 2; source "
                                        f"'mine'); {hint}"]
    raw["data"]["sources"][0]["path"] = str(corpus / "*.csv")  # written absolute: named absolute
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = run_cmd([BIGMODEL, "stage", "ingest"], root, check=False)
    assert error_lines(proc.stderr) == [f"error: {corpus / 'bad.csv'}: not UTF-8 text at byte 11 (line 2; source "
                                        f"'mine'); {hint}"]
    proc = run_cmd([BIGMODEL, "stage", "clean"], root, check=False)  # a stage's own input, relative to the workspace
    assert error_lines(proc.stderr) == ["error: data/raw/rows.parquet: input table not found (run the stage that "
                                        "makes it first)"]


def test_a_label_set_change_closes_the_gate_unless_allowed(done_ws, tmp_path):
    root = copy_of(done_ws, tmp_path / "ws")
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["data"]["labels"] = ["sports", "business", "science"]  # travel rows become unknown labels
    raw["validate"]["rules"]["unknown_label"]["max_fraction"] = 0.5
    raw["validate"]["max_quarantine_fraction"] = 0.6
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = run_cmd([BIGMODEL, "run"], root, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and "same_labels_as_champion" in errors[0]
    assert "evaluate.allow_label_change: true" in errors[0]
    versions, _ = registry_versions(root)
    assert versions == [1, 2] and champion(root) == "1"  # registered as the challenger, champion untouched

    proc = run_cmd([BIGMODEL, "run", "-S", "evaluate.allow_label_change=true"], root, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert registry_versions(root)[0] == [1, 2] and champion(root) == "2"


def test_a_deleted_dvc_cache_reruns_but_registers_no_duplicate(done_ws, tmp_path):
    root = copy_of(done_ws, tmp_path / "ws")
    shutil.rmtree(root / ".dvc/cache")
    proc = run_cmd([BIGMODEL, "run"], root)
    assert "train     ran" in proc.stdout and "deploy    ran" in proc.stdout  # DVC re-ran the stages
    assert "already registered as tiny-model v1" in proc.stdout
    assert registry_versions(root)[0] == [1] and champion(root) == "1"


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_a_copied_or_moved_workspace_never_writes_into_the_original(done_ws, tmp_path):
    original = _files(done_ws / "mlartifacts")
    copy = copy_of(done_ws, tmp_path / "copy")
    # a new model (another seed); this test is about where its artifacts go, so the comparison with the
    # champion on ~110 test rows must not decide it: any regression passes
    proc = run_cmd([BIGMODEL, "run", "-S", "train.seed=43", "-S", "evaluate.max_regression=1.0"], copy)
    assert f"moved or copied from {done_ws}" in proc.stderr
    assert registry_versions(copy)[0] == [1, 2]
    assert _files(done_ws / "mlartifacts") == original  # nothing written into the original workspace
    with sqlite3.connect(copy / "mlflow.db") as con:
        places = [r[0] for r in con.execute("SELECT artifact_uri FROM runs UNION ALL SELECT storage_location FROM "
                                            "model_versions UNION ALL SELECT artifact_location FROM experiments")]
    assert places and all(str(copy) in p and str(done_ws) not in p for p in places)

    moved = tmp_path / "moved"
    copy.rename(moved)  # the old place is gone: the registry still serves from the new one
    proc = run_cmd([BIGMODEL, "predict", "the team won the cup final"], moved)
    assert "label" in proc.stdout and f"moved or copied from {copy}" in proc.stderr

    bare = tmp_path / "bare"  # the database without its artifacts: refused, nothing written
    bare.mkdir()
    shutil.copy(done_ws / "params.yaml", bare / "params.yaml")
    shutil.copy(done_ws / "mlflow.db", bare / "mlflow.db")
    db_before = (bare / "mlflow.db").read_bytes()
    proc = run_cmd([BIGMODEL, "predict", "some text"], bare, check=False)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        f"error: mlflow.db stores its artifacts in {done_ws}/mlartifacts, which belongs to another workspace, and "
        f"this workspace ({bare}) has no mlartifacts/ folder: copy mlartifacts/ along with the database (a moved or "
        "copied workspace needs both); nothing was written"]
    assert (bare / "mlflow.db").read_bytes() == db_before


def test_the_temporary_prefect_server_never_outlives_its_command(tmp_path):
    """Stopped when the command ends; and when it is killed with SIGKILL (nothing can run then), the kernel
    stops it (Linux's parent-death signal)."""
    script = ("import sys, time\nfrom pathlib import Path\nfrom bigmodel_core.pipeline.orchestration import api_server\n"
              "with api_server(Path(sys.argv[1])) as url:\n    print(url, flush=True)\n"
              "    sys.stdin.readline() if sys.argv[2] == 'return' else time.sleep(600)\n")
    env = env_for(tmp_path)
    for how in ("return", "wait"):
        proc = subprocess.Popen([str(Path(BIN) / "python"), "-c", script, str(tmp_path), how], cwd=tmp_path, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
        servers = _descendants(proc.pid)
        assert servers, "no server process"
        if how == "wait":
            from urllib.request import urlopen

            with urlopen(f"{url}/health", timeout=10) as r:
                assert r.status == 200
            proc.kill()
        else:
            proc.stdin.write("\n")  # the block ends normally
            proc.stdin.flush()
        proc.wait(timeout=60)
        assert proc.returncode == (-signal.SIGKILL if how == "wait" else 0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(p) for p in servers):
            time.sleep(0.1)
        assert [p for p in servers if _running(p)] == [], f"server left running after the command ({how})"

"""Shared fixtures: tiny params and a temporary workspace laid out like the repo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
BIN = str(Path(sys.executable).parent)


def tiny_params_dict() -> dict:
    """The repo's params.yaml shrunk so a whole pipeline runs in seconds on one CPU core."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["sources"][0]["rows"] = 800
    raw["validate"]["min_rows"] = 50
    raw["validate"]["min_rows_per_class"] = 5
    raw["tokenizer"].update(vocab_size=600, max_length=32)
    raw["model"].update(d_model=32, n_layers=1, n_heads=2, d_ff=64)
    raw["train"].update(epochs=2, batch_size=32, num_threads=1)
    raw["evaluate"].update(min_accuracy=0.3, min_macro_f1=0.3)
    raw["deploy"]["model_name"] = "tiny-model"
    raw["flow"]["retries"] = 0
    return raw


def write_params(root: Path, raw: dict) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def make_workspace(root: Path, raw: dict | None = None) -> Path:
    """A DVC workspace (no git) with the repo's dvc.yaml, the code its deps name, and tiny params."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(REPO / "bigmodel_core", root / "bigmodel_core", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "data/sources").mkdir(parents=True)
    (root / "data/sources/README.md").write_text("sources\n")
    write_params(root, raw if raw is not None else tiny_params_dict())
    return root


def env_for(root: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run_cmd(args: list[str], cwd: Path, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env_for(cwd), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cmd([sys.executable, "-m", "dvc", *args], root, check=check)


@pytest.fixture
def tiny_raw() -> dict:
    return tiny_params_dict()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws")


@pytest.fixture
def dvc_workspace(workspace: Path) -> Path:
    dvc(workspace, "init", "--no-scm", "-q")
    dvc(workspace, "config", "core.analytics", "false")
    return workspace


def snapshot(root: Path) -> dict[str, bytes]:
    """Contents of every stage output file (to prove a failure changed nothing)."""
    out = {}
    for sub in ("data/raw", "data/clean", "data/validated", "data/augmented", "data/split", "models", "metrics", "reports", "plots"):
        base = root / sub
        if base.exists():
            for p in sorted(base.rglob("*")):
                if p.is_file():
                    out[str(p.relative_to(root))] = p.read_bytes()
    return out


needs_datasets = pytest.mark.skipif(not DATASETS.exists(), reason=f"real datasets not found at {DATASETS}")


@pytest.fixture(autouse=True)
def _no_tracking_uri_leak():
    """mlflow.set_tracking_uri() also sets MLFLOW_TRACKING_URI in os.environ, which every later
    subprocess (DVC stages started by the flow) would inherit; put the variable back after each test."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before

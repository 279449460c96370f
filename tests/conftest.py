"""Shared fixtures: tiny params and a temporary workspace laid out like the repo."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# One torch/BLAS/OpenMP thread per process: `make test` runs 2 pytest-xdist workers on a 2-core machine, each
# starting stage processes, and two threads per process there made a tiny model's evaluate stage 10x slower
# (one-text latency p50 18 ms against 1.6 ms with one thread). A value the caller exported wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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
    raw["model"].update(kind="transformer", d_model=32, n_layers=1, n_heads=2, d_ff=64)
    raw["train"].update(epochs=2, batch_size=32, num_threads=1)
    # a model this small is judged by lowered floors, not against the TF-IDF baseline (tests of that rule set it)
    raw["evaluate"].update(min_accuracy=0.3, min_macro_f1=0.3, min_gain_over_baseline=None)
    raw["deploy"]["model_name"] = "tiny-model"
    raw["flow"]["retries"] = 0
    return raw


def write_params(root: Path, raw: dict) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def make_workspace(root: Path, raw: dict | None = None) -> Path:
    """A DVC workspace (no git) with the repo's dvc.yaml, the code its deps name, the champion reference's folder
    (registry/, without a champion.json: no promote or rollback yet) and tiny params."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(REPO / "bigmodel_core", root / "bigmodel_core", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "data/sources").mkdir(parents=True)
    (root / "data/sources/README.md").write_text("sources\n")
    shutil.copytree(REPO / "registry", root / "registry", ignore=shutil.ignore_patterns("champion.json"))
    write_params(root, raw if raw is not None else tiny_params_dict())
    return root


# Variables that would point a test at the user's own Prefect or MLflow: a server, a profile, a database.
USER_STATE_VARS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_PROFILE",
    "PREFECT_UI_API_URL",
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
)


def env_for(root: Path) -> dict:
    """The environment of a command run in workspace `root`: its Prefect state stays in `root/.prefect`
    and MLflow falls back to the workspace's params (sqlite:///mlflow.db under `root`)."""
    env = dict(os.environ)
    for name in USER_STATE_VARS:
        env.pop(name, None)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["PREFECT_HOME"] = str(Path(root).resolve() / ".prefect")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["DVC_NO_ANALYTICS"] = "1"
    # Prefect's 20 s default for a temporary server to start failed on CI's loaded 2-core machine
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
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


@pytest.fixture(scope="session")
def trained_ws(tmp_path_factory) -> Path:
    """One completed `bigmodel run` with the tiny params in a DVC workspace (no git): tiny-model v1 is the
    champion. Made once per session (once per xdist worker) for the tests that only need "a completed run".

    Never change it: copy it first (`copy_workspace`); a copy's first MLflow use moves its artifact paths to
    the copy (bigmodel_core.tracking.mlflow_store), which is how a user's copied workspace behaves too."""
    import sqlite3

    root = make_workspace(tmp_path_factory.mktemp("trained") / "ws")
    dvc(root, "init", "--no-scm", "-q")
    run_cmd([str(Path(BIN) / "bigmodel"), "run"], root)
    # read with sqlite: mlflow.set_tracking_uri would export MLFLOW_TRACKING_URI past the per-test guard
    with sqlite3.connect(root / "mlflow.db") as con:
        assert [v for (v,) in con.execute("SELECT version FROM model_versions")] == [1]
    return root


def copy_workspace(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session", autouse=True)
def _isolated_from_user_state(tmp_path_factory):
    """Tests never write into the user's Prefect database or mlflow.db.

    `make run` and a user's shell may export PREFECT_HOME (the repo's .prefect/), MLFLOW_TRACKING_URI
    or PREFECT_API_URL; for the whole session this process gets a throwaway PREFECT_HOME and none of
    those variables, and `env_for` gives each workspace's commands a PREFECT_HOME of their own.
    Prefect reads its settings when it is imported (test modules import flows at collection), so
    its global settings are refreshed after the change and again after it is undone.
    """
    saved = {name: os.environ.get(name) for name in (*USER_STATE_VARS, "PREFECT_HOME")}
    for name in USER_STATE_VARS:
        os.environ.pop(name, None)
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    _refresh_prefect_settings()
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _refresh_prefect_settings()


def _refresh_prefect_settings() -> None:
    if "prefect.context" in sys.modules:
        sys.modules["prefect.context"].refresh_global_settings_context()


def _restore_env(before: dict) -> None:
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module", autouse=True)
def _no_user_state_leak_from_a_module():
    """Like the per-test guard below, for a module's own fixtures, which are set up before that guard's snapshot
    (a module fixture that runs stages in-process sets MLFLOW_TRACKING_URI through mlflow.set_tracking_uri): every
    variable of USER_STATE_VARS is put back when the module ends, so the next module (on the same pytest-xdist
    worker, in whatever order) starts without them."""
    before = {name: os.environ.get(name) for name in USER_STATE_VARS}
    yield
    _restore_env(before)


@pytest.fixture(autouse=True)
def _no_tracking_uri_leak():
    """mlflow.set_tracking_uri() / set_registry_uri() also set MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI
    in os.environ, which every later subprocess (DVC stages started by the flow) would inherit; put the
    variables back after each test. Then Prefect's global settings are made to follow the environment again:
    a test that monkeypatches PREFECT_HOME and starts a server (which refreshes the settings) leaves them
    pointing at its workspace once monkeypatch has put PREFECT_HOME back (this fixture is torn down after
    monkeypatch, being set up before it)."""
    yield from _tracking_uri_kept()
    _prefect_settings_follow_env()


def _prefect_settings_follow_env() -> None:
    if "prefect.settings" not in sys.modules:
        return
    settings = sys.modules["prefect.settings"].get_current_settings()
    home = os.environ.get("PREFECT_HOME")
    api = os.environ.get("PREFECT_API_URL")
    if (home and Path(settings.home) != Path(home)) or (settings.api.url or None) != api:
        _refresh_prefect_settings()


def _tracking_uri_kept():
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {name: os.environ.get(name) for name in names}
    yield
    _restore_env(before)


def make_tiny_backbone(directory: Path) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary of the demo corpus' words, saved like a hub model.

    Nothing can be downloaded here, so the tests build the 'pretrained' backbone themselves; it is
    randomly initialised, which is all a test of the fine-tuning path needs.
    """
    import re

    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from bigmodel_core.data.demo import generate

    directory.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in generate(600, 7)["text"].dropna() for w in re.findall(r"[a-z]+", str(t).lower())})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    fast.save_pretrained(str(directory))
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return make_tiny_backbone(tmp_path_factory.mktemp("backbone") / "tiny-bert")


# --------------------------------------------------------------------------- tiers
# Every test has exactly one tier (docs/testing.md):
#   unit   pure functions on tiny inputs, in this process: no subprocess, no listening socket (`make test-fast`)
#   stage  one stage or a few, or a store (MLflow's sqlite, a checkpoint), in a temp workspace, in this process
#   e2e    the whole flow, DVC, the CLI as a subprocess, servers, a browser, signals
# A test gets its module's tier from this table unless it carries a tier mark of its own; a module that mixes
# tiers takes its commonest one here and marks the others (a module-wide `pytestmark` tier would add a second).
TIERS = ("unit", "stage", "e2e")
MODULE_TIER = {
    "test_bad_input": "e2e",
    "test_batching_encoders": "unit",
    "test_broken_files": "e2e",
    "test_broken_workspace": "e2e",
    "test_clean_paths": "unit",
    "test_cleaning_quality": "unit",
    "test_cli": "e2e",
    "test_config": "unit",
    "test_cuda": "stage",
    "test_dag": "unit",
    "test_datasets": "stage",
    "test_docs": "unit",
    "test_drift": "unit",
    "test_dvc_edges": "unit",
    "test_dvc_metrics": "e2e",
    "test_dvc_outcome": "e2e",
    "test_e2e_auto": "e2e",
    "test_e2e_dvc": "e2e",
    "test_e2e_flow": "e2e",
    "test_e2e_kinds": "e2e",
    "test_empty_data": "unit",
    "test_failures": "e2e",
    "test_fixed_splits": "unit",
    "test_formats": "unit",
    "test_gate_verdicts": "e2e",
    "test_init": "e2e",
    "test_images": "unit",
    "test_io": "unit",
    "test_isolation": "e2e",
    "test_kernels": "unit",
    "test_label_noise": "unit",
    "test_layering": "unit",
    "test_lint": "e2e",
    "test_metrics_gate": "unit",
    "test_mlflow_runs": "stage",
    "test_mlflow_ui": "stage",
    "test_model_registry": "unit",
    "test_model_selection": "unit",
    "test_modalities": "unit",
    "test_notify": "stage",
    "test_orchestration": "unit",
    "test_plots_page": "unit",
    "test_prefect_db": "unit",
    "test_promotion": "stage",
    "test_real_servers": "e2e",
    "test_repro": "e2e",
    "test_run_recovery": "stage",
    "test_schedule": "e2e",
    "test_schedule_fires": "e2e",
    "test_serving": "e2e",
    "test_split_augment": "unit",
    "test_split_keys": "unit",
    "test_stages": "stage",
    "test_tiers": "unit",
    "test_tracking_live": "stage",
    "test_tracking_store": "unit",
    "test_train_stage": "e2e",
    "test_training": "unit",
    "test_training_portability": "unit",
    "test_ui_browser": "e2e",
    "test_ui_links": "e2e",
    "test_vectorized_text": "unit",
    "test_vision_models": "unit",
    "test_workspace_runs": "e2e",
}
TIER_PROBLEMS = pytest.StashKey[list]()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects on the marks given here
def pytest_collection_modifyitems(config, items):
    problems = []
    for item in items:
        own = [m.name for m in item.iter_markers() if m.name in TIERS]
        if not own:
            tier = MODULE_TIER.get(Path(str(item.path)).stem)
            if tier is None:
                problems.append(f"{item.nodeid}: {item.path.name} is not in MODULE_TIER (tests/conftest.py)")
                continue
            item.add_marker(tier)
        elif len(own) > 1:
            problems.append(f"{item.nodeid}: {len(own)} tiers {own}, a test has exactly one")
    config.stash[TIER_PROBLEMS] = problems


class TierBroken(AssertionError):
    """A unit test reached for something its tier rules out."""


def _refuse(what: str):
    def refused(*args, **kwargs):
        raise TierBroken(f"a unit test {what}: give it the stage or e2e tier (tests/conftest.py, MODULE_TIER)")
    return refused


@contextlib.contextmanager
def _unit_tier_guard(item):
    """While a unit test sets up (its fixtures of every scope included), runs and tears down, starting a
    process or listening on a socket fails at once and names what was done."""
    if item.get_closest_marker("unit") is None:
        yield
        return
    import platform
    import socket

    # the first call runs `uname -p` and caches it; MLflow's import asks, which is no test's doing
    platform.processor()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess.Popen, "_execute_child", _refuse("starts a subprocess"))
        for name in ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp"):
            if hasattr(os, name):
                mp.setattr(os, name, _refuse(f"calls os.{name}"))
        mp.setattr(socket.socket, "listen", _refuse("listens on a socket (a server)"))
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _unit_tier_guard(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _unit_tier_guard(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with _unit_tier_guard(item):
        yield

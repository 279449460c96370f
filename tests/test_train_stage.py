"""Stage tier: the train stage as a real process: resume after SIGKILL, stale checkpoints, 2-process DDP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import env_for, make_workspace, tiny_params_dict, write_params

TIMING = {"seconds", "rows_per_second", "tokens_per_second"}


@pytest.fixture(scope="module")
def split_ws(tmp_path_factory):
    """A workspace with the tiny pipeline run up to the split stage."""
    from bigmodel_core import stages
    from bigmodel_core.config import parse_params
    from bigmodel_core.paths import Paths

    root = make_workspace(tmp_path_factory.mktemp("train-stage") / "ws")
    params = parse_params(tiny_params_dict())
    for name in ("ingest", "clean", "validate", "augment", "split"):
        stages.get(name).run(params, Paths(root))
    return root


def copy_ws(src: Path, dst: Path, **sections) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("mlflow.db*", "mlartifacts", ".bigmodel"))
    raw = tiny_params_dict()
    for section, values in sections.items():
        if section == "model" and "kind" in values:  # another kind: the tiny params' transformer keys go
            from bigmodel_core.config import keys_left_by_kind_switch

            for key in keys_left_by_kind_switch(values["kind"], list(raw["model"]), set(values)):
                del raw["model"][key]
        raw[section].update(values)
    write_params(dst, raw)
    return dst


def train_cmd() -> list[str]:
    return [sys.executable, "-m", "bigmodel_core.cli", "stage", "train"]


def run_train(root: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(train_cmd(), cwd=root, env=env_for(root), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def state_dict(root: Path) -> dict:
    return torch.load(root / "models/model/model.pt", weights_only=True)


def history(root: Path) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in json.loads((root / "metrics/train.json").read_text())["history"]]


# Slow enough per step (batch 8, 64-dim model) that a kill lands inside an epoch, not between two.
SLOW = {"model": {"d_model": 64, "n_heads": 4, "d_ff": 128}, "tokenizer": {"max_length": 64},
        "train": {"epochs": 3, "batch_size": 8, "checkpoint_every": 5, "log_every": 5, "num_threads": 1}}


def test_sigkill_mid_epoch_then_rerun_resumes_to_the_same_weights_and_metrics(split_ws, tmp_path):
    straight = copy_ws(split_ws, tmp_path / "straight", **SLOW)
    run_train(straight)

    crashed = copy_ws(split_ws, tmp_path / "crashed", **SLOW)
    meta = crashed / ".bigmodel/train/checkpoint.json"
    proc = subprocess.Popen(train_cmd(), cwd=crashed, env=env_for(crashed), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if meta.exists():
            m = json.loads(meta.read_text())
            if m["epoch"] == 2 and m["steps_in_epoch"] > 0:  # a checkpoint from inside epoch 2
                proc.send_signal(signal.SIGKILL)
                killed_at = m
                break
        time.sleep(0.005)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the stage finished before it could be killed"
    assert killed_at is not None and not (crashed / "models/model/model.pt").exists()

    out = run_train(crashed).stdout
    resumed = json.loads((crashed / "metrics/train.json").read_text())
    assert "train: resumed from step" in out and resumed["resumed_from_step"] >= killed_at["step"]
    assert resumed["resumed_from_step"] % SLOW["train"]["checkpoint_every"] == 0
    a, b = state_dict(straight), state_dict(crashed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert history(straight) == history(crashed)
    assert not (crashed / ".bigmodel/train").exists()  # a finished stage leaves nothing to resume from


def test_changed_params_discard_the_checkpoint(split_ws, tmp_path):
    ws = copy_ws(split_ws, tmp_path / "ws", **SLOW)
    work = ws / ".bigmodel/train"
    proc = subprocess.Popen(train_cmd(), cwd=ws, env=env_for(ws), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (work / "checkpoint.json").exists():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert (work / "checkpoint.pt").exists()
    raw = tiny_params_dict()
    for section, values in SLOW.items():
        raw[section].update(values)
    raw["train"]["lr"] = 0.001
    write_params(ws, raw)
    out = run_train(ws).stdout
    assert "discarding the checkpoint of an earlier run" in out and "resumed from" not in out
    assert json.loads((ws / "metrics/train.json").read_text())["resumed_from_step"] is None


def test_two_gloo_processes_match_one_process(split_ws, tmp_path):
    """DDP on CPU: same data, same steps; the final metrics agree within float-summation noise."""
    same = {"model": {"dropout": 0.0}, "train": {"epochs": 2, "num_threads": 1}}
    one = copy_ws(split_ws, tmp_path / "one", **same)
    two = copy_ws(split_ws, tmp_path / "two", model=same["model"], train={**same["train"], "nproc": 2})
    run_train(one)
    out = run_train(two).stdout
    assert "starting 2 processes with torchrun" in out
    m1, m2 = (json.loads((r / "metrics/train.json").read_text()) for r in (one, two))
    assert m2["processes"] == 2 and m1["processes"] == 1 and m1["steps"] == m2["steps"]
    for h1, h2 in zip(m1["history"], m2["history"]):
        # tolerance: the two processes sum the same per-row gradients in another order
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], abs=1e-4)
        assert h2["val_loss"] == pytest.approx(h1["val_loss"], abs=1e-4)
        assert h2["val_accuracy"] == h1["val_accuracy"]
    a, b = state_dict(one), state_dict(two)
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA, where train.device cuda is refused")
def test_a_rank_error_keeps_its_exit_code_and_message_through_torchrun(split_ws, tmp_path):
    """torchrun exits 1 whatever its ranks did; the stage still exits 2 (bad params: no retry) with the rank's words."""
    ws = copy_ws(split_ws, tmp_path / "ws", train={"nproc": 2, "device": "cuda", "num_threads": 1})
    proc = subprocess.run(train_cmd(), cwd=ws, env=env_for(ws), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "rank 0 of 2: train.device: 'cuda' requested but torch sees no CUDA device" in out
    assert not (ws / "models/model").exists() and not (ws / "metrics/train.json").exists()


def test_pretrained_backbone_is_fine_tuned_and_its_bundle_serves_without_it(split_ws, tiny_backbone, tmp_path):
    from bigmodel_core.models.bundle import Predictor

    backbone = shutil.copytree(tiny_backbone, tmp_path / "backbone")
    ws = copy_ws(split_ws, tmp_path / "ws", model={"kind": "pretrained", "backbone": str(backbone)},
                 # a randomly initialised 2-layer BERT (no hub here) needs more than 3 epochs on the demo topics
                 train={"lr": 0.005, "epochs": 8}, tokenizer={"truncation": "head_tail"})
    out = run_train(ws).stdout
    assert "train: pretrained model" in out
    m = json.loads((ws / "metrics/train.json").read_text())
    assert m["val_accuracy"] > 0.9
    bundle = ws / "models/model"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (bundle / "hf").iterdir()}
    shutil.rmtree(backbone)  # serving must not need the backbone any more
    pred = Predictor(bundle)
    probs = pred.predict_proba(["<b>The striker scored twice in the derby</b>", "Shares and profit rose", ""])
    assert probs.shape == (3, 4) and abs(probs.sum(1) - 1).max() < 1e-5
    # words the backbone's vocabulary has (built from the demo corpus): most of the sentence above is [UNK] to it
    assert pred.predict(["The striker and the referee argued over the penalty goal"])[0] == "sports"


@pytest.mark.stage
def test_pretrained_encoder_keeps_special_tokens_when_truncating(tiny_backbone):
    from bigmodel_core.config import TokenizerParams
    from bigmodel_core.text.encoders import PretrainedEncoder

    text = " ".join(["league"] * 5 + ["profit"] * 20)
    head = PretrainedEncoder.from_backbone(str(tiny_backbone), TokenizerParams(max_length=10)).encode([text]).row(0)
    both = PretrainedEncoder.from_backbone(str(tiny_backbone), TokenizerParams(max_length=10, truncation="head_tail"))
    row = both.encode([text]).row(0)
    tok = both.tokenizer
    assert tok.convert_ids_to_tokens(head) == ["[CLS]"] + ["league"] * 5 + ["profit"] * 3 + ["[SEP]"]
    assert tok.convert_ids_to_tokens(row) == ["[CLS]", "league", "league"] + ["profit"] * 6 + ["[SEP]"]


@pytest.mark.stage
def test_fingerprint_follows_params_data_and_code_only(split_ws, tmp_path):
    import pandas as pd

    from bigmodel_core.config import parse_params
    from bigmodel_core.paths import Paths
    from bigmodel_core.stages.train import fingerprint

    ws = copy_ws(split_ws, tmp_path / "ws")
    raw = tiny_params_dict()
    base = fingerprint(parse_params(raw), Paths(ws))
    assert fingerprint(parse_params(raw), Paths(ws)) == base
    raw["evaluate"]["min_accuracy"] = 0.5  # not a training param
    assert fingerprint(parse_params(raw), Paths(ws)) == base
    raw["train"]["lr"] = 0.01
    assert fingerprint(parse_params(raw), Paths(ws)) != base
    train = pd.read_parquet(ws / "data/split/train.parquet")
    train.iloc[:-1].to_parquet(ws / "data/split/train.parquet", index=False)  # one row fewer
    assert fingerprint(parse_params(tiny_params_dict()), Paths(ws)) != base

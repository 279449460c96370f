"""GPU tier: the CUDA paths of the training loop (bf16 autocast, torch.compile, resume, out-of-memory, NCCL).

CI has no GPU, so every test here skips with the reason when torch sees no CUDA device; the CPU
tests of the same code paths live in test_training.py and test_training_portability.py. Run them on
a GPU machine with `python -m pytest tests/test_cuda.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from bigmodel_core.models.transformer import TransformerClassifier
from bigmodel_core.training.batching import Ragged, collate_padded
from bigmodel_core.training.checkpoint import Checkpoints
from bigmodel_core.training.loop import TrainData, TrainingError, fit, seed_everything

from test_training import params, same_weights, toy_data, toy_model, weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")
REPO = Path(__file__).resolve().parents[1]


def test_bf16_autocast_on_cuda_learns_and_keeps_fp32_master_weights():
    model, r = fit(toy_model(), toy_data(), params(device="cuda", precision="auto", epochs=4), progress=False)
    assert r.device.startswith("cuda") and r.precision == "bf16"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert r.best_val["macro_f1"] >= 0.95
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]


def test_bf16_and_fp32_on_cuda_reach_the_same_place():
    _, fp32 = fit(toy_model(dropout=0.0), toy_data(), params(device="cuda", precision="fp32"), progress=False)
    _, bf16 = fit(toy_model(dropout=0.0), toy_data(), params(device="cuda", precision="bf16"), progress=False)
    a = [h["val_loss"] for h in fp32.history]
    b = [h["val_loss"] for h in bf16.history]
    assert np.allclose(a, b, rtol=0.1, atol=0.02), (a, b)


def test_torch_compile_runs_on_cuda_and_matches_eager():
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    _, eager = fit(toy_model(dropout=0.0), toy_data(), params(device="cuda", precision="fp32"), progress=False)
    _, compiled = fit(toy_model(dropout=0.0), toy_data(), params(device="cuda", precision="fp32", compile=True),
                      progress=False)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really compiled the model
    a = [s["loss"] for s in eager.steps]
    b = [s["loss"] for s in compiled.steps]
    assert np.allclose(a, b, rtol=0.05, atol=0.01), (a, b)


def test_resume_on_cuda_ends_where_the_uninterrupted_run_ends(tmp_path):
    p = params(device="cuda", precision="bf16", epochs=3, checkpoint_every=4)
    whole, _ = fit(toy_model(), toy_data(), p, progress=False)

    class Crash(Exception):
        pass

    class Stop:
        def on_step(self, step, metrics):
            if step >= 10:
                raise Crash

        def on_epoch(self, epoch, row):
            pass

    ck = Checkpoints(tmp_path / "ck", fingerprint="f", every=4)
    with pytest.raises(Crash):
        fit(toy_model(), toy_data(), p, checkpoints=ck, callbacks=[Stop()], progress=False)
    resumed, r = fit(toy_model(), toy_data(), p, checkpoints=Checkpoints(tmp_path / "ck", fingerprint="f", every=4),
                     progress=False)
    assert r.resumed_from_step == 8
    # CUDA's embedding backward adds in a nondeterministic order: equal up to float rounding
    assert same_weights(weights(whole), weights(resumed), atol=1e-4)


def test_non_finite_loss_on_cuda_is_skipped_on_the_device_and_named(tmp_path):
    """CUDA uses the deferred check (no host sync per step): the bad step is skipped by the fused kernel."""
    from bigmodel_core.training.guard import NonFiniteGuard
    from bigmodel_core.training.loop import make_optimizers
    from test_training import NaNAfter

    device = torch.device("cuda", 0)
    assert NonFiniteGuard(make_optimizers(toy_model().to(device), params(), device), device, "").deferred
    model = NaNAfter(toy_model(), at_call=5)
    with pytest.raises(TrainingError, match=r"non-finite loss at step 5 \(epoch 1\)"):
        fit(model, toy_data(), params(device="cuda", log_every=100, checkpoint_every=3),
            checkpoints=Checkpoints(tmp_path, "fp", every=3), progress=False)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert Checkpoints(tmp_path, "fp").load()["step"] == 3


def test_real_cuda_out_of_memory_names_batch_size_max_length_and_accumulation():
    rows = [[1] * 512 for _ in range(4096)]
    data = Ragged.from_lists(rows)
    y = np.zeros(4096, dtype=np.int64)
    td = TrainData(data, y, data.take(np.arange(8)), y[:8], 2, lambda d, r: collate_padded(d, r, 0))
    seed_everything(0)
    model = TransformerClassifier(8, 2, d_model=1024, n_heads=16, n_layers=8, d_ff=8192, dropout=0.1, max_length=512)
    free, _ = torch.cuda.mem_get_info()
    needed = 4096 * 512 * 8192 * 2 * 8  # one bf16 feed-forward activation per layer alone
    if needed < free:
        pytest.skip(f"this GPU has {free / 2**30:.0f} GiB free: the batch would fit")
    with pytest.raises(TrainingError) as e:
        fit(model, td, params(device="cuda", batch_size=4096, epochs=1), max_length=512, progress=False)
    msg = str(e.value)
    assert "out of memory" in msg and "batch_size" in msg and "max_length" in msg and "grad_accum" in msg
    del model
    torch.cuda.empty_cache()


def test_pretrained_backbone_fine_tunes_on_cuda_in_bf16(tiny_backbone):
    pytest.importorskip("transformers")
    from bigmodel_core.config import TokenizerParams
    from bigmodel_core.data.demo import generate
    from bigmodel_core.models.pretrained import PretrainedClassifier
    from bigmodel_core.text.encoders import PretrainedEncoder

    df = generate(900, seed=3)
    df = df[df["dirt"] == "none"].head(600)
    labels = sorted(df["label"].unique())
    y = df["label"].map({l: i for i, l in enumerate(labels)}).to_numpy()
    enc = PretrainedEncoder.from_backbone(str(tiny_backbone), TokenizerParams(max_length=64))
    data = enc.encode(df["text"].tolist())
    td = TrainData(data.take(np.arange(500)), y[:500], data.take(np.arange(500, 600)), y[500:], len(labels),
                   enc.collate)
    seed_everything(0)
    model = PretrainedClassifier.from_backbone(str(tiny_backbone), labels)
    model, r = fit(model, td, params(device="cuda", precision="bf16", epochs=4, lr=2e-3), progress=False)
    assert r.precision == "bf16" and r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.best_val["accuracy"] > 1.5 / len(labels)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallelism needs 2 GPUs (one process each)")
def test_two_gpu_nccl_ddp_matches_one_gpu(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys, torch
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
        from bigmodel_core.training.distributed import DistInfo, shutdown
        from bigmodel_core.training.loop import fit
        from test_training import params, toy_data, toy_model
        info = DistInfo.from_env()
        _, r = fit(toy_model(dropout=0.0), toy_data(), params(device="cuda", precision="fp32"), dist=info,
                   progress=False)
        if info.is_main:
            json.dump([h["val_loss"] for h in r.history], open(sys.argv[1], "w"))
        shutdown()
    """))
    out = {}
    for n in (1, 2):
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                        str(script), str(tmp_path / f"{n}.json")], check=True, env={**os.environ}, timeout=600)
        out[n] = np.array(__import__("json").loads((tmp_path / f"{n}.json").read_text()))
    assert np.allclose(out[1], out[2], atol=1e-3), out

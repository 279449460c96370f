"""Unit tier: the training loop (schedule, clipping, accumulation, early stopping, callbacks, resume, errors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bigmodel_core.config import ModelParams, TrainParams
from bigmodel_core.models.transformer import TransformerClassifier, masked_mean, pool
from bigmodel_core.training.batching import Ragged, collate, collate_padded
from bigmodel_core.training.checkpoint import Checkpoints
from bigmodel_core.training.loop import (Callback, TrainData, TrainingError, balanced_weights, clip_gradients, fit,
                                         lr_lambda, seed_everything)


def toy_data(n: int = 400, n_train: int = 300, seed: int = 0) -> TrainData:
    """Two classes of token sequences drawn from disjoint id ranges: separable, varied lengths."""
    rng = np.random.default_rng(seed)
    rows, y = [], []
    for _ in range(n):
        c = int(rng.integers(0, 2))
        rows.append([1] + rng.integers(2 + 10 * c, 12 + 10 * c, size=int(rng.integers(3, 12))).tolist())
        y.append(c)
    data, y = Ragged.from_lists(rows), np.array(y)
    idx = np.arange(n)
    return TrainData(data.take(idx[:n_train]), y[:n_train], data.take(idx[n_train:]), y[n_train:], 2,
                     lambda d, r: collate_padded(d, r, 0))


def toy_model(dropout: float = 0.1) -> TransformerClassifier:
    seed_everything(42)
    return TransformerClassifier(30, 2, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=dropout, max_length=16)


def params(**kw) -> TrainParams:
    """The CPU tier's params: device cpu even where a GPU is present (test_cuda.py covers CUDA)."""
    base = dict(epochs=3, batch_size=32, lr=3e-3, num_threads=1, patience=0, log_every=5, checkpoint_every=0,
                device="cpu")
    return TrainParams(**{**base, **kw})


def weights(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict, atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


# --------------------------------------------------------------------------- models
def test_transformer_ignores_padding_and_a_missing_mask_means_no_padding():
    m = toy_model(dropout=0.0).eval()
    ids, mask = collate([[1, 5, 6], [1, 7]], 0)
    out = m(ids, mask)
    wider = torch.cat([ids, torch.zeros(2, 5, dtype=torch.long)], 1)
    assert torch.allclose(out, m(wider, wider != 0), atol=1e-5)
    full = torch.tensor([[1, 5, 6], [1, 7, 7]])
    assert torch.allclose(m(full, None), m(full, torch.ones_like(full, dtype=torch.bool)), atol=1e-6)
    h = torch.tensor([[[1.0], [3.0], [5.0]], [[2.0], [100.0], [100.0]]])
    m2 = torch.tensor([[True, True, True], [True, False, False]])
    assert masked_mean(h, m2).squeeze(-1).tolist() == [3.0, 2.0]
    assert pool(h, m2, "max").squeeze(-1).tolist() == [5.0, 2.0] and pool(h, m2, "cls").squeeze(-1).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("pooling", ["max", "cls"])
def test_other_poolings_ignore_padding_too(pooling):
    seed_everything(0)
    m = TransformerClassifier(30, 2, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0, max_length=16,
                              pooling=pooling).eval()
    ids, mask = collate([[1, 5, 6], [1, 7]], 0)
    wider = torch.cat([ids, torch.zeros(2, 5, dtype=torch.long)], 1)
    assert torch.allclose(m(ids, mask), m(wider, wider != 0), atol=1e-5)


def test_token_dropout_only_acts_in_training():
    seed_everything(0)
    m = TransformerClassifier(30, 2, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0, max_length=16,
                              token_dropout=0.5)
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    m.eval()
    assert torch.equal(m(ids), m(ids))
    m.train()
    outs = {tuple(m(ids)[0].tolist()) for _ in range(5)}
    assert len(outs) > 1  # different tokens dropped on each call


def test_transformer_sizes_up_to_bert_base_and_flops():
    m = TransformerClassifier(30522, 2, d_model=768, n_heads=12, n_layers=12, d_ff=3072, dropout=0.1, max_length=512)
    non_embedding = sum(p.numel() for n, p in m.named_parameters() if not n.startswith(("tok.", "pos.")))
    assert 85_000_000 < non_embedding < 86_000_000  # BERT-base's encoder: 12 x 7.08M + final norm + head
    assert m.flops_per_token(512) == 6 * non_embedding + 12 * 12 * 768 * 512


# --------------------------------------------------------------------------- pieces of a step
def test_lr_schedules():
    lin, cos, const = (lr_lambda(10, 2, s) for s in ("linear", "cosine", "constant"))
    assert [round(lin(s), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert [round(cos(s), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert round(cos(4), 4) == round(0.5 * (1 + np.cos(np.pi * 0.25)), 4) and cos(4) > lin(4)
    assert const(9) == 1.0


def test_clip_gradients_counts_dense_and_sparse_and_clips_both():
    dense = nn.Parameter(torch.zeros(2, 2))
    table = nn.EmbeddingBag(10, 2, mode="sum", sparse=True)
    dense.grad = torch.full((2, 2), 3.0)  # norm 6
    table(torch.tensor([1, 1]), torch.tensor([0])).sum().backward()  # row 1 gets 1+1 per column: norm sqrt(8)
    params = [dense, table.weight]
    total = clip_gradients(params, max_norm=0)
    assert float(total) == pytest.approx(np.sqrt(36 + 8))
    clipped = clip_gradients(params, max_norm=1.0)
    assert float(clipped) == pytest.approx(np.sqrt(44))
    after = np.sqrt(float((dense.grad ** 2).sum()) + float((table.weight.grad.coalesce().values() ** 2).sum()))
    assert after == pytest.approx(1.0, rel=1e-4)


def test_balanced_class_weights():
    assert balanced_weights(np.array([0, 0, 0, 1]), 3).tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])


# --------------------------------------------------------------------------- fit
def test_fit_learns_deterministically_and_reports_steps_and_epochs():
    seen_steps, seen_epochs = [], []

    class Spy(Callback):
        def on_step(self, step, metrics):
            seen_steps.append((step, set(metrics)))

        def on_epoch(self, epoch, row):
            seen_epochs.append(epoch)

    runs = []
    for cb in ([Spy()], []):
        m, r = fit(toy_model(), toy_data(), params(), callbacks=cb, progress=False)
        runs.append((weights(m), r))
    (w1, r1), (w2, r2) = runs
    assert r1.best_val["accuracy"] > 0.95 and r1.history[-1]["train_loss"] < r1.history[0]["train_loss"]
    assert same_weights(w1, w2) and [s["loss"] for s in r1.steps] == [s["loss"] for s in r2.steps]
    assert r1.total_steps == 30 and [s for s, _ in seen_steps] == [5, 10, 15, 20, 25, 30]
    assert seen_steps[0][1] == {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_second"}
    assert seen_epochs == [1, 2, 3] and r1.device == "cpu" and r1.precision == "fp32"
    assert r1.steps[-1]["lr"] == 0.0 and all(s["tokens_per_second"] > 0 for s in r1.steps)


def test_gradient_accumulation_gives_the_same_weights():
    a, _ = fit(toy_model(dropout=0.0), toy_data(), params(batch_size=32, grad_accum=1), progress=False)
    b, _ = fit(toy_model(dropout=0.0), toy_data(), params(batch_size=16, grad_accum=2), progress=False)
    c, _ = fit(toy_model(dropout=0.0), toy_data(), params(batch_size=16, grad_accum=1), progress=False)
    assert same_weights(weights(a), weights(b), atol=1e-5)
    assert not same_weights(weights(a), weights(c), atol=1e-3)


def test_early_stopping_keeps_the_best_epoch():
    m, r = fit(toy_model(), toy_data(), params(epochs=10, lr=1e-9, patience=1), progress=False)
    assert r.stopped_early and len(r.history) == 2 and r.best_epoch == 1


def test_token_budget_max_steps_and_label_options_train():
    m, r = fit(toy_model(), toy_data(), params(token_budget=256, label_smoothing=0.1, class_weights="balanced",
                                               schedule="cosine", max_steps=12), progress=False)
    assert r.total_steps == 12 and r.steps[-1]["step"] == 12 and len(r.history) >= 1
    smooth = fit(toy_model(dropout=0.0), toy_data(), params(epochs=1, label_smoothing=0.2), progress=False)[1]
    plain = fit(toy_model(dropout=0.0), toy_data(), params(epochs=1), progress=False)[1]
    assert smooth.history[0]["train_loss"] > plain.history[0]["train_loss"]  # smoothing puts a floor under the loss


def test_bag_model_trains_with_sparse_gradients():
    from bigmodel_core.models.bag import BagClassifier
    from bigmodel_core.text.encoders import NgramHasher

    rng = np.random.default_rng(0)
    pos, neg = ["great", "superb", "lovely"], ["awful", "boring", "bad"]
    texts, y = [], []
    for _ in range(300):
        c = int(rng.integers(0, 2))
        texts.append(" ".join(rng.choice(pos if c else neg, 2).tolist() + rng.choice(["the", "a", "film"], 3).tolist()))
        y.append(c)
    p = ModelParams(kind="bag", buckets=4096, d_model=8)
    h = NgramHasher(p, lowercase=True)
    r = h.encode(texts)
    idx = np.arange(300)
    data = TrainData(r.take(idx[:240]), np.array(y[:240]), r.take(idx[240:]), np.array(y[240:]), 2, h.collate)
    seed_everything(1)
    model = BagClassifier(p.buckets, 2, 8, 0.0)
    before = model.emb.weight.detach().clone()
    model, res = fit(model, data, params(epochs=3, lr=0.05), progress=False)
    assert res.best_val["accuracy"] == 1.0
    changed = (model.emb.weight.detach() != before).any(1)
    assert 0 < int(changed.sum()) < 200  # only the rows of n-grams that occur were updated


# --------------------------------------------------------------------------- errors
class NaNAfter(nn.Module):
    """Wraps a model; its output becomes NaN from the given forward call on."""

    def __init__(self, inner: nn.Module, at_call: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at_call, 0

    def forward(self, **batch):
        self.calls += 1
        out = self.inner(**batch)
        return out * float("nan") if self.calls >= self.at else out


def test_non_finite_loss_stops_before_the_optimizer_step_and_keeps_the_checkpoint(tmp_path):
    ckpt = Checkpoints(tmp_path, "fp", every=3)
    model = NaNAfter(toy_model(), at_call=5)
    seen = {}

    class Snap(Callback):
        def on_step(self, step, metrics):
            seen[step] = weights(model)

    with pytest.raises(TrainingError, match=r"non-finite loss at step 5 \(epoch 1\).*Lower train.lr"):
        fit(model, toy_data(), params(log_every=1), callbacks=[Snap()], checkpoints=ckpt, progress=False)
    assert same_weights(weights(model), seen[4])  # step 5 changed nothing
    state = Checkpoints(tmp_path, "fp").load()
    assert state["step"] == 3 and state["steps_in_epoch"] == 3


@pytest.mark.parametrize("bad_step, caught_by", [(5, "the next step's check"), (6, "the checkpoint at step 6")])
def test_deferred_non_finite_check_skips_the_bad_step_on_the_device(tmp_path, monkeypatch, bad_step, caught_by):
    """The CUDA path (fused AdamW told found_inf, verdict read one step later) run on CPU, where it is exact."""
    from bigmodel_core.training import loop

    def fused_adamw(model, p, device):
        return [torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay, fused=True)]

    monkeypatch.setattr(loop, "make_optimizers", fused_adamw)
    seen = {}
    reference = toy_model()

    class Snap(Callback):
        def on_step(self, step, metrics):
            seen[step] = weights(reference)

    fit(reference, toy_data(), params(log_every=1), callbacks=[Snap()], progress=False)
    ckpt = Checkpoints(tmp_path, "fp", every=3)
    model = NaNAfter(toy_model(), at_call=bad_step)
    with pytest.raises(TrainingError, match=rf"non-finite loss at step {bad_step} \(epoch 1\); the weights were not"):
        fit(model, toy_data(), params(log_every=100), checkpoints=ckpt, progress=False)
    assert same_weights(weights(model.inner), seen[bad_step - 1]), f"step {bad_step} changed weights ({caught_by})"
    assert Checkpoints(tmp_path, "fp").load()["step"] == 3  # the checkpoint before the bad step survives


def test_cuda_out_of_memory_names_the_knobs():
    class OOM(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(1, 1)

        def forward(self, **batch):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(TrainingError) as e:
        fit(OOM(), toy_data(), params(batch_size=64, grad_accum=2), progress=False, max_length=512)
    msg = str(e.value)
    assert "train.batch_size=64" in msg and "tokenizer.max_length=512" in msg and "train.grad_accum=2" in msg
    assert "try train.batch_size=32 with train.grad_accum=4" in msg and e.value.exit_code == 2


# --------------------------------------------------------------------------- checkpoints
class CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, step, metrics):
        if step == self.step:
            raise KeyboardInterrupt


def test_resume_after_a_crash_ends_exactly_like_an_uninterrupted_run(tmp_path):
    p = params(epochs=3, log_every=1, checkpoint_every=4)
    straight, r0 = fit(toy_model(), toy_data(), p, progress=False)
    ckpt = Checkpoints(tmp_path, "fp", every=4)
    with pytest.raises(KeyboardInterrupt):
        fit(toy_model(), toy_data(), p, callbacks=[CrashAt(15)], checkpoints=ckpt, progress=False)
    assert Checkpoints(tmp_path, "fp").load()["step"] == 12  # mid epoch 2 (10 steps per epoch)
    resumed, r1 = fit(toy_model(), toy_data(), p, checkpoints=Checkpoints(tmp_path, "fp", every=4), progress=False)
    assert r1.resumed_from_step == 12
    assert same_weights(weights(straight), weights(resumed))
    keys = ("epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr")
    assert [{k: h[k] for k in keys} for h in r0.history] == [{k: h[k] for k in keys} for h in r1.history]
    assert [s["loss"] for s in r0.steps] == [s["loss"] for s in r1.steps]


def test_a_checkpoint_at_the_last_step_still_validates_the_last_epoch(tmp_path):
    """Killed after the final step's checkpoint but before the epoch-end one: the resume owes epoch 3's validation."""
    p = params(epochs=3, lr=3e-4)
    straight, r0 = fit(toy_model(), toy_data(), p, progress=False)
    assert r0.best_epoch == 3  # so skipping epoch 3's validation would change the kept weights
    every = r0.total_steps

    class CrashInLastValidation(Callback):
        def on_epoch(self, epoch, row):
            if epoch == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(toy_model(), toy_data(), p, callbacks=[CrashInLastValidation()],
            checkpoints=Checkpoints(tmp_path, "fp", every=every), progress=False)
    assert Checkpoints(tmp_path, "fp").load()["step"] == every
    resumed, r1 = fit(toy_model(), toy_data(), p, checkpoints=Checkpoints(tmp_path, "fp", every=every), progress=False)
    assert r1.resumed_from_step == every
    assert [h["epoch"] for h in r1.history] == [1, 2, 3] and r1.best_epoch == 3
    assert [h["val_macro_f1"] for h in r1.history] == [h["val_macro_f1"] for h in r0.history]
    assert same_weights(weights(straight), weights(resumed))


@pytest.mark.parametrize("patience", [0, 1], ids=["all-epochs", "stopped-early"])
def test_a_finished_checkpoint_resumes_straight_to_the_model(tmp_path, capsys, patience):
    """Training ended but the model was never written (models/ not writable): the checkpoint says done, with
    the epoch counter one past the last. Resuming it trains nothing and gives the same model and history."""
    p = params(epochs=4, lr=3e-2 if patience else 3e-3, patience=patience, checkpoint_every=7)
    straight, r0 = fit(toy_model(), toy_data(), p, checkpoints=Checkpoints(tmp_path, "fp", every=7), progress=False)
    saved = Checkpoints(tmp_path, "fp").load()
    assert saved["done"] and saved["stopped_early"] == r0.stopped_early == bool(patience)
    assert saved["step"] == r0.steps[-1]["step"] and saved["epoch"] == len(r0.history) + 1
    assert len(r0.history) < 4 if patience else len(r0.history) == 4 and saved["step"] == r0.total_steps
    capsys.readouterr()

    class NoTraining(Callback):
        resumed: tuple = ()

        def on_resume(self, step, history, steps):
            self.resumed = (step, history, steps)

        def on_step(self, step, metrics):
            raise AssertionError(f"trained step {step} again")

        def on_epoch(self, epoch, row):
            raise AssertionError(f"validated epoch {epoch} again")

    told = NoTraining()
    resumed, r1 = fit(toy_model(), toy_data(), p, callbacks=[told], checkpoints=Checkpoints(tmp_path, "fp", every=7),
                      progress=False)
    assert told.resumed == (saved["step"], r0.history, r0.steps)  # what a tracker needs to log them again
    out = capsys.readouterr().out
    assert (f"train: the checkpoint holds finished training ({len(r0.history)} epoch(s), step {saved['step']}, "
            f"best epoch {r0.best_epoch}): no step left to run; writing its model") in out
    assert r1.resumed_from_step == saved["step"] and r1.best_epoch == r0.best_epoch
    assert r1.stopped_early == r0.stopped_early and r1.history == r0.history and r1.steps == r0.steps
    assert same_weights(weights(straight), weights(resumed))


def test_a_checkpoint_of_another_fingerprint_is_discarded(tmp_path, capsys):
    fit(toy_model(), toy_data(), params(epochs=1), checkpoints=Checkpoints(tmp_path, "old", every=100), progress=False)
    assert (tmp_path / "checkpoint.pt").exists() and list(tmp_path.glob("best-e*.pt"))
    assert Checkpoints(tmp_path, "new").load() is None
    assert "discarding a checkpoint of another run" in capsys.readouterr().out
    assert not (tmp_path / "checkpoint.pt").exists() and not list(tmp_path.glob("best-e*.pt"))


# --------------------------------------------------------------------------- pinned losses
# Like torchtune's recipe tests: the losses of a tiny fixed run, so that any change to the model, the
# batching, the optimizer or the schedule that alters the numbers is caught. Re-pin (print r.steps)
# only for a change that is meant to alter them, and say so in the commit.
PINNED_STEP_LOSSES = [0.66668, 0.459068, 0.298917, 0.265407, 0.242647]
PINNED_VAL_LOSSES = [0.298995, 0.229158]


def test_pinned_losses_of_a_tiny_run():
    _, r = fit(toy_model(), toy_data(), params(epochs=2, log_every=4), progress=False)
    assert [round(s["loss"], 6) for s in r.steps] == pytest.approx(PINNED_STEP_LOSSES, abs=2e-6)
    assert [round(h["val_loss"], 6) for h in r.history] == pytest.approx(PINNED_VAL_LOSSES, abs=2e-6)


def test_checkpoint_every_zero_writes_nothing(tmp_path):
    fit(toy_model(), toy_data(), params(epochs=2), checkpoints=Checkpoints(tmp_path, "fp", every=0), progress=False)
    assert list(tmp_path.iterdir()) == []

"""The training loop, top to bottom: set up, (resume,) then per epoch: steps, validation, early stopping.

    model, result = fit(model, data, params.train, callbacks=[...], checkpoints=Checkpoints(...))

One optimizer step = `grad_accum` micro-batches of `batch_size` rows (or of `token_budget` tokens).
The loss of a step is the sum of per-row losses divided by the rows in the step, whatever the number
of micro-batches or processes, so 1 process, N processes and gradient accumulation compute the same
gradient. Everything random (batch order, dropout) comes from the seed and is checkpointed, so a run
resumed after a crash ends with the same weights as one that never stopped (exactly, on CPU).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn

from bigmodel_core.config import TrainParams
from bigmodel_core.errors import ConfigError, TrainingError
from bigmodel_core.training import distributed
from bigmodel_core.training.batching import TrainData, plan_batches
from bigmodel_core.training.checkpoint import Checkpoints, rng_state, set_rng_state
from bigmodel_core.training.device import autocast, configure_backends, pick_device, precision_name
from bigmodel_core.training.distributed import DistInfo
from bigmodel_core.training.guard import NonFiniteGuard
from bigmodel_core.training.progress import Progress
from bigmodel_core.training.steps import (
    balanced_weights,
    clip_gradients,
    evaluate_model,
    lr_lambda,
    make_optimizers,
    micro_batches,
    oom_message,
    row_losses,
    seed_everything,
)

# the training API: what the stages, tests and benchmarks import from here
__all__ = [
    "Callback",
    "FitResult",
    "TrainData",
    "TrainingError",
    "balanced_weights",
    "clip_gradients",
    "fit",
    "lr_lambda",
    "make_optimizers",
    "seed_everything",
]


class Callback:
    """Receives metrics while training runs (rank 0 only). Override what you need."""

    def on_step(self, step: int, metrics: dict) -> None:
        """Every train.log_every optimizer steps: loss, lr, grad_norm, tokens_per_second, epoch (fractional)."""

    def on_epoch(self, epoch: int, row: dict) -> None:
        """After each epoch's validation: the epoch's row of the history."""

    def on_resume(self, step: int, history: list[dict], steps: list[dict]) -> None:
        """Training goes on from a checkpoint at optimizer step `step`: the epoch rows and logged steps before it."""


class _CallbackLike(Protocol):
    """What fit() needs of a callback (on_resume is optional: fit() asks for it)."""

    def on_step(self, step: int, metrics: dict) -> None: ...

    def on_epoch(self, epoch: int, row: dict) -> None: ...


@dataclass
class FitResult:
    best_epoch: int
    best_val: dict
    history: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    device: str = "cpu"
    precision: str = "fp32"
    seconds: float = 0.0
    stopped_early: bool = False
    resumed_from_step: int | None = None
    total_steps: int = 0


# --------------------------------------------------------------------------- the loop
def fit(
    model: nn.Module,
    data: TrainData,
    p: TrainParams,
    *,
    callbacks: Sequence[_CallbackLike] | None = None,
    checkpoints: Checkpoints | None = None,
    dist: DistInfo | None = None,
    progress: bool | None = None,
    max_length: int | None = None,
) -> tuple[nn.Module, FitResult]:
    """Train `model` on data.train, pick the epoch with the best val macro-F1, return the model with its weights."""
    dist = dist or DistInfo()
    callbacks = (callbacks or []) if dist.is_main else []
    started = time.perf_counter()
    if p.num_threads:
        torch.set_num_threads(p.num_threads)
    device = pick_device(p.device, dist.local_rank)
    configure_backends(device)
    if dist.enabled:
        distributed.init(dist, device.type)
        if any(isinstance(m, nn.EmbeddingBag) and m.sparse for m in model.modules()):
            raise ConfigError(
                "train.nproc: the bag model trains in one process (its sparse n-gram table does not "
                "work with DDP); set train.nproc to 1"
            )
    model.to(device)
    params = [q for q in model.parameters() if q.requires_grad]
    optimizers = make_optimizers(model, p, device)

    # The whole schedule is known up front: every epoch's plan is a pure function of (seed, epoch).
    lengths = data.train.lengths

    def epoch_steps(epoch: int) -> list[list[np.ndarray]]:
        """Each optimizer step's rows, cut into grad_accum micro-batches: accumulation changes memory, not results."""
        plan = plan_batches(
            lengths,
            p.batch_size * p.grad_accum,
            p.token_budget * p.grad_accum,
            p.seed,
            epoch,
            min_rows=dist.world * p.grad_accum,
        )
        return [[m for m in np.array_split(rows, p.grad_accum) if len(m)] for rows in plan]

    steps_per_epoch = [len(epoch_steps(e)) for e in range(1, p.epochs + 1)]
    total_steps = sum(steps_per_epoch) if not p.max_steps else min(p.max_steps, sum(steps_per_epoch))
    schedulers = [
        torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(total_steps, int(total_steps * p.warmup_fraction), p.schedule))
        for o in optimizers
    ]
    guard = NonFiniteGuard(optimizers, device, hint=f"Lower train.lr (now {p.lr:g}) or set train.grad_clip")
    # Losses add up on the device (float64: the same sums as Python floats) and are read at log points.
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    class_weight = (
        torch.as_tensor(balanced_weights(data.train_y, data.num_classes), device=device)
        if p.class_weights == "balanced"
        else None
    )

    # ---- start fresh or resume
    state: dict[str, Any] = {
        "epoch": 1,
        "steps_in_epoch": 0,
        "step": 0,
        "done": False,
        "stopped_early": False,
        "best_f1": -1.0,
        "best_epoch": 0,
        "best_val": {},
        "bad_epochs": 0,
        "history": [],
        "steps": [],
        "loss_sum": 0.0,
        "rows": 0,
    }
    best_state = None
    saved = checkpoints.load() if checkpoints is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        for o, s in zip(optimizers, saved["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(schedulers, saved["schedulers"], strict=True):
            sch.load_state_dict(s)
        state = {k: saved[k] for k in state}
        best_state = saved.get("best_state")
        set_rng_state(saved["rng"][dist.rank] if dist.rank < len(saved["rng"]) else saved["rng"][0])
        if dist.is_main and state["done"]:
            # training ended but its model was not written (e.g. models/ was not writable): nothing to train,
            # the best epoch's weights in the checkpoint are the model
            print(
                f"train: the checkpoint holds finished training ({len(state['history'])} epoch(s), step "
                f"{state['step']}, best epoch {state['best_epoch']}): no step left to run; writing its model",
                flush=True,
            )
        elif dist.is_main:
            print(
                f"train: resumed from step {state['step']} (epoch {state['epoch']}, step {state['steps_in_epoch']} "
                f"of {steps_per_epoch[state['epoch'] - 1]} in it)",
                flush=True,
            )
        for cb in callbacks:  # duck-typed: a callback without on_resume does not need to know
            if hasattr(cb, "on_resume"):
                cb.on_resume(state["step"], state["history"], state["steps"])
    else:
        torch.manual_seed(p.seed + dist.rank)  # each process its own dropout masks
    resumed_from = state["step"] if saved is not None else None
    raw_model = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if p.compile and device.type == "cuda":
        model = cast(nn.Module, torch.compile(model))  # an OptimizedModule (typed as any callable)

    def checkpoint(new_best: dict | None = None) -> None:
        if checkpoints is None or not checkpoints.every:
            return
        guard.check()  # never save weights a bad step may have touched
        rngs = distributed.all_gather_objects(rng_state(), dist)  # every rank's dropout stream
        if not dist.is_main:
            return
        checkpoints.save(
            {
                **state,
                "model": raw_model.state_dict(),
                "optimizers": [o.state_dict() for o in optimizers],
                "schedulers": [s.state_dict() for s in schedulers],
                "rng": rngs,
            },
            best_state=new_best,
        )

    bar = Progress(total_steps, initial=state["step"], enabled=dist.is_main and progress is not False)
    model.train()
    try:
        for epoch in range(state["epoch"], p.epochs + 1):
            if state["done"]:  # not `step >= total_steps`: a checkpoint at the last step still owes its validation
                break
            state["epoch"] = epoch
            steps = epoch_steps(epoch)
            first = state["steps_in_epoch"]
            todo = steps[first:]
            if p.max_steps:
                todo = todo[: max(0, total_steps - state["step"])]
            rows_per_step = [sum(len(r) for r in group) for group in todo]
            epoch_t0 = window_t0 = time.perf_counter()
            epoch_rows = window_rows = window_tokens = 0
            epoch_tokens = 0.0  # summed over processes: a float
            step_loss = torch.zeros((), device=device)
            window_loss = torch.zeros((), dtype=acc_dtype, device=device)
            epoch_loss = torch.tensor(state["loss_sum"], dtype=acc_dtype, device=device)
            for si, mi, batch, y, tokens in micro_batches(data, todo, dist, device):
                last_micro = mi == len(todo[si]) - 1
                # (DDP's no_sync, reached through nn.Module.__getattr__, which types it as Tensor | Module)
                with model.no_sync() if dist.enabled and not last_micro else contextlib.nullcontext():  # type: ignore[operator]
                    with autocast(device, p.precision):
                        logits = model(**batch)
                    losses = row_losses(logits, y, p, class_weight)
                    (losses.sum() * (dist.world / rows_per_step[si])).backward()
                step_loss += losses.detach().sum()
                window_tokens += tokens
                if not last_micro:
                    continue
                # ---- optimizer step: every micro-batch of this step is in
                grad_norm = clip_gradients(params, p.grad_clip)
                step_total = distributed.all_reduce_sum(step_loss.to(acc_dtype).reshape(1), dist)[0]
                guard.before_step(step_total, grad_norm, state["step"] + 1, epoch)
                for o in optimizers:
                    o.step()
                for s in schedulers:
                    s.step()
                for o in optimizers:
                    o.zero_grad(set_to_none=True)
                step_loss = torch.zeros((), device=device)
                state["step"] += 1
                state["steps_in_epoch"] = first + si + 1
                epoch_loss += step_total
                state["rows"] += rows_per_step[si]
                window_loss += step_total
                window_rows += rows_per_step[si]
                epoch_rows += rows_per_step[si]
                bar.update(1)
                if state["step"] % p.log_every == 0 or state["step"] == total_steps:
                    guard.check()
                    tokens_now = _global_sum(torch.tensor(float(window_tokens)), dist)
                    epoch_tokens += tokens_now
                    row = {
                        "step": state["step"],
                        "epoch": round(epoch - 1 + state["steps_in_epoch"] / len(steps), 4),
                        "loss": float(window_loss) / max(1, window_rows),
                        "lr": schedulers[0].get_last_lr()[0],
                        "grad_norm": float(grad_norm),
                        "tokens_per_second": tokens_now / max(1e-9, time.perf_counter() - window_t0),
                    }
                    state["steps"].append(row)
                    bar.show(epoch=epoch, loss=row["loss"], tokens_per_second=row["tokens_per_second"])
                    for cb in callbacks:
                        cb.on_step(state["step"], row)
                    window_t0, window_rows, window_tokens = time.perf_counter(), 0, 0
                    window_loss.zero_()
                if checkpoints is not None and checkpoints.every and state["step"] % checkpoints.every == 0:
                    state["loss_sum"] = float(epoch_loss)
                    checkpoint()
            guard.check()
            state["loss_sum"] = float(epoch_loss)
            epoch_tokens += _global_sum(torch.tensor(float(window_tokens)), dist)

            # ---- end of epoch: validate, keep the best, maybe stop early
            train_seconds = time.perf_counter() - epoch_t0
            val = evaluate_model(
                raw_model,
                data.val,
                data.val_y,
                data.collate,
                device,
                p.precision,
                max(64, p.batch_size * 2),
                data.num_classes,
            )
            row = {
                "epoch": epoch,
                "step": state["step"],
                "train_loss": state["loss_sum"] / max(1, state["rows"]),
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "val_macro_f1": val["macro_f1"],
                "lr": schedulers[0].get_last_lr()[0],
                "seconds": time.perf_counter() - epoch_t0,
                "rows_per_second": epoch_rows / max(1e-9, train_seconds),
                "tokens_per_second": epoch_tokens / max(1e-9, train_seconds),
            }
            state["history"].append(row)
            for cb in callbacks:
                cb.on_epoch(epoch, row)
            new_best = None
            if val["macro_f1"] > state["best_f1"]:
                state.update(best_f1=val["macro_f1"], best_epoch=epoch, best_val=val, bad_epochs=0)
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in raw_model.state_dict().items()}
                new_best = best_state
            else:
                state["bad_epochs"] += 1
            state.update(epoch=epoch + 1, steps_in_epoch=0, loss_sum=0.0, rows=0)
            if p.patience and state["bad_epochs"] >= p.patience and epoch < p.epochs:
                state.update(stopped_early=True, done=True)
            if state["step"] >= total_steps:
                state["done"] = True
            checkpoint(new_best)
    except torch.OutOfMemoryError:
        guard.check()  # a bad step still in flight is the first error, not the memory it left behind
        raise TrainingError(oom_message(p, max_length, state["step"] + 1)) from None
    finally:
        bar.close()
        if checkpoints is not None:
            checkpoints.wait()
    if best_state is not None:
        raw_model.load_state_dict(best_state)
    result = FitResult(
        best_epoch=state["best_epoch"],
        best_val=state["best_val"],
        history=state["history"],
        steps=state["steps"],
        device=str(device),
        precision=precision_name(device, p.precision),
        seconds=time.perf_counter() - started,
        stopped_early=state["stopped_early"],
        resumed_from_step=resumed_from,
        total_steps=total_steps,
    )
    return raw_model, result


def _global_sum(value: torch.Tensor, dist: DistInfo) -> float:
    """A scalar summed over processes (the loss and token counts are per-shard)."""
    if not dist.enabled:
        return float(value)
    t = value.detach().to(torch.float64).reshape(1)
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else torch.device("cpu")
    )
    return float(distributed.all_reduce_sum(t.to(device), dist)[0])

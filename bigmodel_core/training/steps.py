"""The pieces of a training step that the loop (loop.fit) puts together: seeding, the learning-rate schedule,
the optimizers, gradient clipping, per-row losses and class weights, micro-batches, evaluation, and the
out-of-memory advice."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bigmodel_core.config import TrainParams
from bigmodel_core.evaluation.metrics import classification_metrics
from bigmodel_core.training.batching import Ragged, TrainData, plan_batches
from bigmodel_core.training.device import autocast
from bigmodel_core.training.distributed import DistInfo


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str = "linear") -> Callable[[int], float]:
    """Multiplier of the peak lr at a step: linear warm-up, then linear or cosine decay to 0 (or constant)."""

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress

    return f


# --------------------------------------------------------------------------- pieces of a step
def make_optimizers(model: nn.Module, p: TrainParams, device: torch.device) -> list[torch.optim.Optimizer]:
    """AdamW for dense weights (no decay on embeddings, norms, biases); SparseAdam for sparse tables."""
    sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse}
    decay, no_decay, sparse = [], [], []
    for name, q in model.named_parameters():
        if not q.requires_grad:
            continue
        if id(q) in sparse_ids:
            sparse.append(q)
        elif q.dim() >= 2 and not _is_embedding(model, name):
            decay.append(q)
        else:
            no_decay.append(q)
    fused = device.type == "cuda"
    opts: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(
            [{"params": decay, "weight_decay": p.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=p.lr,
            fused=fused,
        )
    ]
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=p.lr))
    return opts


def _is_embedding(model: nn.Module, param_name: str) -> bool:
    owner = model.get_submodule(param_name.rsplit(".", 1)[0]) if "." in param_name else model
    return isinstance(owner, (nn.Embedding, nn.EmbeddingBag))


def _grad(q: nn.Parameter) -> torch.Tensor:
    """The gradient of a parameter that has one (clip_gradients lists only those)."""
    return cast(torch.Tensor, q.grad)


@torch.no_grad()
def clip_gradients(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Total L2 norm of all gradients (dense and sparse), clipped to max_norm when max_norm > 0."""
    dense = [q for q in params if q.grad is not None and not q.grad.is_sparse]
    sparse = [q for q in params if q.grad is not None and q.grad.is_sparse]
    for q in sparse:
        q.grad = _grad(q).coalesce()
    norms = [torch.nn.utils.get_total_norm([_grad(q) for q in dense])] if dense else []
    norms += [torch.linalg.vector_norm(_grad(q).values()) for q in sparse]
    if not norms:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(norms)) if len(norms) > 1 else norms[0]
    if max_norm > 0:
        if dense:
            torch.nn.utils.clip_grads_with_norm_(dense, max_norm, total)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for q in sparse:
            q.grad = _grad(q) * coef
    return total


def row_losses(
    logits: torch.Tensor, y: torch.Tensor, p: TrainParams, class_weight: torch.Tensor | None
) -> torch.Tensor:
    losses = F.cross_entropy(logits.float(), y, label_smoothing=p.label_smoothing, reduction="none")
    return losses * class_weight[y] if class_weight is not None else losses


def balanced_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, len(y) / (num_classes * np.maximum(counts, 1)), 0.0).astype(np.float32)


def to_device(batch: dict, device: torch.device) -> dict:
    """Pinned host memory and non-blocking copies on CUDA, so the copy overlaps the previous step."""
    if device.type != "cuda":
        return batch
    return {k: (v.pin_memory().to(device, non_blocking=True) if v is not None else None) for k, v in batch.items()}


def micro_batches(
    data: TrainData,
    steps: list[list[np.ndarray]],
    dist: DistInfo,
    device: torch.device,
) -> Iterator[tuple[int, int, dict, torch.Tensor, int]]:
    """Yield (step index in epoch, micro index, device batch, targets, real tokens), one batch ahead.

    The next batch is collated and its copy started before the current one is yielded, so the host
    work of step k+1 overlaps the device work (and the non-finite check) of step k.
    """

    def host(si: int, mi: int, rows: np.ndarray):
        shard = rows[dist.rank :: dist.world]
        batch = data.collate(data.train, shard)
        y = torch.as_tensor(data.train_y[shard])
        tokens = int(data.train.lengths[shard].sum())
        return si, mi, to_device(batch, device), to_device({"y": y}, device)["y"], tokens

    order = [(si, mi, rows) for si, group in enumerate(steps) for mi, rows in enumerate(group)]
    pending = host(*order[0]) if order else None
    for k in range(len(order)):
        current = pending
        pending = host(*order[k + 1]) if k + 1 < len(order) else None
        assert current is not None  # order[k] was collated one round before
        yield current


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    data: Ragged,
    y: np.ndarray,
    collate,
    device: torch.device,
    precision: str,
    batch_size: int,
    num_classes: int,
) -> dict:
    """Loss (mean cross-entropy), accuracy and macro-F1 on a labelled set."""
    was_training = model.training
    model.eval()
    total, preds = 0.0, np.zeros(len(data), dtype=np.int64)
    for rows in plan_batches(data.lengths, batch_size, shuffle=False):
        batch = to_device(collate(data, rows), device)
        with autocast(device, precision):
            logits = model(**batch).float()
        total += float(F.cross_entropy(logits, torch.as_tensor(y[rows], device=device), reduction="sum"))
        preds[rows] = logits.argmax(-1).cpu().numpy()
    model.train(was_training)
    m = classification_metrics(y, preds, num_classes=num_classes)
    return {"loss": total / max(1, len(data)), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def oom_message(p: TrainParams, max_length: int | None, step: int) -> str:
    size = f"train.token_budget={p.token_budget}" if p.token_budget else f"train.batch_size={p.batch_size}"
    smaller = (
        f"train.token_budget={max(1, p.token_budget // 2)}"
        if p.token_budget
        else f"train.batch_size={max(1, p.batch_size // 2)}"
    )
    length = f", tokenizer.max_length={max_length}" if max_length else ""
    return (
        f"CUDA out of memory at step {step} with {size}{length}, train.grad_accum={p.grad_accum}: try {smaller} "
        f"with train.grad_accum={p.grad_accum * 2} (same rows per step)"
        + (" or a smaller tokenizer.max_length" if max_length else "")
    )

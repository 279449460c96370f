"""The training loop: AdamW, linear warm-up and decay, clipping, early stopping on val macro-F1.

Read it top to bottom: `fit` is the whole story. Tracking is injected through `callbacks`
(called once per epoch with a metrics dict), so this module never imports a tracker.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from bigmodel_core.config import TrainParams
from bigmodel_core.evaluation.metrics import classification_metrics
from bigmodel_core.training.batching import collate
from bigmodel_core.training.device import autocast, pick_device, precision_name

EpochCallback = Callable[[int, dict], None]


@dataclass
class FitResult:
    best_epoch: int
    best_val: dict
    history: list[dict] = field(default_factory=list)
    device: str = "cpu"
    precision: str = "fp32"
    seconds: float = 0.0
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort within windows of 50 batches so each batch holds similar lengths."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    window = batch_size * 50
    batches = []
    for w in range(0, len(idx), window):
        chunk = sorted(idx[w:w + window], key=lambda i: lengths[i])
        batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        rest = max(1, total_steps - warmup_steps)
        return max(0.0, 1.0 - (step - warmup_steps) / rest)
    return f


@torch.no_grad()
def evaluate_model(model: nn.Module, seqs: list[list[int]], y: np.ndarray, pad_id: int, device: torch.device,
                   precision: str, batch_size: int = 128, num_classes: int | None = None) -> dict:
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, preds = 0.0, np.zeros(len(seqs), dtype=np.int64)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        ids, mask = collate([seqs[i] for i in idx], pad_id)
        target = torch.as_tensor(y[idx], device=device)
        with autocast(device, precision):
            logits = model(ids.to(device), mask.to(device))
        total += float(loss_fn(logits.float(), target))
        preds[idx] = logits.argmax(-1).cpu().numpy()
    m = classification_metrics(y, preds, num_classes=num_classes)
    return {"loss": total / max(1, len(seqs)), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def fit(model: nn.Module, train_seqs: list[list[int]], train_y: np.ndarray, val_seqs: list[list[int]], val_y: np.ndarray,
        p: TrainParams, pad_id: int, num_classes: int, callbacks: list[EpochCallback] | None = None,
        progress: bool | None = None) -> tuple[nn.Module, FitResult]:
    from tqdm.auto import tqdm

    seed_everything(p.seed)
    if p.num_threads:
        torch.set_num_threads(p.num_threads)
    device = pick_device(p.device)
    model.to(device)
    decay = [q for n, q in model.named_parameters() if q.dim() >= 2 and "emb" not in n and "pos" not in n and "tok" not in n]
    no_decay = [q for n, q in model.named_parameters() if not (q.dim() >= 2 and "emb" not in n and "pos" not in n and "tok" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": p.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=p.lr)
    steps_per_epoch = math.ceil(len(train_seqs) / p.batch_size)
    total = steps_per_epoch * p.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, int(total * p.warmup_fraction)))
    loss_fn = nn.CrossEntropyLoss()
    rng = random.Random(p.seed)
    lengths = [len(s) for s in train_seqs]
    best_state, best_f1, best_epoch, best_val, bad_epochs = None, -1.0, 0, {}, 0
    history: list[dict] = []
    started = time.perf_counter()
    stopped_early = False
    for epoch in range(1, p.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        running, seen = 0.0, 0
        bar = tqdm(length_bucketed_batches(lengths, p.batch_size, rng), desc=f"epoch {epoch}/{p.epochs}", unit="batch",
                   disable=(not progress) if progress is not None else None, leave=False)
        for batch in bar:
            ids, mask = collate([train_seqs[i] for i in batch], pad_id)
            target = torch.as_tensor(train_y[batch], device=device)
            with autocast(device, p.precision):
                logits = model(ids.to(device, non_blocking=True), mask.to(device, non_blocking=True))
            loss = loss_fn(logits.float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if p.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            opt.step()
            sched.step()
            running += loss.item() * len(batch)
            seen += len(batch)
            bar.set_postfix(loss=f"{running / seen:.4f}")
        val = evaluate_model(model, val_seqs, val_y, pad_id, device, p.precision, num_classes=num_classes)
        row = {
            "epoch": epoch,
            "train_loss": running / max(1, seen),
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
            "rows_per_second": seen / max(1e-9, time.perf_counter() - t0),
        }
        history.append(row)
        for cb in callbacks or []:
            cb(epoch, row)
        if val["macro_f1"] > best_f1:
            best_f1, best_epoch, best_val, bad_epochs = val["macro_f1"], epoch, val, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            bad_epochs += 1
            if p.patience and bad_epochs >= p.patience:
                stopped_early = epoch < p.epochs
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, FitResult(best_epoch=best_epoch, best_val=best_val, history=history, device=str(device),
                            precision=precision_name(device, p.precision), seconds=time.perf_counter() - started,
                            stopped_early=stopped_early)

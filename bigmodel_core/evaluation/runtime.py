"""What a model costs to serve: latency of one-text predictions, batch throughput, size on disk."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

LATENCY_ROWS = 200  # one-text predictions timed; enough for a stable p95, a second or two for small models
WARMUP_CALLS = 3


def sample_rows(n: int, k: int = LATENCY_ROWS) -> np.ndarray:
    """Up to k row positions spread evenly over 0..n-1 (the same rows every run)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


def latency(predict_one: Callable[[str], object], texts: list[str]) -> dict:
    """Time predict_one on each text (after a few untimed calls): p50, p95, p99 and mean in ms."""
    if not texts:
        return {"rows": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}
    for t in texts[:WARMUP_CALLS]:
        predict_one(t)
    ms = np.empty(len(texts))
    for i, t in enumerate(texts):
        t0 = time.perf_counter()
        predict_one(t)
        ms[i] = (time.perf_counter() - t0) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "rows": len(texts),
        "warmup_calls": min(WARMUP_CALLS, len(texts)),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
    }


def directory_bytes(path: str | Path) -> int:
    """Bytes of every file under path (the model bundle as it is stored and shipped)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def cost_line(ev: dict) -> str | None:
    """The baseline, latency and size figures of metrics/eval.json that are present, as one line."""
    parts = []
    if ev.get("baseline_macro_f1") is not None:
        parts.append(f"baseline (TF-IDF + LR) macro-F1 {ev['baseline_macro_f1']:.4f}")
    if ev.get("latency_p95_ms") is not None:
        parts.append(f"p95 latency {ev['latency_p95_ms']:.2f} ms/text")
    if ev.get("model_mb") is not None:
        parts.append(f"model {ev['model_mb']:.2f} MB")
    return ", ".join(parts) or None

"""Is the challenger really better (or not really worse) than the champion? Paired tests on the same rows.

Both models are scored on the same test rows, so the comparison is paired:

* `paired_bootstrap`: resample rows with replacement, recompute both models' macro-F1 on each
  resample, and take the percentile interval of the difference (challenger - champion). The gate
  decides on this interval's lower bound, not on the point difference, so a lucky test split does
  not promote a model and an unlucky one does not block a good one.
* `mcnemar`: of the rows where exactly one model is right, does one of them win more often than
  chance allows? Exact two-sided binomial test below 25 discordant rows, chi-square with
  continuity correction above.
"""

from __future__ import annotations

import math

import numpy as np


def _macro_f1_rows(counts: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 of each row of flattened k x k confusion matrices (classes absent from both sides skipped)."""
    cm = counts.reshape(-1, k, k).astype(np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(2), cm.sum(1)
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=(support + predicted) > 0)
    present = (support + predicted) > 0
    return (f1 * present).sum(1) / np.maximum(present.sum(1), 1)


def paired_bootstrap(
    y: np.ndarray,
    pred_new: np.ndarray,
    pred_old: np.ndarray,
    num_classes: int,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> dict:
    """Percentile interval of macro-F1(new) - macro-F1(old) over `samples` paired resamples of the rows."""
    y, a, b = (np.asarray(v, dtype=np.int64) for v in (y, pred_new, pred_old))
    if not (len(y) == len(a) == len(b)) or len(y) == 0:
        raise ValueError(f"paired_bootstrap needs equally long, non-empty arrays, got {len(y)}, {len(a)}, {len(b)}")
    k, n = num_classes, len(y)
    codes_a, codes_b = y * k + a, y * k + b
    rng = np.random.default_rng(seed)
    diffs = np.empty(samples)
    for start in range(0, samples, chunk):
        m = min(chunk, samples - start)
        idx = rng.integers(0, n, size=(m, n))
        offset = (np.arange(m) * k * k)[:, None]
        ca = np.bincount((codes_a[idx] + offset).ravel(), minlength=m * k * k)
        cb = np.bincount((codes_b[idx] + offset).ravel(), minlength=m * k * k)
        diffs[start : start + m] = _macro_f1_rows(ca, k) - _macro_f1_rows(cb, k)
    point = float(
        _macro_f1_rows(np.bincount(codes_a, minlength=k * k), k)[0]
        - _macro_f1_rows(np.bincount(codes_b, minlength=k * k), k)[0]
    )
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [tail, 1 - tail])
    return {"difference": point, "low": float(lo), "high": float(hi), "confidence": confidence, "samples": samples}


def mcnemar(y: np.ndarray, pred_new: np.ndarray, pred_old: np.ndarray) -> dict:
    """McNemar's test on paired predictions: new_only = rows only the new model gets right, old_only the reverse."""
    y, a, b = (np.asarray(v) for v in (y, pred_new, pred_old))
    right_a, right_b = a == y, b == y
    new_only, old_only = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    n = new_only + old_only
    if n == 0:
        return {"new_only": 0, "old_only": 0, "statistic": 0.0, "p_value": 1.0, "method": "none"}
    if n < 25:
        low = min(new_only, old_only)
        tail = sum(math.comb(n, i) for i in range(low + 1)) / 2**n
        return {
            "new_only": new_only,
            "old_only": old_only,
            "statistic": float(low),
            "p_value": min(1.0, 2 * tail),
            "method": "exact",
        }
    stat = (abs(new_only - old_only) - 1) ** 2 / n
    p = math.erfc(math.sqrt(stat / 2))  # chi-square with 1 degree of freedom
    return {"new_only": new_only, "old_only": old_only, "statistic": stat, "p_value": p, "method": "chi2"}

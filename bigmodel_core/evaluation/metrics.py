"""Classification metrics computed with numpy (no sklearn needed at inference time)."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_metrics(y_true, y_pred, num_classes: int | None = None, labels: list[str] | None = None) -> dict:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = num_classes or (len(labels) if labels else int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1))
    cm = confusion(y_true, y_pred, k)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = (support > 0) | (predicted > 0)  # classes seen in y_true or y_pred, like scikit-learn's default
    names = labels or [str(i) for i in range(k)]
    return {
        "accuracy": float(tp.sum() / max(1, len(y_true))),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": len(y_true),
        "per_class": {
            names[i]: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(k)
        },
        "confusion_matrix": cm.tolist(),
    }


# --------------------------------------------------------------------------- scores of probabilities
def _ranked_counts(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative false and true positives at each distinct score, from the highest down (ties move together)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each run of equal scores
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    return fps, tps, s[last]


def roc_curve(y_true, score) -> dict | None:
    """ROC points (fpr, tpr, threshold) and the area under them; None when y_true holds one class only."""
    fps, tps, thresholds = _ranked_counts(y_true, score)
    if len(tps) == 0 or tps[-1] == 0 or fps[-1] == 0:
        return None
    fpr, tpr = np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties count half, as in the U statistic
    return {"fpr": fpr, "tpr": tpr, "threshold": np.r_[np.inf, thresholds], "auc": auc}


def pr_curve(y_true, score) -> dict | None:
    """Precision-recall points and average precision (sum over thresholds of recall gained x precision there,
    the step-wise area scikit-learn's average_precision_score computes); None without positive rows."""
    fps, tps, thresholds = _ranked_counts(y_true, score)
    if len(tps) == 0 or tps[-1] == 0:
        return None
    precision, recall = tps / (tps + fps), tps / tps[-1]
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return {
        "recall": np.r_[0.0, recall],
        "precision": np.r_[1.0, precision],
        "threshold": np.r_[np.inf, thresholds],
        "average_precision": ap,
    }


def calibration(confidence, correct, bins: int = 15) -> dict:
    """Expected calibration error over `bins` equal-width bins of the top-class confidence, and the bins.

    A row with confidence c falls in the bin (lower, upper] that holds c (c = 0 in the first); ECE is the
    row-weighted mean of |accuracy - mean confidence| over the bins.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    rows = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=conf, minlength=bins)
    hit_sum = np.bincount(which, weights=hit, minlength=bins)
    ece = float(np.abs(hit_sum - conf_sum).sum() / len(conf)) if len(conf) else 0.0
    table = [
        {
            "bin": i,
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "rows": int(rows[i]),
            "confidence": float(conf_sum[i] / rows[i]) if rows[i] else None,
            "accuracy": float(hit_sum[i] / rows[i]) if rows[i] else None,
        }
        for i in range(bins)
    ]
    return {"ece": ece, "bins": table}


def thin(curve: dict, keys: tuple[str, ...], points: int = 1001) -> list[dict]:
    """At most `points` rows of a curve (evenly spaced, both ends kept) for plots; areas use every point."""
    n = len(curve[keys[0]])
    idx = np.arange(n) if n <= points else np.unique(np.round(np.linspace(0, n - 1, points)).astype(int))
    return [{k: float(curve[k][i]) for k in keys} for i in idx]

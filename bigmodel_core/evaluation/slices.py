"""Slices of the test rows: where is a model good, where is it weak, and did it get worse there?

Every dimension splits the test rows into groups: `length` by the quartiles of the rows' word counts
(edges recorded, so a report says which lengths a bucket holds), `source` and any other column of
the split table by value. Each group gets accuracy and macro-F1 of the challenger and, when there is
one, of the champion on the same rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bigmodel_core.errors import ConfigError
from bigmodel_core.evaluation.metrics import classification_metrics

MISSING = "(missing)"


def check_columns(frame: pd.DataFrame, columns: list[str], key: str = "evaluate.slice_columns") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{key}: column {missing[0]!r} is not in the test split (its columns: {', '.join(map(str, frame.columns))})"
        )


def length_buckets(texts: list[str]) -> dict:
    """Quartile buckets of word counts: {'edges': [q25, q50, q75], 'groups': {name: row positions}}.

    Bucket i holds the rows with edge[i-1] < words <= edge[i]; equal edges (many texts of one length)
    merge, and a bucket with no rows is left out. Names give the word counts a bucket holds: '8-12 words'.
    """
    words = np.array([len(str(t).split()) for t in texts], dtype=np.int64)
    if len(words) == 0:
        return {"edges": [], "groups": {}}
    edges = [float(e) for e in np.quantile(words, [0.25, 0.5, 0.75])]
    inner = np.unique(edges)
    which = np.searchsorted(inner, words, side="left")  # words <= inner[0] -> 0, ... , > inner[-1] -> len(inner)
    groups = {}
    for b in range(len(inner) + 1):
        rows = np.flatnonzero(which == b)
        if len(rows) == 0:
            continue
        lo = int(words[rows].min()) if b == 0 else math.floor(inner[b - 1]) + 1
        hi = int(words[rows].max()) if b == len(inner) else math.floor(inner[b])
        groups[f"{lo} words" if lo == hi else f"{lo}-{hi} words"] = rows
    return {"edges": edges, "groups": groups}


def value_groups(values: pd.Series) -> dict[str, np.ndarray]:
    """One group per distinct value (as text; nulls together under '(missing)'), sorted by name."""
    keys = [MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values.tolist()]
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object), sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return {str(u): order[bounds[i] : bounds[i + 1]] for i, u in enumerate(uniques)}


def slice_groups(frame: pd.DataFrame, columns: list[str]) -> dict[str, dict]:
    """{dimension: {'by', 'edges' (length only), 'groups': {slice: row positions}}} for the test frame.

    The dimensions are `length` (quartiles of the word counts of `text`), `source`, then `columns` in order.
    """
    check_columns(frame, columns)
    dims = {"length": {"by": "quartiles of the word count of text", **length_buckets(frame["text"].tolist())}}
    for col in dict.fromkeys(["source", *columns]):  # source first, once
        if col in frame.columns:
            dims[col] = {"by": f"value of column {col!r}", "groups": value_groups(frame[col])}
    return dims


def slice_metrics(
    dims: dict[str, dict], y: np.ndarray, pred: np.ndarray, num_classes: int, champion_pred: np.ndarray | None = None
) -> dict[str, dict]:
    """Accuracy and macro-F1 per slice for the challenger (and the champion, when its predictions are given)."""
    y, pred = np.asarray(y), np.asarray(pred)
    out = {}
    for dim, spec in dims.items():
        rows = []
        for name, idx in spec["groups"].items():
            m = classification_metrics(y[idx], pred[idx], num_classes=num_classes)
            row = {"slice": name, "rows": len(idx), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
            if champion_pred is not None:
                c = classification_metrics(y[idx], np.asarray(champion_pred)[idx], num_classes=num_classes)
                row.update(
                    champion_accuracy=c["accuracy"],
                    champion_macro_f1=c["macro_f1"],
                    macro_f1_difference=m["macro_f1"] - c["macro_f1"],
                )
            rows.append(row)
        out[dim] = {"by": spec["by"], **({"edges": spec["edges"]} if "edges" in spec else {}), "slices": rows}
    return out

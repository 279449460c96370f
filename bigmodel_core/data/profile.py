"""A data profile that travels with each model version, and drift of new data against the champion's.

The profile of a set of rows: label priors, a histogram of text lengths in words over fixed bins, and the
most frequent words (the vocabulary). Train writes the profile of its rows into the model bundle
(`data_profile.json`); validate profiles the rows that pass and compares them with the champion's:

- label shift: L-infinity distance between the label priors (the largest change of one class's share);
- length drift: Jensen-Shannon divergence (base 2, so 0..1) between the length histograms;
- OOV increase: the share of word occurrences outside the champion's vocabulary, minus that share in the
  champion's own data (its vocabulary is its most frequent words, so it is not zero there either).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bigmodel_core.data import columns

#: Upper edges (words) of the length bins; the last bin is open.
LENGTH_EDGES = (2, 5, 10, 20, 50, 100, 200, 500, 1000)
VOCAB_SIZE = 20_000
FILE = "data_profile.json"


class Profiler:
    """The profile of rows seen in parts (add each batch, then result()): label priors, word-length histogram,
    top words with counts, OOV baseline. Words: the lower-cased text split on whitespace (columns.words_lower).
    With a reference vocabulary it also counts the words outside it (oov_rate)."""

    def __init__(self, reference_vocab: dict | None = None) -> None:
        self.rows = 0
        self.lengths = np.zeros(len(LENGTH_EDGES) + 1, dtype=np.int64)
        self.counts: dict[str, int] = {}  # insertion order = first appearance
        self.labels: dict[str, int] = {}
        self.reference = pa.array(list(reference_vocab), type=pa.large_string()) if reference_vocab is not None else None
        self.known = 0

    def add(self, texts, labels) -> None:
        words, per_text = columns.words_lower(columns.as_array(texts))
        self.rows += len(per_text)
        self.lengths += np.bincount(np.searchsorted(LENGTH_EDGES, per_text, side="left"), minlength=len(LENGTH_EDGES) + 1)
        counted = pc.value_counts(words)  # in order of first appearance
        for w, c in zip(counted.field("values").to_pylist(), counted.field("counts").to_numpy().tolist()):
            self.counts[w] = self.counts.get(w, 0) + c
        for lab, c in pd.Series(labels).astype(str).value_counts(sort=False).items():
            self.labels[lab] = self.labels.get(lab, 0) + int(c)
        if self.reference is not None and len(words):
            self.known += int(pc.sum(pc.is_in(words, value_set=self.reference)).as_py() or 0)

    def oov_rate(self) -> float:
        total = sum(self.counts.values())
        return 1 - self.known / total if total else 0.0

    def result(self) -> dict:
        values = list(self.counts)
        counts = np.fromiter(self.counts.values(), dtype=np.int64, count=len(values))
        top = np.argsort(-counts, kind="stable")[:VOCAB_SIZE]  # ties keep first-appearance order
        vocab = {values[i]: int(counts[i]) for i in top}
        total = int(counts.sum())
        n_labels = sum(self.labels.values())
        return {
            "rows": self.rows,
            "label_priors": {k: round(v / n_labels, 6) for k, v in sorted(self.labels.items())},
            "length_bins": [f"<={e}" for e in LENGTH_EDGES] + [f">{LENGTH_EDGES[-1]}"],
            "length_hist": [int(x) for x in self.lengths],
            "words": total,
            "vocab": vocab,
            "oov_rate": round(1 - sum(vocab.values()) / total, 6) if total else 0.0,
        }


def profile(texts: pd.Series, labels: pd.Series) -> dict:
    """Profile of the rows (a Profiler over one batch)."""
    p = Profiler()
    p.add(texts, labels)
    return p.result()


def js_divergence(p: list[float], q: list[float]) -> float:
    """Jensen-Shannon divergence of two histograms (normalized here), base 2: 0 same, 1 disjoint."""
    a, b = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if a.sum() == 0 or b.sum() == 0:
        return 0.0
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: np.ndarray, y: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / y[mask])))

    return max(0.0, (kl(a, m) + kl(b, m)) / 2)


def oov_rate(texts: pd.Series, vocab: dict) -> float:
    p = Profiler(vocab)
    p.add(texts, pd.Series([""] * len(texts)))
    return p.oov_rate()


def compare(texts: pd.Series | None, current: dict, reference: dict, p, version: str | None = None,
            oov: float | None = None) -> dict:
    """Drift of `current` (with its rows' `texts`, or their OOV rate against the reference's vocabulary
    already counted: `oov`) against `reference`; p: DriftParams."""
    classes = sorted(set(current["label_priors"]) | set(reference["label_priors"]))
    shifts = {c: current["label_priors"].get(c, 0.0) - reference["label_priors"].get(c, 0.0) for c in classes}
    worst = max(classes, key=lambda c: abs(shifts[c])) if classes else None
    label_shift = abs(shifts[worst]) if worst else 0.0
    length_js = js_divergence(current["length_hist"], reference["length_hist"])
    oov = oov_rate(texts, reference["vocab"]) if oov is None else oov
    oov_increase = oov - float(reference.get("oov_rate", 0.0))
    findings = []
    if label_shift > p.max_label_shift:
        findings.append(f"label priors moved by {label_shift:.3f} (L-infinity; class {worst!r}: "
                        f"{reference['label_priors'].get(worst, 0.0):.3f} -> {current['label_priors'].get(worst, 0.0):.3f}) "
                        f"> max_label_shift {p.max_label_shift:g}")
    if length_js > p.max_length_js:
        findings.append(f"text lengths moved: Jensen-Shannon divergence {length_js:.3f} > max_length_js {p.max_length_js:g}")
    if oov_increase > p.max_oov_increase:
        findings.append(f"out-of-vocabulary words rose from {reference.get('oov_rate', 0.0):.3f} to {oov:.3f} "
                        f"(+{oov_increase:.3f} > max_oov_increase {p.max_oov_increase:g})")
    return {
        "checked": True, "policy": p.policy, "reference_version": version, "reference_rows": reference.get("rows"),
        "label_shift": round(label_shift, 6), "label_shift_class": worst,
        "label_priors": {c: [reference["label_priors"].get(c, 0.0), current["label_priors"].get(c, 0.0)] for c in classes},
        "length_js": round(length_js, 6), "oov_rate": round(oov, 6), "reference_oov_rate": reference.get("oov_rate", 0.0),
        "oov_increase": round(oov_increase, 6),
        "thresholds": {"max_label_shift": p.max_label_shift, "max_length_js": p.max_length_js,
                       "max_oov_increase": p.max_oov_increase},
        "passed": not findings, "findings": findings,
    }


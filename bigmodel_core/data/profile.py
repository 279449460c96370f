"""A data profile that travels with each model version, and drift of new data against the champion's.

The profile of a set of rows: label priors, a histogram of text lengths in words over fixed bins, and the
most frequent words (the vocabulary). Validate profiles the rows that pass (data/profile.json), which train puts
into the model bundle (models/bundle.PROFILE_FILE), and compares them with the champion's:

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
from scipy.spatial.distance import jensenshannon

from bigmodel_core.data import columns

#: Upper edges (words) of the length bins; the last bin is open.
LENGTH_EDGES = (2, 5, 10, 20, 50, 100, 200, 500, 1000)
VOCAB_SIZE = 20_000
MERGE_AT = 4_000_000  # (word, count) pairs that wait before they are summed (Profiler.add_counts)


class Profiler:
    """The profile of rows seen in parts (add each batch, then result()): label priors, word-length histogram,
    top words with counts, OOV baseline. Words: the lower-cased text split on whitespace (columns.words_lower).
    With a reference vocabulary it also counts the words outside it (oov_rate).

    The word counts live in Arrow and numpy (the distinct words seen, a count for each), summed by Arrow
    group-bys, not a Python loop; counts can also be added for words already split elsewhere (add_counts)
    and taken away again (sign=-1), which is how validate reuses the words its near-duplicate search split."""

    def __init__(self, reference_vocab: dict | None = None) -> None:
        self.rows = 0
        self.lengths = np.zeros(len(LENGTH_EDGES) + 1, dtype=np.int64)
        self.words = pa.array([], type=pa.large_string())  # the distinct words seen (as of the last merge)
        self.word_counts = np.zeros(0, dtype=np.int64)
        self._pending: list[pa.Table] = []  # counts added since the last merge (see add_counts)
        self._waiting = 0
        self.labels: dict[str, int] = {}
        self.reference = (
            pa.array(list(reference_vocab), type=pa.large_string()) if reference_vocab is not None else None
        )

    def add(self, texts, labels) -> None:
        words, per_text = columns.words_lower(columns.as_array(texts))
        self.add_lengths(per_text)
        self.add_labels(labels)
        self.add_words(words)

    def add_lengths(self, per_text: np.ndarray) -> None:
        """Rows with these word counts."""
        self.rows += len(per_text)
        self.lengths += np.bincount(
            np.searchsorted(LENGTH_EDGES, per_text, side="left"), minlength=len(LENGTH_EDGES) + 1
        )

    def add_labels(self, labels) -> None:
        for lab, c in pd.Series(labels).astype(str).value_counts(sort=False).items():
            self.labels[lab] = self.labels.get(lab, 0) + int(c)

    def add_words(self, words: pa.Array, sign: int = 1) -> None:
        """Count each occurrence in `words` (a flat array of words)."""
        if len(words):
            encoded = pc.dictionary_encode(words)
            counts = np.bincount(encoded.indices.to_numpy(zero_copy_only=False), minlength=len(encoded.dictionary))
            self.add_counts(encoded.dictionary, counts, sign)

    def add_counts(self, distinct: pa.Array, counts: np.ndarray, sign: int = 1) -> None:
        """Add (sign=-1: take away) `counts[i]` occurrences of the word `distinct[i]` (distinct words). The
        counts wait in a list and are summed per word in one Arrow group-by once MERGE_AT of them wait (and
        before any figure is read), so a batch costs no lookup against the words seen so far."""
        if len(distinct):
            self._pending.append(
                pa.table(
                    {
                        "word": distinct.cast(pa.large_string()),
                        "count": pa.array(sign * np.asarray(counts, dtype=np.int64)),
                    }
                )
            )
            self._waiting += len(distinct)
            if self._waiting >= MERGE_AT:
                self.merge()

    def merge(self) -> None:
        """Sum the waiting counts into (words, word_counts); a word taken away more often than it was added
        is an error of the caller. The first counts, from one call, are taken as they are (a call's words are
        distinct); later ones are summed per word among themselves, then added to the words already seen that
        they name (a hash lookup, not a group-by over every word seen) and the new words appended."""
        if not self._pending:
            return
        pending, self._pending, self._waiting = self._pending, [], 0
        if not len(self.words) and len(pending) == 1:
            words, counts = pending[0]["word"].combine_chunks(), pending[0]["count"].to_numpy()
        else:
            summed = pa.concat_tables(pending).group_by("word").aggregate([("count", "sum")])
            added = summed["count_sum"].to_numpy()
            at = pc.fill_null(pc.index_in(summed["word"], value_set=self.words), -1).to_numpy(zero_copy_only=False)
            known = at >= 0
            counts = self.word_counts.copy()
            counts[at[known]] += added[known]  # at most once each: the group-by made the words distinct
            new = ~known
            words = pa.concat_arrays([self.words, summed["word"].filter(pa.array(new)).combine_chunks()])
            counts = np.concatenate([counts, added[new]])
        if (counts < 0).any():
            bad = words.filter(pa.array(counts < 0))[0].as_py()
            raise ValueError(f"cannot take away {int((counts < 0).sum())} word(s) never added, e.g. {bad!r}")
        keep = counts > 0
        self.words = words if keep.all() else words.filter(pa.array(keep))
        self.word_counts = counts[keep].astype(np.int64)

    def oov_rate(self) -> float:
        """The share of word occurrences outside the reference vocabulary (all of them without one)."""
        self.merge()
        total = int(self.word_counts.sum())
        if not total:
            return 0.0
        if self.reference is None:
            return 1.0
        known = int(
            self.word_counts[pc.is_in(self.words, value_set=self.reference).to_numpy(zero_copy_only=False)].sum()
        )
        return 1 - known / total

    def result(self) -> dict:
        self.merge()
        present = self.word_counts > 0
        words, counts = self.words.filter(pa.array(present)), self.word_counts[present]
        # the most frequent words; equal counts in word order, so the vocabulary does not depend on row order
        order = pc.sort_indices(
            pa.table({"count": counts, "word": words}), sort_keys=[("count", "descending"), ("word", "ascending")]
        )[:VOCAB_SIZE]
        vocab = dict(zip(words.take(order).to_pylist(), counts[order.to_numpy()].tolist(), strict=True))
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


def oov_rate(texts: pd.Series, vocab: dict) -> float:
    p = Profiler(vocab)
    p.add(texts, pd.Series([""] * len(texts)))
    return p.oov_rate()


def compare(
    texts: pd.Series | None, current: dict, reference: dict, p, version: str | None = None, oov: float | None = None
) -> dict:
    """Drift of `current` (with its rows' `texts`, or their OOV rate against the reference's vocabulary
    already counted: `oov`) against `reference`; p: DriftParams."""
    classes = sorted(set(current["label_priors"]) | set(reference["label_priors"]))
    shifts = {c: current["label_priors"].get(c, 0.0) - reference["label_priors"].get(c, 0.0) for c in classes}
    worst = max(classes, key=lambda c: abs(shifts[c])) if classes else None
    label_shift = abs(shifts[worst]) if worst else 0.0
    cur, ref = current["length_hist"], reference["length_hist"]
    # the Jensen-Shannon divergence in bits (0 same, 1 disjoint) is scipy's distance squared; an empty histogram
    # is no drift, and so is the nan of a rounding just below zero for equal ones
    length_js = float(np.nan_to_num(jensenshannon(cur, ref, base=2) ** 2)) if sum(cur) and sum(ref) else 0.0
    if oov is None:
        if texts is None:
            raise ValueError("drift needs the rows' texts or their OOV rate")
        oov = oov_rate(texts, reference["vocab"])
    oov_increase = oov - float(reference.get("oov_rate", 0.0))
    findings = []
    if label_shift > p.max_label_shift:
        findings.append(
            f"label priors moved by {label_shift:.3f} (L-infinity; class {worst!r}: "
            f"{reference['label_priors'].get(worst, 0.0):.3f} -> {current['label_priors'].get(worst, 0.0):.3f}) "
            f"> max_label_shift {p.max_label_shift:g}"
        )
    if length_js > p.max_length_js:
        findings.append(
            f"text lengths moved: Jensen-Shannon divergence {length_js:.3f} > max_length_js {p.max_length_js:g}"
        )
    if oov_increase > p.max_oov_increase:
        findings.append(
            f"out-of-vocabulary words rose from {reference.get('oov_rate', 0.0):.3f} to {oov:.3f} "
            f"(+{oov_increase:.3f} > max_oov_increase {p.max_oov_increase:g})"
        )
    return {
        "checked": True,
        "policy": p.policy,
        "reference_version": version,
        "reference_rows": reference.get("rows"),
        "label_shift": round(label_shift, 6),
        "label_shift_class": worst,
        "label_priors": {
            c: [reference["label_priors"].get(c, 0.0), current["label_priors"].get(c, 0.0)] for c in classes
        },
        "length_js": round(length_js, 6),
        "oov_rate": round(oov, 6),
        "reference_oov_rate": reference.get("oov_rate", 0.0),
        "oov_increase": round(oov_increase, 6),
        "thresholds": {
            "max_label_shift": p.max_label_shift,
            "max_length_js": p.max_length_js,
            "max_oov_increase": p.max_oov_increase,
        },
        "passed": not findings,
        "findings": findings,
    }

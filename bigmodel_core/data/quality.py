"""Data-quality rules and the gate of the validate stage.

Each rule marks rows; the rule's policy decides whether they are quarantined, stop the run, or
are only reported. Every row ends up in exactly one of: passed, quarantined (with rule and reason).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bigmodel_core.config import DATASET_RULES, ValidateParams
from bigmodel_core.data import columns
from bigmodel_core.data.cleaning import normalize_key

# C0 and C1 control characters other than tab, line feed and carriage return (and DEL)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_HTML_LEFT = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9]*|/[a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]{0,200})?/?>|&(?:[a-zA-Z]{2,8}|#\d{1,6}|#x[0-9a-fA-F]{1,6});")
# the same on ASCII text, for pyarrow's RE2 (whose \s and \d are ASCII-only)
_CONTROL_RE2 = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_HTML_LEFT_RE2 = (r"<(?:[a-zA-Z][a-zA-Z0-9]*|/[a-zA-Z][a-zA-Z0-9]*)(?:[\t\n\x0b\x0c\r \x1c-\x1f][^<>]{0,200})?/?>"
                  r"|&(?:[a-zA-Z]{2,8}|#[0-9]{1,6}|#x[0-9a-fA-F]{1,6});")


def group_key(text: str) -> str:
    return hashlib.sha1(normalize_key(text).encode()).hexdigest()[:20]


@dataclass
class QualityResult:
    passed: pd.DataFrame
    quarantined: pd.DataFrame
    report: dict
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def near_duplicates(df: pd.DataFrame, candidates: pd.Series, keys: pd.Series, rule, max_pairs: int = 50) -> dict:
    """Clusters of near-identical texts among the candidate rows: MinHash signatures of word shingles, LSH
    bands (sizes from datasketch's optimiser) for candidate pairs, each pair kept when its estimated Jaccard
    similarity is >= rule.min_jaccard (bigmodel_core.data.minhash, vectorised over all rows).

    Returns per row (indexed like df): `cluster` (one group key per cluster: the smallest of its members'),
    `copies` (every member but the one kept: a fixed test row first, else the first row), `stuck` (fixed
    train rows whose cluster holds a fixed test row: they cannot follow it), `to_test` (rows whose cluster
    holds a fixed test row), `reasons` for copies and stuck rows, the `pairs` found (the max_pairs most
    similar, with both rows), `pairs_found` (how many) and `clusters` (how many)."""
    from bigmodel_core.data import minhash

    cand_keys = keys[candidates]
    first_index = cand_keys.index[~cand_keys.duplicated().to_numpy()]  # exact copies share a key: one signature
    first_keys = keys[first_index].to_numpy()
    positions = df.index.get_indexer(first_index)
    texts = pc.take(columns.as_array(df["text"]), pa.array(positions, type=pa.int64()))
    sig = (minhash.signatures(texts, rule.shingle_words) if len(first_index)
           else np.empty((0, minhash.BINS), dtype=np.uint32))
    bands, per_band = minhash.band_params(rule.min_jaccard)
    pairs = minhash.candidate_pairs(sig, bands, per_band)
    sims = minhash.similarity(sig, pairs)
    keep = sims >= rule.min_jaccard
    pairs, sims = pairs[keep], sims[keep]
    sig_of = {k: i for i, k in enumerate(first_keys)}
    in_pair = set(first_keys[np.unique(pairs)]) if len(pairs) else set()
    comp = minhash.components(len(first_index), pairs) if len(pairs) else np.arange(len(first_index))
    # a cluster is named by the smallest group key of its members
    name = pd.Series(first_keys).groupby(comp).transform("min").to_numpy()
    root = {k: c for k, c in zip(first_keys, name) if k in in_pair}
    top = np.argsort(-sims, kind="stable")[:max_pairs]
    first_index = first_index.to_numpy()
    pair_rows = [(first_index[pairs[t, 0]], first_index[pairs[t, 1]], float(sims[t])) for t in top]
    n_pairs = int(len(pairs))
    cluster = keys.copy()
    cluster[candidates] = keys[candidates].map(root).fillna(keys[candidates])
    members = candidates & keys.isin(in_pair)
    fixed = df["fixed_split"].astype("object")
    is_test = members & (fixed == "test")
    test_clusters = set(cluster[is_test])
    to_test = members & cluster.isin(test_clusters)
    stuck = to_test & (fixed == "train")
    # keep one row per cluster: a fixed test row first, then the earliest
    order = pd.DataFrame({"c": cluster[members], "t": ~is_test[members]}).sort_values(["c", "t"], kind="stable")
    kept = order[~order["c"].duplicated()].index
    copies = members.copy()
    copies[kept] = False
    copies &= ~stuck
    reasons = {}
    first_of = {cluster[i]: i for i in kept}
    for i in copies[copies | stuck].index:
        twin = first_of[cluster[i]]
        j = float((sig[sig_of[keys[i]]] == sig[sig_of[keys[twin]]]).mean())
        where = f"{df.at[twin, 'source_file']} row {int(df.at[twin, 'source_row'])}"
        reasons[i] = (f"near-duplicate (Jaccard {j:.2f}) of {where}, a fixed test row it cannot follow into test"
                      if stuck[i] else f"near-duplicate (Jaccard {j:.2f}) of {where}, which is kept")

    def row(i) -> dict:
        return {"source_file": df.at[i, "source_file"], "source_row": int(df.at[i, "source_row"]),
                "text": str(df.at[i, "text"])[:160], "label": df.at[i, "label"]}

    pair_list = [{"jaccard": round(j, 3), "a": row(a), "b": row(b)} for a, b, j in pair_rows]
    return {"cluster": cluster, "copies": copies, "stuck": stuck, "to_test": to_test, "reasons": reasons,
            "pairs": pair_list, "pairs_found": n_pairs, "clusters": int(cluster[members].nunique())}


def _text_rules(df: pd.DataFrame, p: ValidateParams, words: np.ndarray) -> dict[str, pd.Series]:
    """Row rules on the text alone: too short, too long, control characters, HTML left after cleaning.
    words: the word count of each row."""
    arr = columns.as_array(df["text"])
    present = ~columns.blank(arr)
    chars = columns.char_counts(arr)
    short, long_ = np.zeros(len(df), dtype=bool), np.zeros(len(df), dtype=bool)
    r = p.rules["too_short"]
    if r.min_chars is not None:
        short |= chars < r.min_chars
    if r.min_words is not None:
        short |= words < r.min_words
    r = p.rules["too_long"]
    if r.max_chars is not None:
        long_ |= chars > r.max_chars
    if r.max_words is not None:
        long_ |= words > r.max_words
    undecodable = pc.fill_null(pc.match_substring(arr, "\ufffd"), False).to_numpy(zero_copy_only=False)
    masks = {"undecodable": undecodable, "too_short": present & short, "too_long": present & long_,
             "control_chars": present & columns.contains(arr, _CONTROL, _CONTROL_RE2),
             "html_left": present & columns.contains(arr, _HTML_LEFT, _HTML_LEFT_RE2)}
    return {k: pd.Series(v, index=df.index) for k, v in masks.items()}


def _mark_rules(df: pd.DataFrame, labels: set[str] | None) -> dict[str, pd.Series]:
    """Return, per rule, a boolean mask and a reason series; rules are checked in this order."""
    arr = columns.as_array(df["text"])
    empty = pd.Series(columns.blank(arr), index=df.index)
    missing = df["label"].isna() | (df["label"].fillna("").str.strip() == "")
    unknown = ~missing & (~df["label"].isin(sorted(labels)) if labels is not None else False)
    if not isinstance(unknown, pd.Series):
        unknown = pd.Series(False, index=df.index)
    usable = ~(empty | missing | unknown)
    keys = pd.Series(pd.NA, index=df.index, dtype="object")
    keys[usable] = columns.group_keys(pc.filter(arr, pa.array(usable.to_numpy())))
    n_labels = df[usable].groupby(keys[usable])["label"].nunique()
    conflict_keys = set(n_labels[n_labels > 1].index)
    conflicting = usable & keys.isin(conflict_keys)
    dup_candidates = usable & ~conflicting
    # Keep the first copy, but a copy in a fixed test split first of all: removing it would shrink
    # the official test set, while the train copy is the one that would leak.
    rank = (df["fixed_split"] != "test").astype(int)
    order = rank.sort_values(kind="stable").index
    dup_sorted = keys.where(dup_candidates).loc[order].duplicated(keep="first")
    duplicate = dup_candidates & dup_sorted.reindex(df.index) & keys.notna()
    return {
        "empty_text": empty,
        "missing_label": ~empty & missing,
        "unknown_label": ~empty & unknown,
        "conflicting_labels": conflicting,
        "duplicate": duplicate,
        "_keys": keys,
    }


def _reason(rule: str, label: object, labels: set[str] | None, text: object = None, p: ValidateParams | None = None) -> str:
    t = "" if text is None or (not isinstance(text, str) and pd.isna(text)) else str(text)
    if rule == "too_short":
        r = p.rules[rule] if p else None
        limits = [f"min_chars {r.min_chars}" for _ in [0] if r and r.min_chars is not None] + \
                 [f"min_words {r.min_words}" for _ in [0] if r and r.min_words is not None]
        return f"text has {len(t)} character(s) and {len(t.split())} word(s), under {' or '.join(limits)}"
    if rule == "too_long":
        r = p.rules[rule] if p else None
        limits = [f"max_chars {r.max_chars}" for _ in [0] if r and r.max_chars is not None] + \
                 [f"max_words {r.max_words}" for _ in [0] if r and r.max_words is not None]
        return f"text has {len(t)} character(s) and {len(t.split())} word(s), over {' or '.join(limits)}"
    if rule == "undecodable":
        return (f"text has U+FFFD at character {t.find(chr(0xFFFD)) + 1}: bytes that were not valid text, replaced "
                "(ingest names the file, byte and line when it replaced them)")
    if rule == "control_chars":
        m = _CONTROL.search(t)
        return f"control character U+{ord(m.group()):04X} at character {m.start() + 1}" if m else "control character"
    if rule == "html_left":
        m = _HTML_LEFT.search(t)
        return f"HTML left after cleaning: {m.group()!r}" if m else "HTML left after cleaning"
    if rule == "empty_text":
        return "text is empty or whitespace only"
    if rule == "missing_label":
        return "label is missing"
    if rule == "unknown_label":
        return f"label {label!r} is not one of {sorted(labels or [])}"
    if rule == "conflicting_labels":
        return "the same text appears with more than one label"
    return "exact duplicate of another row (same text and label); the first copy, or the fixed test copy, is kept"


def check(df: pd.DataFrame, p: ValidateParams, labels: list[str] | None, max_tokens: int | None = None) -> QualityResult:
    """Apply every rule. max_tokens (tokenizer.max_length) feeds the truncated rule; None leaves it unchecked."""
    label_set = set(labels) if labels is not None else None
    marks = _mark_rules(df, label_set)
    keys = marks.pop("_keys")
    words = columns.word_counts(columns.as_array(df["text"]))
    marks.update(_text_rules(df, p, words))
    n = len(df)
    assigned = pd.Series("", index=df.index, dtype="object")
    report_rules = {}
    failures: list[str] = []
    near: dict | None = None
    marks["near_duplicate"] = None  # computed in turn, on the rows the rules before it left
    for rule, mask in marks.items():
        policy = p.rules[rule].policy
        free = assigned == ""
        if rule == "near_duplicate":
            near = near_duplicates(df, free & keys.notna(), keys, p.rules[rule])
            hits = (near["copies"] | near["stuck"]) & free
            # under warn or fail, rows that cannot follow their twin into the test split still go aside
            aside = hits if policy == "quarantine" else near["stuck"] & free
        else:
            hits = mask.fillna(False).astype(bool) & free
            aside = hits if policy == "quarantine" else None
        count = int(hits.sum())
        frac = count / n if n else 0.0
        examples = [
            {
                "row_id": r.row_id,
                "source": r.source,
                "source_file": r.source_file,
                "source_row": int(r.source_row),
                "text": None if pd.isna(r.text) else str(r.text)[:120],
                "label": None if pd.isna(r.label) else str(r.label),
            }
            for r in df.loc[hits.index[hits.to_numpy()][: p.examples]].itertuples()
        ]
        report_rules[rule] = {"policy": policy, "rows": count, "fraction": round(frac, 6), "max_fraction": p.rules[rule].max_fraction, "examples": examples}
        if rule == "near_duplicate":
            report_rules[rule].update(clusters=near["clusters"], pairs=near["pairs"][: max(p.examples, 10)],
                                      min_jaccard=p.rules[rule].min_jaccard, shingle_words=p.rules[rule].shingle_words)
        if policy == "fail" and count:
            failures.append(f"rule {rule} (policy fail): {count} row(s), e.g. {_example_str(examples)}")
        elif frac > p.rules[rule].max_fraction:
            failures.append(
                f"rule {rule}: {count} row(s) = {frac:.1%} > max_fraction {p.rules[rule].max_fraction:.1%}, e.g. {_example_str(examples)}"
            )
        if aside is not None:
            assigned[aside] = rule

    q_mask = assigned != ""
    quarantined = df[q_mask].copy()
    quarantined["rule"] = assigned[q_mask].astype(str)
    twin_reasons = near["reasons"] if near else {}
    quarantined["reason"] = ([twin_reasons.get(i) or _reason(r.rule, r.label, label_set, r.text, p)
                              for i, r in zip(quarantined.index, quarantined.itertuples())] if len(quarantined) else [])
    quarantined = quarantined[["row_id", "source", "source_file", "source_row", "text", "label", "rule", "reason"]]
    quarantined = quarantined.astype({"text": "str", "label": "str", "rule": "str", "reason": "str"})

    passed = df[~q_mask].copy()
    # warn-policy rows stay; they still need a usable text and label to train on.
    unusable = passed["text"].isna() | (passed["text"].fillna("").str.strip() == "") | passed["label"].isna()
    if unusable.any():
        failures.append(f"{int(unusable.sum())} row(s) with empty text or no label were kept by a 'warn' policy; they cannot be trained on")
    # near-duplicates share one group key, so the split sends them where their twin goes; a twin of a fixed
    # test row goes to test with it
    passed["group_key"] = (near["cluster"] if near else keys)[~q_mask].astype(str)
    if near is not None:
        to_test = near["to_test"][~q_mask] & passed["fixed_split"].isna()
        passed.loc[to_test[to_test].index, "fixed_split"] = "test"
    passed = passed.astype({"text": "str", "label": "str", "group_key": "str"})

    frac_q = len(quarantined) / n if n else 0.0
    if frac_q > p.max_quarantine_fraction:
        failures.append(f"{len(quarantined)} of {n} rows quarantined = {frac_q:.1%} > max_quarantine_fraction {p.max_quarantine_fraction:.1%}")
    if len(passed) < p.min_rows:
        failures.append(f"only {len(passed)} rows pass, min_rows is {p.min_rows}")
    per_class = passed["label"].value_counts().sort_index()
    expected = sorted(label_set) if label_set is not None else sorted(per_class.index)
    dataset_rules, warnings = _dataset_rules(per_class, expected, p), []
    dataset_rules["truncated"] = _truncated(words[~q_mask.to_numpy()], max_tokens, p.rules["truncated"])
    for name in DATASET_RULES:
        r = dataset_rules[name]
        if not r["passed"]:
            (failures if r["policy"] == "fail" else warnings).append(f"rule {name} ({r['policy']}): {r['finding']}")
    if len(expected) < 2:
        failures.append(f"need at least 2 classes, found {expected}")

    assert len(passed) + len(quarantined) == n, "rows in must equal rows out + rows quarantined"
    report = {
        "passed": not failures,
        "rows_in": n,
        "rows_out": len(passed),
        "rows_quarantined": len(quarantined),
        "quarantine_fraction": round(frac_q, 6),
        "rules": report_rules,
        "dataset_rules": dataset_rules,
        "class_counts": {str(k): int(v) for k, v in per_class.items()},
        "failures": failures,
        "warnings": warnings,
    }
    return QualityResult(passed=passed, quarantined=quarantined, report=report, failures=failures)


def _example_str(examples: list[dict]) -> str:
    if not examples:
        return "-"
    e = examples[0]
    return f"{e['source_file']} row {e['source_row']} (text={e['text']!r}, label={e['label']!r})"


def _truncated(words: np.ndarray, max_tokens: int | None, rule) -> dict:
    """Share of passing rows (their word counts) with more words than max_tokens. A word is one token or more,
    so these rows are certainly truncated by the tokenizer (a lower bound on the truncated share)."""
    out = {"policy": rule.policy, "threshold": rule.max_fraction, "max_tokens": max_tokens}
    if max_tokens is None or not len(words):
        return {**out, "value": None, "rows": 0, "passed": True, "finding": ""}
    over = int((words > max_tokens).sum())
    frac = over / len(words)
    failed = frac > rule.max_fraction
    return {**out, "value": round(frac, 6), "rows": over, "passed": not failed,
            "finding": (f"{over} of {len(words)} passing rows ({frac:.1%}) have more than tokenizer.max_length "
                        f"{max_tokens} words, so the model sees only part of them; max_fraction is "
                        f"{rule.max_fraction:.1%} (raise tokenizer.max_length or choose tokenizer.truncation)"
                        ) if failed else ""}


def _dataset_rules(per_class: pd.Series, expected: list[str], p: ValidateParams) -> dict:
    """class_imbalance and too_few_rows_per_class on the passing rows: figure, threshold, verdict, finding."""
    counts = {lab: int(per_class.get(lab, 0)) for lab in expected}
    few = {lab: c for lab, c in counts.items() if c < p.min_rows_per_class}
    r_few = p.rules["too_few_rows_per_class"]
    out = {"too_few_rows_per_class": {
        "policy": r_few.policy, "threshold": p.min_rows_per_class, "passed": not few, "classes": few,
        "finding": "; ".join(f"class {lab!r} has {c} passing row(s), min_rows_per_class is {p.min_rows_per_class}"
                             for lab, c in few.items())}}
    r_imb = p.rules["class_imbalance"]
    present = {lab: c for lab, c in counts.items() if c > 0}
    ratio = None
    if len(present) >= 2:
        big, small = max(present, key=present.get), min(present, key=present.get)
        ratio = present[big] / present[small]
    failed = ratio is not None and r_imb.max_ratio is not None and ratio > r_imb.max_ratio
    out["class_imbalance"] = {
        "policy": r_imb.policy, "value": None if ratio is None else round(ratio, 4), "threshold": r_imb.max_ratio,
        "passed": not failed,
        "finding": (f"largest class {big!r} has {present[big]} rows, {ratio:.1f}x the smallest {small!r} "
                    f"({present[small]}); max_ratio is {r_imb.max_ratio:g}") if failed else ""}
    return out

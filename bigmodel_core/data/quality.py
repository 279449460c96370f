"""Data-quality rules and the gate of the validate stage.

Each rule marks rows; the rule's policy decides whether they are quarantined, stop the run, or
are only reported. Every row ends up in exactly one of: passed, quarantined (with rule and reason).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

from bigmodel_core.config import ValidateParams
from bigmodel_core.data.cleaning import normalize_key


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


def _mark_rules(df: pd.DataFrame, labels: set[str] | None) -> dict[str, pd.Series]:
    """Return, per rule, a boolean mask and a reason series; rules are checked in this order."""
    text = df["text"]
    empty = text.isna() | (text.fillna("").str.strip() == "")
    missing = df["label"].isna() | (df["label"].fillna("").str.strip() == "")
    unknown = ~missing & (~df["label"].isin(sorted(labels)) if labels is not None else False)
    if not isinstance(unknown, pd.Series):
        unknown = pd.Series(False, index=df.index)
    usable = ~(empty | missing | unknown)
    keys = pd.Series(pd.NA, index=df.index, dtype="object")
    keys[usable] = df.loc[usable, "text"].map(group_key)
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


def _reason(rule: str, label: object, labels: set[str] | None) -> str:
    if rule == "empty_text":
        return "text is empty or whitespace only"
    if rule == "missing_label":
        return "label is missing"
    if rule == "unknown_label":
        return f"label {label!r} is not one of {sorted(labels or [])}"
    if rule == "conflicting_labels":
        return "the same text appears with more than one label"
    return "exact duplicate of another row (same text and label); the first copy, or the fixed test copy, is kept"


def check(df: pd.DataFrame, p: ValidateParams, labels: list[str] | None) -> QualityResult:
    label_set = set(labels) if labels is not None else None
    marks = _mark_rules(df, label_set)
    keys = marks.pop("_keys")
    n = len(df)
    assigned = pd.Series("", index=df.index, dtype="object")
    report_rules = {}
    failures: list[str] = []
    for rule, mask in marks.items():
        policy = p.rules[rule].policy
        hits = mask & (assigned == "")
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
            for r in df[hits].head(p.examples).itertuples()
        ]
        report_rules[rule] = {"policy": policy, "rows": count, "fraction": round(frac, 6), "max_fraction": p.rules[rule].max_fraction, "examples": examples}
        if policy == "fail" and count:
            failures.append(f"rule {rule} (policy fail): {count} row(s), e.g. {_example_str(examples)}")
        elif frac > p.rules[rule].max_fraction:
            failures.append(
                f"rule {rule}: {count} row(s) = {frac:.1%} > max_fraction {p.rules[rule].max_fraction:.1%}, e.g. {_example_str(examples)}"
            )
        if policy == "quarantine":
            assigned[hits] = rule

    q_mask = assigned != ""
    quarantined = df[q_mask].copy()
    quarantined["rule"] = assigned[q_mask].astype(str)
    quarantined["reason"] = [_reason(r.rule, r.label, label_set) for r in quarantined.itertuples()] if len(quarantined) else []
    quarantined = quarantined[["row_id", "source", "source_file", "source_row", "text", "label", "rule", "reason"]]
    quarantined = quarantined.astype({"text": "str", "label": "str", "rule": "str", "reason": "str"})

    passed = df[~q_mask].copy()
    # warn-policy rows stay; they still need a usable text and label to train on.
    unusable = passed["text"].isna() | (passed["text"].fillna("").str.strip() == "") | passed["label"].isna()
    if unusable.any():
        failures.append(f"{int(unusable.sum())} row(s) with empty text or no label were kept by a 'warn' policy; they cannot be trained on")
    passed["group_key"] = keys[~q_mask].astype(str)
    passed = passed.astype({"text": "str", "label": "str", "group_key": "str"})

    frac_q = len(quarantined) / n if n else 0.0
    if frac_q > p.max_quarantine_fraction:
        failures.append(f"{len(quarantined)} of {n} rows quarantined = {frac_q:.1%} > max_quarantine_fraction {p.max_quarantine_fraction:.1%}")
    if len(passed) < p.min_rows:
        failures.append(f"only {len(passed)} rows pass, min_rows is {p.min_rows}")
    per_class = passed["label"].value_counts().sort_index()
    expected = sorted(label_set) if label_set is not None else sorted(per_class.index)
    for lab in expected:
        c = int(per_class.get(lab, 0))
        if c < p.min_rows_per_class:
            failures.append(f"class {lab!r} has {c} passing row(s), min_rows_per_class is {p.min_rows_per_class}")
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
        "class_counts": {str(k): int(v) for k, v in per_class.items()},
        "failures": failures,
    }
    return QualityResult(passed=passed, quarantined=quarantined, report=report, failures=failures)


def _example_str(examples: list[dict]) -> str:
    if not examples:
        return "-"
    e = examples[0]
    return f"{e['source_file']} row {e['source_row']} (text={e['text']!r}, label={e['label']!r})"

"""The validate report: per rule its policy, rows, share and examples, the dataset rules (class balance, rows per
class, truncation), the gate's failures and warnings (QualityResult), and the headline figures metrics files
keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bigmodel_core.config import DATASET_RULES, ROW_RULES, ValidateParams


@dataclass
class QualityResult:
    passed: pd.DataFrame | None  # None when the rows went to sinks (Checker.write)
    quarantined: pd.DataFrame | None
    report: dict
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


#: The figures of the report that go into metrics/data_quality.json, the file `dvc metrics show` and `dvc exp
#: show` read: a handful of columns (the whole report, examples and profile included, is reports/data_quality.json).
HEADLINE = ("passed", "rows_in", "rows_out", "rows_quarantined", "quarantine_fraction")


def headline(report: dict) -> dict:
    """The metrics-file view of a report: HEADLINE, plus how many warnings it gave and how many classes passed."""
    return {
        **{k: report[k] for k in HEADLINE},
        "warnings": len(report.get("warnings") or []),
        "classes": len(report.get("class_counts") or {}),
    }


def build_result(c) -> QualityResult:
    """The report of Checker `c` after write(), and the gate's failures (a QualityResult without rows)."""
    p, n, f = c.p, c.n, c.f
    report_rules: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for rule in ROW_RULES:
        count = int(c.hits[rule].sum())
        frac = count / n if n else 0.0
        if rule == "label_noise":  # of the rows the model checked (a sample when there are many)
            frac = count / c.noise["checked"] if c.noise["checked"] else 0.0
        examples = c.examples[rule]
        report_rules[rule] = {
            "policy": p.rules[rule].policy,
            "rows": count,
            "fraction": round(frac, 6),
            "max_fraction": p.rules[rule].max_fraction,
            "examples": examples,
        }
        if rule == "near_duplicate" and c.near is not None:
            pairs = (
                [
                    {"jaccard": round(j, 3), "a": c.pair_detail[a], "b": c.pair_detail[b]}
                    for a, b, j in getattr(c, "pair_rows", [])
                ]
                if c.near and c.near["pairs_found"]
                else []
            )
            report_rules[rule].update(
                clusters=c.near["clusters"],
                pairs=pairs,
                pairs_found=c.near["pairs_found"],
                min_jaccard=c.min_jaccard,
                shingle_words=c.shingle_words,
            )
        if rule == "label_noise":
            from bigmodel_core.data.label_noise import MODEL

            report_rules[rule].update(
                checked=c.noise["checked"],
                candidates=c.noise["candidates"],
                model=MODEL,
                folds=c.noise_rule.folds,
                model_kappa=c.noise["kappa"],
                note=c.noise["note"],
            )
        if p.rules[rule].policy == "fail" and count:
            failures.append(f"rule {rule} (policy fail): {count} row(s), e.g. {_example_str(examples)}")
        elif frac > p.rules[rule].max_fraction:
            failures.append(
                f"rule {rule}: {count} row(s) = {frac:.1%} > max_fraction "
                f"{p.rules[rule].max_fraction:.1%}, e.g. {_example_str(examples)}"
            )
    quarantined = int(c.q_mask.sum())
    passed = n - quarantined
    if c.unusable:
        failures.append(
            f"{c.unusable} row(s) with empty text or no label were kept by a 'warn' policy; they cannot be trained on"
        )
    frac_q = quarantined / n if n else 0.0
    if frac_q > p.max_quarantine_fraction:
        failures.append(
            f"{quarantined} of {n} rows quarantined = {frac_q:.1%} > max_quarantine_fraction "
            f"{p.max_quarantine_fraction:.1%}"
        )
    if passed < p.min_rows:
        failures.append(f"only {passed} rows pass, min_rows is {p.min_rows}")
    code_name = {c: name for name, c in c.label_names.items()}
    kept_labels = f["label"][~c.q_mask]
    per_class = pd.Series(
        {
            code_name[c]: int(k)
            for c, k in zip(*np.unique(kept_labels[kept_labels >= 0], return_counts=True), strict=True)
        },
        dtype="int64",
    ).sort_index()
    expected = sorted(c.label_set) if c.label_set is not None else sorted(per_class.index)
    dataset_rules = _dataset_rules(per_class, expected, p)
    warnings: list[str] = []
    dataset_rules["truncated"] = _truncated(f["words"][~c.q_mask], c.max_tokens, p.rules["truncated"])
    for name in DATASET_RULES:
        r = dataset_rules[name]
        if not r["passed"]:
            (failures if r["policy"] == "fail" else warnings).append(f"rule {name} ({r['policy']}): {r['finding']}")
    if len(expected) < 2:
        failures.append(f"need at least 2 classes, found {expected}")
    fixed_test = {
        "policy": p.fixed_test,
        "rows": int((f["fixed"] == 2).sum()),
        "set_aside": int(((f["fixed"] == 2) & c.q_mask).sum()),
        "kept_despite": c.test_kept,
    }
    report = {
        "passed": not failures,
        "rows_in": n,
        "rows_out": passed,
        "rows_quarantined": quarantined,
        "fixed_test": fixed_test,
        "quarantine_fraction": round(frac_q, 6),
        "rules": report_rules,
        "dataset_rules": dataset_rules,
        "class_counts": {str(k): int(v) for k, v in per_class.items()},
        "failures": failures,
        "warnings": warnings,
    }
    return QualityResult(passed=None, quarantined=None, report=report, failures=failures)


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
    return {
        **out,
        "value": round(frac, 6),
        "rows": over,
        "passed": not failed,
        "finding": (
            f"{over} of {len(words)} passing rows ({frac:.1%}) have more than tokenizer.max_length "
            f"{max_tokens} words, so the model sees only part of them; max_fraction is "
            f"{rule.max_fraction:.1%} (raise tokenizer.max_length or choose tokenizer.truncation)"
        )
        if failed
        else "",
    }


def _dataset_rules(per_class: pd.Series, expected: list[str], p: ValidateParams) -> dict:
    """class_imbalance and too_few_rows_per_class on the passing rows: figure, threshold, verdict, finding."""
    counts = {lab: int(per_class.get(lab, 0)) for lab in expected}
    few = {lab: c for lab, c in counts.items() if c < p.min_rows_per_class}
    r_few = p.rules["too_few_rows_per_class"]
    out: dict[str, dict[str, Any]] = {
        "too_few_rows_per_class": {
            "policy": r_few.policy,
            "threshold": p.min_rows_per_class,
            "passed": not few,
            "classes": few,
            "finding": "; ".join(
                f"class {lab!r} has {c} passing row(s), min_rows_per_class is {p.min_rows_per_class}"
                for lab, c in few.items()
            ),
        }
    }
    r_imb = p.rules["class_imbalance"]
    present = {lab: c for lab, c in counts.items() if c > 0}
    ratio = None
    if len(present) >= 2:
        big, small = max(present, key=present.__getitem__), min(present, key=present.__getitem__)
        ratio = present[big] / present[small]
    failed = ratio is not None and r_imb.max_ratio is not None and ratio > r_imb.max_ratio
    out["class_imbalance"] = {
        "policy": r_imb.policy,
        "value": None if ratio is None else round(ratio, 4),
        "threshold": r_imb.max_ratio,
        "passed": not failed,
        "finding": (
            f"largest class {big!r} has {present[big]} rows, {ratio:.1f}x the smallest {small!r} "
            f"({present[small]}); max_ratio is {r_imb.max_ratio:g}"
        )
        if failed
        else "",
    }
    return out

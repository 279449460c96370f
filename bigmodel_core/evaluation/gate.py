"""The model gate: absolute floors, then the challenger against the champion on the same test rows.

Every rule gives one entry in `checks` with its figures and verdict; the decision file written by
evaluate is this dict. The comparison with the champion is decided on the paired bootstrap interval
of the macro-F1 difference (its lower bound), with McNemar's test as a second, independent check that
the challenger does not make significantly more errors on the rows where the two disagree.

The gate ends in one of three verdicts (`verdict` in the decision and in metrics/eval.json):

* `passed`: every rule passed; deploy may move the champion alias to the challenger.
* `inconclusive`: the comparison did not show the challenger better than the champion (min_gain) or not worse
  by more than max_regression, and nothing shows it worse either: the two are within the test split's noise.
  The champion is kept; deploy registers the challenger (alias challenger) and the run ends without error.
* `closed`: an absolute floor (min_accuracy, min_macro_f1), the label check or an enforced budget failed, or
  the challenger is **significantly worse** than the champion: at the gate's `confidence`, the bootstrap
  interval of macro-F1(challenger) - macro-F1(champion) lies wholly below zero (its upper bound < 0), or
  McNemar's test finds the challenger wrong significantly more often on the rows where exactly one of the two
  is right. Deploy registers the challenger and exits 3; the flow notifies `gate_closed`.

How many test rows a comparison needs (docs/promotion.md): on n rows where the two models disagree in
correctness on a share d of them, the difference's standard error is about sqrt(d / n), so the interval's
half-width is z * sqrt(d / n) with z = Phi^-1((1 + confidence) / 2) (for macro-F1 on balanced classes as well:
tests/test_promotion.py checks it against the bootstrap). Two equally good models then clear a margin m with
probability `POWER` from n >= (z + z_power)^2 * d / m^2 rows. rows_needed() scales the interval this test split
gave instead (the same formula, with d and the class balance as they are).

The budget rules (per-slice regression against the champion, gain over the built-in baseline, p95
latency, model size) always report their figures; each judges only when its param is set
(`enforced: false` and `passed: true` otherwise). The gain over the baseline is set by default
(-0.005: a model clearly worse than TF-IDF + LR is not promoted).
"""

from __future__ import annotations

import numpy as np

from bigmodel_core.config import EvaluateParams
from bigmodel_core.evaluation.stats import mcnemar, paired_bootstrap

_EPS = 1e-9  # a difference that equals its bound up to float rounding passes
VERDICTS = ("passed", "inconclusive", "closed")
#: the comparison rules: failing one alone (nothing shows the challenger worse) keeps the champion, closes nothing
COMPARISON_RULES = ("max_regression_vs_champion", "min_gain_vs_champion")
#: the probability with which rows_needed()'s figure lets two equally good models pass max_regression
POWER = 0.8


def decide(
    metrics: dict,
    champion: dict | None,
    p: EvaluateParams,
    *,
    y: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    champion_pred: np.ndarray | None = None,
    slices: dict | None = None,
    baseline: dict | None = None,
    runtime: dict | None = None,
    champion_with_other_labels: dict | None = None,
    labels: list[str] | None = None,
) -> dict:
    """Return {'promote', 'checks', 'reasons', 'champion', 'comparison'} for a challenger's test metrics.

    champion: None, or {'version', 'accuracy', 'macro_f1'} measured on the same test rows; y, pred and
    champion_pred (class indices in one label order) give the paired tests. slices: slice_metrics() output
    (with the champion's figures when there is a champion); baseline: {'accuracy', 'macro_f1'} or
    {'error': why it could not be trained}; runtime: {'latency_p95_ms', 'model_mb'}. A rule whose input
    is not given is left out.
    """
    checks = [
        {
            "rule": "min_accuracy",
            "value": metrics["accuracy"],
            "threshold": p.min_accuracy,
            "passed": metrics["accuracy"] >= p.min_accuracy,
        },
        {
            "rule": "min_macro_f1",
            "value": metrics["macro_f1"],
            "threshold": p.min_macro_f1,
            "passed": metrics["macro_f1"] >= p.min_macro_f1,
        },
    ]
    comparison = None
    if champion_with_other_labels is not None:  # the gate cannot say the new model is as good: a person must
        other = champion_with_other_labels
        checks.append(
            {
                "rule": "same_labels_as_champion",
                "value": sorted(labels or []),
                "threshold": sorted(other["labels"]),
                "champion_version": other["version"],
                "passed": p.allow_label_change,
                "enforced": not p.allow_label_change,
            }
        )
    if champion is not None:
        if y is None or pred is None or champion_pred is None:
            raise ValueError("a champion comparison needs the paired predictions (y, pred, champion_pred)")
        k = len(metrics["per_class"])
        interval = paired_bootstrap(y, pred, champion_pred, k, samples=p.bootstrap_samples, confidence=p.confidence)
        test = mcnemar(y, pred, champion_pred)
        comparison = {
            "champion_version": champion["version"],
            "champion_macro_f1": champion["macro_f1"],
            "bootstrap": interval,
            "mcnemar": test,
        }
        if p.min_gain is not None:
            rule, threshold = "min_gain_vs_champion", p.min_gain
        else:
            rule, threshold = "max_regression_vs_champion", -p.max_regression
        checks.append(
            {
                "rule": rule,
                "value": interval["low"],
                "threshold": threshold,
                "difference": interval["difference"],
                "interval": [interval["low"], interval["high"]],
                "champion_version": champion["version"],
                "passed": interval["low"] >= threshold,
                "significantly_worse": interval["high"] < 0,
            }
        )
        worse = test["old_only"] > test["new_only"] and test["p_value"] < 1 - p.confidence
        checks.append(
            {
                "rule": "mcnemar_vs_champion",
                "value": test["p_value"],
                "threshold": 1 - p.confidence,
                "new_only": test["new_only"],
                "old_only": test["old_only"],
                "passed": not worse,
            }
        )
    if champion is not None and slices is not None:
        checks.append(_slice_check(slices, champion, p))
    if baseline is not None:
        checks.append(_baseline_check(metrics, baseline, p.min_gain_over_baseline))
    if runtime is not None:
        checks.append(_budget("max_latency_p95_ms", runtime.get("latency_p95_ms"), p.max_latency_p95_ms))
        checks.append(_budget("max_model_mb", runtime.get("model_mb"), p.max_model_mb))
    failed = [c for c in checks if not c["passed"]]
    closing = [c for c in failed if c["rule"] not in COMPARISON_RULES or c["significantly_worse"]]
    verdict = "passed" if not failed else "closed" if closing else "inconclusive"
    hint = None
    if verdict == "inconclusive" and y is not None and comparison is not None:  # (only comparison rules failed)
        hint = rows_needed(len(y), comparison, p)
        comparison["rows_needed"] = hint
    return {
        "promote": verdict == "passed",
        "verdict": verdict,
        "checks": checks,
        "reasons": [describe(c) for c in failed],
        "closed_by": [c["rule"] for c in closing],
        "champion": champion,
        "comparison": comparison,
        "summary": summary(verdict, failed, hint),
    }


def verdict_of(decision: dict) -> str:
    """passed, inconclusive or closed; a decision file from before the three verdicts has only `promote`."""
    return "passed" if decision["promote"] else decision.get("verdict") or "closed"


def rows_needed(n: int, comparison: dict, p: EvaluateParams) -> dict:
    """How many test rows would let two models as far apart as these pass the comparison rule.

    The interval's half-width h on n rows shrinks as 1/sqrt(n). max_regression m: two equally good models pass
    with probability POWER when (z + z_power) * h(N) / z <= m, so N = n * ((z + z_power) * h / (z * m))^2.
    min_gain g: with the observed difference D > g as the true gain, N = n * ((z + z_power) * h / (z * (D - g)))^2;
    with D <= g no number of rows shows the gain. Also reported: d, the share of rows where exactly one
    model is right, and the rows the formula from it gives, (z + z_power)^2 * d / m^2 (docs/promotion.md)."""
    from statistics import NormalDist

    boot, test = comparison["bootstrap"], comparison["mcnemar"]
    z = NormalDist().inv_cdf((1 + p.confidence) / 2)
    z_power = NormalDist().inv_cdf(POWER)
    half = (boot["high"] - boot["low"]) / 2
    d = (test["new_only"] + test["old_only"]) / n if n else 0.0
    if p.min_gain is not None:
        margin, rule = boot["difference"] - p.min_gain, "min_gain"
    else:
        margin, rule = p.max_regression, "max_regression"
    reachable = margin > 0 and half > 0
    rows = int(np.ceil(n * ((z + z_power) * half / (z * margin)) ** 2)) if reachable else None
    from_d = int(np.ceil((z + z_power) ** 2 * d / margin**2)) if margin > 0 and d > 0 else None
    return {
        "rule": rule,
        "margin": margin,
        "difference": boot["difference"],
        "min_gain": p.min_gain,
        "test_rows": n,
        "rows_needed": rows,
        "disagreement": round(d, 6),
        "rows_needed_from_disagreement": from_d,
        "power": POWER,
        "half_width": half,
    }


def summary(verdict: str, failed: list[dict], hint: dict | None) -> str:
    """One line for people: the verdict and, when the champion is kept, why and what would decide it."""
    if verdict == "passed":
        return "gate passed"
    if verdict == "closed":
        return "gate closed: " + "; ".join(describe(c) for c in failed)
    line = (
        "champion kept (inconclusive: not shown better or worse than the champion within this test split's "
        "noise): " + "; ".join(describe(c) for c in failed)
    )
    if hint and hint["rows_needed"]:
        if hint["rule"] == "max_regression":
            line += (
                f". With the two models disagreeing on {hint['disagreement']:.1%} of the test rows, about "
                f"{hint['rows_needed']:,} test rows (this split has {hint['test_rows']:,}) would let a model as good "
                f"as the champion show a regression of at most {hint['margin']:.4f} "
                f"({hint['power']:.0%} of the time; docs/promotion.md)"
            )
        else:
            line += (
                f". If the observed difference ({hint['difference']:+.4f}) is real, about {hint['rows_needed']:,} "
                f"test rows (this split has {hint['test_rows']:,}) would show it above min_gain "
                f"{hint['min_gain']:.4f} ({hint['power']:.0%} of the time; docs/promotion.md)"
            )
    elif hint and hint["rule"] == "min_gain":
        line += ". The observed difference is not above min_gain: more test rows would not show the gain"
    return line


def _slice_check(slices: dict, champion: dict, p: EvaluateParams) -> dict:
    """Every slice with >= min_slice_rows rows: macro-F1 difference to the champion there, and the worst one."""
    judged, small = [], 0
    for dim, spec in slices.items():
        for s in spec["slices"]:
            if s.get("champion_macro_f1") is None:
                continue
            if s["rows"] < p.min_slice_rows:
                small += 1
                continue
            judged.append(
                {
                    "dimension": dim,
                    "slice": s["slice"],
                    "rows": s["rows"],
                    "macro_f1": s["macro_f1"],
                    "champion_macro_f1": s["champion_macro_f1"],
                    "difference": s["macro_f1"] - s["champion_macro_f1"],
                }
            )
    threshold = None if p.max_slice_regression is None else -p.max_slice_regression
    for s in judged:
        s["passed"] = threshold is None or s["difference"] >= threshold - _EPS
    worst = min(judged, key=lambda s: s["difference"], default=None)
    return {
        "rule": "max_slice_regression",
        "value": worst["difference"] if worst else None,
        "threshold": threshold,
        "enforced": threshold is not None,
        "worst": worst,
        "champion_version": champion["version"],
        "min_slice_rows": p.min_slice_rows,
        "slices_judged": len(judged),
        "slices_too_small": small,
        "failed_slices": [s for s in judged if not s["passed"]],
        "slices": judged,
        "passed": all(s["passed"] for s in judged),
    }


def _baseline_check(metrics: dict, baseline: dict, threshold: float | None) -> dict:
    if "error" in baseline:  # no figures to judge: an enforced rule fails, with the reason
        return {
            "rule": "min_gain_over_baseline",
            "value": None,
            "threshold": threshold,
            "enforced": threshold is not None,
            "error": baseline["error"],
            "passed": threshold is None,
        }
    gain = metrics["macro_f1"] - baseline["macro_f1"]
    return {
        "rule": "min_gain_over_baseline",
        "value": gain,
        "threshold": threshold,
        "enforced": threshold is not None,
        "macro_f1": metrics["macro_f1"],
        "baseline_macro_f1": baseline["macro_f1"],
        "baseline_accuracy": baseline["accuracy"],
        "passed": threshold is None or gain >= threshold - _EPS,
    }


def _budget(rule: str, value: float | None, limit: float | None) -> dict:
    """A ceiling: value <= limit (a missing figure fails an enforced rule)."""
    return {
        "rule": rule,
        "value": value,
        "threshold": limit,
        "enforced": limit is not None,
        "passed": limit is None or (value is not None and value <= limit),
    }


def describe(check: dict) -> str:
    """One line a person reads: the rule, the figure and the bound it missed."""
    rule = check["rule"]
    if rule == "same_labels_as_champion":
        return (
            f"{rule}: this model's labels {check['value']} differ from champion v{check['champion_version']}'s "
            f"{check['threshold']}, so the two cannot be compared; if the change is intended, set "
            "evaluate.allow_label_change: true (or promote it by hand with `bigmodel promote VERSION --reason ...`)"
        )
    if rule in ("min_gain_vs_champion", "max_regression_vs_champion"):
        lo, hi = check["interval"]
        return (
            f"{rule}: macro-F1 difference to champion v{check['champion_version']} is {check['difference']:+.4f} "
            f"(interval {lo:+.4f} to {hi:+.4f}); its lower bound must be >= {check['threshold']:+.4f}"
        )
    if rule == "mcnemar_vs_champion":
        return (
            f"{rule}: the challenger is wrong on {check['old_only']} rows the champion gets right and right on "
            f"{check['new_only']} it gets wrong (p = {check['value']:.4g} < {check['threshold']:.4g})"
        )
    if rule == "max_slice_regression":
        w, bad = check["worst"], check["failed_slices"]
        return (
            f"{rule}: macro-F1 on slice {w['dimension']}={w['slice']} ({w['rows']} rows) is {w['macro_f1']:.4f} "
            f"against champion v{check['champion_version']}'s {w['champion_macro_f1']:.4f} "
            f"({w['difference']:+.4f}); it must be >= {check['threshold']:+.4f} on every slice of at least "
            f"{check['min_slice_rows']} rows ({len(bad)} of {check['slices_judged']} fail)"
        )
    if rule == "min_gain_over_baseline":
        if check["value"] is None:
            return f"{rule}: the baseline could not be scored ({check['error']})"
        return (
            f"{rule}: macro-F1 {check['macro_f1']:.4f} is {check['value']:+.4f} over the TF-IDF + LR baseline's "
            f"{check['baseline_macro_f1']:.4f}; it must be >= {check['threshold']:+.4f}"
        )
    if rule == "max_latency_p95_ms":
        return (
            f"{rule}: p95 latency of a one-text prediction is {_fmt(check['value'], '.2f')} ms, "
            f"above the budget of {check['threshold']:g} ms"
        )
    if rule == "max_model_mb":
        return (
            f"{rule}: the model bundle is {_fmt(check['value'], '.2f')} MB, "
            f"above the budget of {check['threshold']:g} MB"
        )
    return f"{rule}: {check['value']:.4f} < {check['threshold']:.4f}"


def _fmt(value: float | None, spec: str) -> str:
    return "unknown" if value is None else format(value, spec)

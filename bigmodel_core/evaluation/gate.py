"""The model gate: absolute floors, then the challenger against the champion on the same test rows.

Every rule gives one entry in `checks` with its figures and verdict; the decision file written by
evaluate is this dict. The comparison with the champion is decided on the paired bootstrap interval
of the macro-F1 difference (its lower bound), with McNemar's test as a second, independent check that
the challenger does not make significantly more errors on the rows where the two disagree.
"""

from __future__ import annotations

import numpy as np

from bigmodel_core.config import EvaluateParams
from bigmodel_core.evaluation.stats import mcnemar, paired_bootstrap


def decide(metrics: dict, champion: dict | None, p: EvaluateParams, *, y: np.ndarray | None = None,
           pred: np.ndarray | None = None, champion_pred: np.ndarray | None = None) -> dict:
    """Return {'promote', 'checks', 'reasons', 'champion', 'comparison'} for a challenger's test metrics.

    champion: None, or {'version', 'accuracy', 'macro_f1'} measured on the same test rows; y, pred and
    champion_pred (class indices in one label order) give the paired tests.
    """
    checks = [
        {"rule": "min_accuracy", "value": metrics["accuracy"], "threshold": p.min_accuracy,
         "passed": metrics["accuracy"] >= p.min_accuracy},
        {"rule": "min_macro_f1", "value": metrics["macro_f1"], "threshold": p.min_macro_f1,
         "passed": metrics["macro_f1"] >= p.min_macro_f1},
    ]
    comparison = None
    if champion is not None:
        if y is None or pred is None or champion_pred is None:
            raise ValueError("a champion comparison needs the paired predictions (y, pred, champion_pred)")
        k = len(metrics["per_class"])
        interval = paired_bootstrap(y, pred, champion_pred, k, samples=p.bootstrap_samples, confidence=p.confidence)
        test = mcnemar(y, pred, champion_pred)
        comparison = {"champion_version": champion["version"], "champion_macro_f1": champion["macro_f1"],
                      "bootstrap": interval, "mcnemar": test}
        if p.min_gain is not None:
            rule, threshold = "min_gain_vs_champion", p.min_gain
        else:
            rule, threshold = "max_regression_vs_champion", -p.max_regression
        checks.append({"rule": rule, "value": interval["low"], "threshold": threshold,
                       "difference": interval["difference"], "interval": [interval["low"], interval["high"]],
                       "champion_version": champion["version"], "passed": interval["low"] >= threshold})
        worse = test["old_only"] > test["new_only"] and test["p_value"] < 1 - p.confidence
        checks.append({"rule": "mcnemar_vs_champion", "value": test["p_value"], "threshold": 1 - p.confidence,
                       "new_only": test["new_only"], "old_only": test["old_only"], "passed": not worse})
    failed = [c for c in checks if not c["passed"]]
    return {"promote": not failed, "checks": checks, "reasons": [describe(c) for c in failed],
            "champion": champion, "comparison": comparison}


def describe(check: dict) -> str:
    """One line a person reads: the rule, the figure and the bound it missed."""
    rule = check["rule"]
    if rule in ("min_gain_vs_champion", "max_regression_vs_champion"):
        lo, hi = check["interval"]
        return (f"{rule}: macro-F1 difference to champion v{check['champion_version']} is {check['difference']:+.4f} "
                f"(interval {lo:+.4f} to {hi:+.4f}); its lower bound must be >= {check['threshold']:+.4f}")
    if rule == "mcnemar_vs_champion":
        return (f"{rule}: the challenger is wrong on {check['old_only']} rows the champion gets right and right on "
                f"{check['new_only']} it gets wrong (p = {check['value']:.4g} < {check['threshold']:.4g})")
    return f"{rule}: {check['value']:.4f} < {check['threshold']:.4f}"

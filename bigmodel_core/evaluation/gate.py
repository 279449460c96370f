"""The champion/challenger gate: absolute floors plus 'no worse than the champion'."""

from __future__ import annotations

from bigmodel_core.config import EvaluateParams


def decide(metrics: dict, champion: dict | None, p: EvaluateParams) -> dict:
    """Return {'promote': bool, 'checks': [...], 'reasons': [...]} for a candidate's test metrics.

    champion: None, or {'version', 'accuracy', 'macro_f1'} measured on the same test rows.
    """
    checks = [
        {"rule": "min_accuracy", "value": metrics["accuracy"], "threshold": p.min_accuracy, "passed": metrics["accuracy"] >= p.min_accuracy},
        {"rule": "min_macro_f1", "value": metrics["macro_f1"], "threshold": p.min_macro_f1, "passed": metrics["macro_f1"] >= p.min_macro_f1},
    ]
    if champion is not None:
        floor = champion["macro_f1"] - p.max_regression
        checks.append({
            "rule": "vs_champion",
            "value": metrics["macro_f1"],
            "threshold": floor,
            "champion_version": champion["version"],
            "champion_macro_f1": champion["macro_f1"],
            "passed": metrics["macro_f1"] >= floor,
        })
    failed = [c for c in checks if not c["passed"]]
    reasons = [f"{c['rule']}: {c['value']:.4f} < {c['threshold']:.4f}" for c in failed]
    return {"promote": not failed, "checks": checks, "reasons": reasons, "champion": champion}

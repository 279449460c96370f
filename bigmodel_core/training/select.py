"""model.kind auto: which candidate becomes the model. Pure functions; the train stage does the training.

Every candidate is trained on the same train split and scored on the validation split; the test split
plays no part (the train stage never reads it before the choice). The best validation macro-F1 wins,
unless a cheaper candidate (CANDIDATE_KINDS order: linear, bag, transformer, pretrained, then the one
listed first) is within one standard error of it (model.selection one_se, the default): a difference
the validation rows cannot resolve is a tie, and a tie goes to the cheaper model. The standard error
is that of the paired difference, from a seeded bootstrap over the validation rows (the central 68.3%
interval of evaluation/stats.paired_bootstrap, about the difference +- 1 SE): Breiman's and
Hastie et al.'s "one standard error rule". The same rule keeps a tuning trial's settings only when
they beat the settings as written (trial 0) by more than one standard error.
"""

from __future__ import annotations

import numpy as np

from bigmodel_core.config import CANDIDATE_KINDS, ModelParams

RULE = (
    "highest validation macro-F1, unless a cheaper kind (linear < bag < transformer < pretrained) is within one "
    "standard error of it (paired bootstrap over the validation rows): then the cheaper"
)
RULE_SHORT = "best val macro-F1; within 1 SE: the cheaper kind"  # metrics/train.json's `selection` (a dvc column)
RULE_BEST = "highest validation macro-F1; an exact tie goes to the cheaper kind, then to the candidate listed first"
ONE_SE = 0.6827  # the central share of a normal distribution within one standard deviation of its mean
_DIGITS = 9  # macro-F1 values that agree to this many digits are a tie (float rounding, not a difference)


def uses_augmented(model_p: ModelParams) -> bool:
    """Whether a model trains on the augment stage's variants (model.augmented_rows; null: its kind's default,
    every kind but linear)."""
    if model_p.augmented_rows is not None:
        return model_p.augmented_rows
    from bigmodel_core.models.registry import kind_of

    return kind_of(model_p.kind).augmented_by_default


def within_one_se(y: np.ndarray, better: np.ndarray, other: np.ndarray, num_classes: int) -> dict:
    """Is macro-F1(better) - macro-F1(other) on these rows within one standard error of 0? The paired bootstrap's
    central 68.3% interval (seeded: the same rows give the same answer) and the verdict."""
    from bigmodel_core.evaluation.stats import paired_bootstrap

    interval = paired_bootstrap(y, better, other, num_classes, samples=1000, confidence=ONE_SE, seed=0)
    return {**interval, "within": interval["low"] <= 0.0}


def choose(
    results: list[dict], y: np.ndarray | None = None, num_classes: int | None = None, selection: str = "one_se"
) -> tuple[int, str]:
    """(index of the winner, why) among results [{'name', 'kind', 'val_macro_f1', 'val_pred'}] in candidate order.
    y, num_classes and each 'val_pred' (class indices of the validation rows) are needed by one_se."""
    if not results:
        raise ValueError("no candidate to choose from")
    cost = {k: i for i, k in enumerate(CANDIDATE_KINDS)}
    f1 = [round(float(r["val_macro_f1"]), _DIGITS) for r in results]
    best = min(range(len(results)), key=lambda i: (-f1[i], cost[results[i]["kind"]], i))
    why = f"{results[best]['name']} has the highest validation macro-F1, {f1[best]:.4f}"
    cheaper = [
        i
        for i in sorted(range(len(results)), key=lambda i: (cost[results[i]["kind"]], i))
        if cost[results[i]["kind"]] < cost[results[best]["kind"]]
    ]
    if selection == "best" or y is None or num_classes is None or not cheaper:
        return best, why
    for i in cheaper:
        test = within_one_se(y, np.asarray(results[best]["val_pred"]), np.asarray(results[i]["val_pred"]), num_classes)
        if test["within"]:
            return i, (
                f"{results[best]['name']}'s validation macro-F1 {f1[best]:.4f} is within one standard error of "
                f"the cheaper {results[i]['name']}'s {f1[i]:.4f} (difference {test['difference']:+.4f}, "
                f"68% interval {test['low']:+.4f} to {test['high']:+.4f}): {results[i]['name']}"
            )
    return best, why + ", more than one standard error above every cheaper candidate's"


def choose_trial(trials: list[dict], y: np.ndarray, num_classes: int, selection: str = "one_se") -> int:
    """Index of the trial whose settings a tuned candidate keeps: the best validation macro-F1 (the earlier on a tie),
    or the settings as written (trials[0]) when the best is within one standard error of them (one_se)."""
    f1 = [round(float(t["val_macro_f1"]), _DIGITS) for t in trials]
    best = min(range(len(trials)), key=lambda i: (-f1[i], i))
    if selection == "best" or best == 0:
        return best
    test = within_one_se(y, np.asarray(trials[best]["val_pred"]), np.asarray(trials[0]["val_pred"]), num_classes)
    return 0 if test["within"] else best


def val_scores(y: np.ndarray, probs: np.ndarray, num_classes: int) -> dict:
    """Loss (mean cross-entropy), accuracy and macro-F1 of class probabilities on the validation rows: the
    figures the training loop reports for its epochs, for models trained outside it (linear)."""
    from bigmodel_core.evaluation.metrics import classification_metrics

    m = classification_metrics(y, probs.argmax(1), num_classes=num_classes)
    picked = probs[np.arange(len(y)), y] if len(y) else np.zeros(0)
    loss = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()) if len(y) else 0.0
    return {"loss": loss, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

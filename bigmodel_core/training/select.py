"""model.kind auto: which candidate becomes the model. Pure functions; the train stage does the training.

Every candidate is trained on the same train split and scored on the validation split; the test split
plays no part (the train stage never reads it before the choice). The best validation macro-F1 wins;
a tie goes to the cheaper kind (CANDIDATE_KINDS order: linear, bag, transformer, pretrained), then to
the candidate listed first.
"""

from __future__ import annotations

import numpy as np

from bigmodel_core.config import CANDIDATE_KINDS, ModelParams

RULE = ("highest validation macro-F1; a tie goes to the cheaper kind (linear < bag < transformer < pretrained), "
        "then to the candidate listed first")
RULE_SHORT = "best val macro-F1, ties to the cheaper kind"  # metrics/train.json's `selection` (a dvc metrics column)
_DIGITS = 9  # macro-F1 values that agree to this many digits are a tie (float rounding, not a difference)


def uses_augmented(model_p: ModelParams) -> bool:
    """Whether a model trains on the augment stage's variants (model.augmented_rows; null: all kinds but linear)."""
    return model_p.augmented_rows if model_p.augmented_rows is not None else model_p.kind != "linear"


def choose(results: list[dict]) -> int:
    """Index of the winner among results [{'kind', 'val_macro_f1'}, ...] in candidate order."""
    if not results:
        raise ValueError("no candidate to choose from")
    cost = {k: i for i, k in enumerate(CANDIDATE_KINDS)}
    return min(range(len(results)),
               key=lambda i: (-round(float(results[i]["val_macro_f1"]), _DIGITS), cost[results[i]["kind"]], i))


def val_scores(y: np.ndarray, probs: np.ndarray, num_classes: int) -> dict:
    """Loss (mean cross-entropy), accuracy and macro-F1 of class probabilities on the validation rows: the
    figures the training loop reports for its epochs, for models trained outside it (linear)."""
    from bigmodel_core.evaluation.metrics import classification_metrics

    m = classification_metrics(y, probs.argmax(1), num_classes=num_classes)
    picked = probs[np.arange(len(y)), y] if len(y) else np.zeros(0)
    loss = float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()) if len(y) else 0.0
    return {"loss": loss, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

"""The built-in baseline: model.kind linear with its default settings (TF-IDF word 1-2 grams, sublinear tf,
min_df 2, + logistic regression with C 10), from bigmodel_core/models/linear.py.

Trained on the train split's original rows (augmented variants left out, validation rows unused) and
scored on the test rows the model is scored on; benchmarks/baseline.py fits the same. A model that
cannot beat it is not worth its training and serving cost (the gate rule min_gain_over_baseline).
"""

from __future__ import annotations

import time

from bigmodel_core.models.linear import LinearText, describe, reference_settings

DESCRIPTION = describe(reference_settings())


def fit_predict(train_texts: list[str], train_labels: list[str], test_texts: list[str]) -> tuple[list[str], dict]:
    """Fit on the train rows, predict the test rows; returns the predicted labels and what was done."""
    settings = reference_settings()
    t0 = time.perf_counter()
    model = LinearText.fit(train_texts, train_labels, settings)
    seconds = time.perf_counter() - t0
    pred = model.predict(test_texts)
    return pred, {
        "model": describe({**settings, "min_df": model.min_df_used}),
        "train_rows": len(train_texts),
        "features": model.features,
        "seconds": round(seconds, 3),
    }

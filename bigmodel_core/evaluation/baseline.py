"""The built-in baseline: TF-IDF (word 1-2 grams) + logistic regression, from scikit-learn.

The same recipe as benchmarks/baseline.py: trained on the train split's original rows (augmented
variants left out, validation rows unused) and scored on the test rows the model is scored on. A model
that cannot beat it by much is not worth its training and serving cost.
"""

from __future__ import annotations

import time

DESCRIPTION = "TF-IDF (word 1-2 grams, sublinear tf, min_df 2) + logistic regression"


def fit_predict(train_texts: list[str], train_labels: list[str], test_texts: list[str]) -> tuple[list[str], dict]:
    """Fit on the train rows, predict the test rows; returns the predicted labels and what was done."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    classes = sorted(set(train_labels))
    if len(classes) < 2:
        raise ValueError(f"the train split has {len(classes)} class(es) among its original rows; the baseline needs 2")
    # min_df=2 drops one-off n-grams; a train split too small to have any falls back to all of them
    for min_df in (2, 1):
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df),
                              LogisticRegression(max_iter=1000))
        try:
            t0 = time.perf_counter()
            model.fit(train_texts, train_labels)
            break
        except ValueError as e:
            if min_df == 1 or "empty vocabulary" not in str(e) and "no terms remain" not in str(e):
                raise
    pred = [str(p) for p in model.predict(test_texts)]
    return pred, {"model": DESCRIPTION.replace("min_df 2", f"min_df {min_df}"), "train_rows": len(train_texts),
                  "features": len(model[0].vocabulary_), "seconds": round(time.perf_counter() - t0, 3)}

"""model.kind linear: TF-IDF n-grams + logistic regression, from scikit-learn.

Word n-grams 1..`ngrams` (scikit-learn's word tokenizer: words of two or more letters) and, with
`char_ngrams`, a second TF-IDF block of character n-grams inside word boundaries; each block is
L2-normalised, the blocks are put side by side and a multinomial logistic regression (lbfgs, the same
on every run on a CPU) reads them. The evaluate stage's baseline is this model with its default
settings (`reference_settings()`): one definition of "TF-IDF + LR".

Saved in the model bundle as plain data, no pickle: `linear.json` (settings, classes, each block's
terms in column order) and `.npy` arrays (idf weights, coefficients) read with allow_pickle=False.
skops would be safe too, but its zip files carry the time they were written, so the same model would
not be the same bytes twice (DVC and `bigmodel verify-repro` compare bundles byte for byte).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

FILE = "linear.json"
FORMAT = "bigmodel-linear/1"
MAX_ITER = 1000
SETTINGS = ("ngrams", "char_ngrams", "min_df", "sublinear_tf", "C", "lowercase")


def settings_of(model_p, lowercase: bool = True) -> dict:
    """The settings the linear model reads from ModelParams (and tokenizer.lowercase)."""
    return {
        "ngrams": model_p.ngrams,
        "char_ngrams": list(model_p.char_ngrams) if model_p.char_ngrams else None,
        "min_df": model_p.min_df,
        "sublinear_tf": model_p.sublinear_tf,
        "C": model_p.C,
        "lowercase": lowercase,
    }


def reference_settings() -> dict:
    """The linear kind's defaults: word 1-2 grams, sublinear tf, min_df 2, C 10 (the evaluate stage's baseline)."""
    from bigmodel_core.config import ModelParams

    return settings_of(ModelParams())


def describe(settings: dict) -> str:
    chars = (
        f" + character {settings['char_ngrams'][0]}-{settings['char_ngrams'][1]} grams"
        if settings.get("char_ngrams")
        else ""
    )
    tf = "sublinear tf, " if settings["sublinear_tf"] else ""
    return (
        f"TF-IDF (word 1-{settings['ngrams']} grams{chars}, {tf}min_df {settings['min_df']}) + logistic "
        f"regression (C {settings['C']:g})"
    )


def _vectorizers(s: dict, min_df: int) -> list:
    from sklearn.feature_extraction.text import TfidfVectorizer

    common = dict(sublinear_tf=s["sublinear_tf"], min_df=min_df, lowercase=s["lowercase"], dtype=np.float64)
    out = [TfidfVectorizer(ngram_range=(1, s["ngrams"]), **common)]
    if s.get("char_ngrams"):
        out.append(TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(s["char_ngrams"]), **common))
    return out


def _features(vectorizers: list, texts: list[str]):
    import scipy.sparse as sp

    blocks = [v.transform(texts) for v in vectorizers]
    return (blocks[0] if len(blocks) == 1 else sp.hstack(blocks)).tocsr()


class LinearText:
    """Fitted vectorizers and logistic regression; predict_proba columns follow `classes`."""

    kind = "linear"

    def __init__(self, settings: dict, vectorizers: list, classifier, min_df_used: int) -> None:
        self.settings, self.vectorizers, self.classifier, self.min_df_used = (
            settings,
            vectorizers,
            classifier,
            min_df_used,
        )

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.classifier.classes_]

    @property
    def features(self) -> int:
        return int(self.classifier.coef_.shape[1])

    @property
    def parameters(self) -> int:
        return int(self.classifier.coef_.size + self.classifier.intercept_.size)

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], settings: dict) -> LinearText:
        """Fit on the training rows. min_df falls back to 1 when it leaves no n-gram (a handful of short texts)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ValueError(f"the training rows hold {len(classes)} class(es); logistic regression needs 2")
        import scipy.sparse as sp

        for min_df in dict.fromkeys((settings["min_df"], 1)):
            vectorizers = _vectorizers(settings, min_df)
            try:
                blocks = [v.fit_transform(texts) for v in vectorizers]
                break
            except ValueError as e:
                if min_df == 1 or ("empty vocabulary" not in str(e) and "no terms remain" not in str(e)):
                    raise
        x = (blocks[0] if len(blocks) == 1 else sp.hstack(blocks)).tocsr()
        clf = LogisticRegression(C=settings["C"], max_iter=MAX_ITER)
        with warnings.catch_warnings():  # lbfgs at its iteration cap is still a usable model; say so once
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x, np.asarray(labels, dtype=object))
        if clf.n_iter_.max() >= MAX_ITER:
            print(f"linear: logistic regression stopped at its {MAX_ITER}-iteration cap before converging", flush=True)
        return cls(dict(settings), vectorizers, clf, min_df)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, len(self.classes)))
        return self.classifier.predict_proba(_features(self.vectorizers, list(texts)))

    def predict(self, texts: list[str]) -> list[str]:
        classes = self.classes
        return [classes[i] for i in self.predict_proba(texts).argmax(1)]

    # ------------------------------------------------------------------ the bundle's files
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        blocks = []
        for i, v in enumerate(self.vectorizers):
            terms = [None] * len(v.vocabulary_)
            for term, col in v.vocabulary_.items():
                terms[col] = term
            np.save(directory / f"linear_idf_{i}.npy", np.asarray(v.idf_, dtype=np.float64), allow_pickle=False)
            blocks.append({"analyzer": v.analyzer, "ngram_range": list(v.ngram_range), "terms": terms})
        np.save(directory / "linear_coef.npy", self.classifier.coef_, allow_pickle=False)
        np.save(directory / "linear_intercept.npy", self.classifier.intercept_, allow_pickle=False)
        doc = {
            "format": FORMAT,
            "settings": self.settings,
            "min_df_used": self.min_df_used,
            "classes": self.classes,
            "max_iter": MAX_ITER,
            "blocks": blocks,
        }
        (directory / FILE).write_text(
            json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, directory: Path) -> LinearText:
        """Rebuild the fitted scikit-learn objects from the saved terms, idf weights and coefficients."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        directory = Path(directory)
        doc = json.loads((directory / FILE).read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT:
            raise ValueError(f"{directory / FILE}: unknown format {doc.get('format')!r} (this bigmodel reads {FORMAT})")
        s = doc["settings"]
        vectorizers = []
        for i, b in enumerate(doc["blocks"]):
            v = TfidfVectorizer(
                analyzer=b["analyzer"],
                ngram_range=tuple(b["ngram_range"]),
                vocabulary=b["terms"],
                sublinear_tf=s["sublinear_tf"],
                lowercase=s["lowercase"],
                dtype=np.float64,
            )
            v.idf_ = np.load(directory / f"linear_idf_{i}.npy", allow_pickle=False)
            vectorizers.append(v)
        clf = LogisticRegression(C=s["C"], max_iter=doc["max_iter"])
        clf.classes_ = np.asarray(doc["classes"], dtype=object)
        clf.coef_ = np.load(directory / "linear_coef.npy", allow_pickle=False)
        clf.intercept_ = np.load(directory / "linear_intercept.npy", allow_pickle=False)
        clf.n_features_in_ = clf.coef_.shape[1]
        return cls(s, vectorizers, clf, doc["min_df_used"])

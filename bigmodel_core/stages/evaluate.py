"""evaluate: score the new model on the test split, compare with the champion, decide promotion."""

from __future__ import annotations

import numpy as np

from bigmodel_core.config import Params
from bigmodel_core.data import schemas
from bigmodel_core.evaluation.gate import decide
from bigmodel_core.evaluation.metrics import classification_metrics
from bigmodel_core.evaluation.plots import confusion_png, history_png
from bigmodel_core.io import atomic_dir, atomic_path, read_json, read_table, write_json
from bigmodel_core.paths import Paths


def score(predictor, texts: list[str], y_true: list[str], labels: list[str], batch_size: int) -> tuple[dict, list[str]]:
    index = {lab: i for i, lab in enumerate(labels)}
    probs = predictor.predict_proba(texts, batch_size, clean=False)  # the split holds cleaned text already
    pred_idx = probs.argmax(1)
    true_idx = np.array([index.get(l, -1) for l in y_true])
    if (true_idx < 0).any():
        unknown = sorted({l for l in y_true if l not in index})
        raise ValueError(f"test labels {unknown} are not known to the model (labels {labels})")
    m = classification_metrics(true_idx, pred_idx, num_classes=len(labels), labels=labels)
    return m, [labels[i] for i in pred_idx]


def run(params: Params, paths: Paths) -> dict:
    from bigmodel_core.models.bundle import Predictor
    from bigmodel_core.tracking.mlflow_store import champion_bundle

    test = read_table(paths.split / "test.parquet", schemas.SPLIT)
    texts, y_true = test["text"].tolist(), test["label"].tolist()
    predictor = Predictor(paths.model)
    metrics, preds = score(predictor, texts, y_true, predictor.labels, params.evaluate.batch_size)

    champion, champion_pred = None, None
    found = champion_bundle(params, paths.root)
    if found is not None:
        version, bundle = found
        champ = Predictor(bundle)
        if sorted(champ.labels) == sorted(predictor.labels):
            cm, champ_preds = score(champ, texts, y_true, champ.labels, params.evaluate.batch_size)
            champion = {"version": version, "accuracy": cm["accuracy"], "macro_f1": cm["macro_f1"]}
            champion_pred = _indices(champ_preds, predictor.labels)
        else:
            champion = None  # a different label set: no like-for-like comparison is possible
    decision = decide(metrics, champion, params.evaluate, y=_indices(y_true, predictor.labels),
                      pred=_indices(preds, predictor.labels), champion_pred=champion_pred)
    history = read_json(paths.train_metrics).get("history", [])

    with atomic_dir(paths.evaluation) as out:
        write_json(decision, out / "decision.json")
        confusion_png(metrics["confusion_matrix"], predictor.labels, out / "confusion_matrix.png")
        if history:
            history_png(history, out / "training_curves.png")
    eval_metrics = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n_test": metrics["n"],
                    "per_class": metrics["per_class"], "confusion_matrix": metrics["confusion_matrix"],
                    "labels": predictor.labels, "champion": champion, "promote": decision["promote"]}
    write_json(eval_metrics, paths.eval_metrics)
    with atomic_path(paths.confusion_plot) as tmp:
        rows = ["actual,predicted"] + [f"{_csv(a)},{_csv(p)}" for a, p in zip(y_true, preds)]
        tmp.write_text("\n".join(rows) + "\n")
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "champion": champion,
            "promote": decision["promote"], "reasons": decision["reasons"], "comparison": decision["comparison"]}


def _indices(values: list[str], labels: list[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([index[v] for v in values], dtype=np.int64)


def _csv(v: str) -> str:
    return '"' + v.replace('"', '""') + '"' if ("," in v or '"' in v) else v

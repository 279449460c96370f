"""evaluate: score the new model on the test split, compare it with the champion and a baseline, decide promotion.

Outputs (dvc.yaml lists them):
  metrics/eval.json      scalars only, for `dvc metrics show/diff`
  plots/*.csv            confusion, ROC and precision-recall (binary tasks; header only otherwise), calibration
  reports/evaluate/      decision.json (every gate rule), per_class.json, slices.json, baseline.json,
                         runtime.json, calibration.json and the PNGs deploy logs to MLflow
"""

from __future__ import annotations

import time

import numpy as np

from bigmodel_core import modalities
from bigmodel_core.config import Params
from bigmodel_core.evaluation import baseline as tfidf_baseline
from bigmodel_core.evaluation.gate import decide
from bigmodel_core.evaluation.metrics import calibration, classification_metrics, pr_curve, roc_curve, thin
from bigmodel_core.evaluation.plots import confusion_png, curve_png, history_png, reliability_png
from bigmodel_core.evaluation.runtime import directory_bytes, latency, sample_rows
from bigmodel_core.evaluation.slices import check_columns, slice_groups, slice_metrics
from bigmodel_core.io import atomic_dir, atomic_path, read_json, read_table, write_json
from bigmodel_core.paths import Paths
from bigmodel_core.stages.spec import Out, StageSpec, metric, plot

ECE_BINS = 15
MB = 1_000_000


def score(
    predictor, texts: list[str], y_true: list[str], labels: list[str], batch_size: int
) -> tuple[dict, list[str], np.ndarray]:
    """Metrics, predicted labels and class probabilities (columns in `labels` order) of the test rows."""
    index = {lab: i for i, lab in enumerate(labels)}
    probs = predictor.predict_proba(texts, batch_size, clean=False)  # the split holds cleaned text already
    pred_idx = probs.argmax(1)
    true_idx = np.array([index.get(lab, -1) for lab in y_true])
    if (true_idx < 0).any():
        unknown = sorted({lab for lab in y_true if lab not in index})
        raise ValueError(f"test labels {unknown} are not known to the model (labels {labels})")
    m = classification_metrics(true_idx, pred_idx, num_classes=len(labels), labels=labels)
    return m, [labels[i] for i in pred_idx], probs


SPEC = StageSpec(
    inputs=("model", "split", "train_metrics", "champion_ref"),
    params=("evaluate", "data.modality", "deploy.model_name", "deploy.champion_alias", "tracking.uri"),
    bookkeeping=("tracking.experiment", "tracking.artifact_root"),
    outs=(
        Out("evaluation"),
        metric("eval_metrics"),
        plot("confusion_plot", template="confusion", x="predicted", y="actual"),
        plot(
            "roc_plot",
            note="ROC and precision-recall of the positive class (the second label) on binary tasks; "
            "header only otherwise",
            x="fpr",
            y="tpr",
            title="ROC (test)",
            x_label="false positive rate",
            y_label="true positive rate",
        ),
        plot("pr_plot", x="recall", y="precision", title="Precision-recall (test)"),
        plot(
            "calibration_plot",
            template="scatter",
            x="confidence",
            y="accuracy",
            title="Reliability (test, 15 confidence bins)",
            x_label="mean confidence of the predicted class",
            y_label="accuracy",
        ),
    ),
)


def run(params: Params, paths: Paths) -> dict:
    from bigmodel_core.models.bundle import Predictor
    from bigmodel_core.tracking.store import champion_bundle

    p = params.evaluate
    modality = modalities.get(params.data.modality)
    test = read_table(paths.split / "test.parquet", modality.schemas.SPLIT)
    check_columns(test, p.slice_columns)  # a typo in params stops the stage before any work
    texts, y_true = modality.values(test), test["label"].tolist()
    predictor = Predictor(paths.model)
    labels = predictor.labels
    t0 = time.perf_counter()
    metrics, preds, probs = score(predictor, texts, y_true, labels, p.batch_size)
    scoring_seconds = time.perf_counter() - t0
    y, pred = _indices(y_true, labels), _indices(preds, labels)

    binary = _binary_curves(y, probs, labels) if len(labels) == 2 else None
    calib = calibration(probs.max(1), pred == y, ECE_BINS)
    runtime = _runtime(predictor, paths, texts, scoring_seconds, p.batch_size)

    champion, champion_pred, other_labels = None, None, None
    found = champion_bundle(params, paths.root)
    if found is not None:
        version, bundle = found
        champ = Predictor(bundle)
        if sorted(champ.labels) == sorted(labels):
            cm, champ_preds, _ = score(champ, texts, y_true, champ.labels, p.batch_size)
            champion = {"version": version, "accuracy": cm["accuracy"], "macro_f1": cm["macro_f1"]}
            champion_pred = _indices(champ_preds, labels)
        else:
            other_labels = {"version": version, "labels": list(champ.labels)}  # no like-for-like comparison
    slices = slice_metrics(slice_groups(test, p.slice_columns), y, pred, len(labels), champion_pred)
    base = _baseline(paths, modality, texts, y, labels) if p.baseline else None
    decision = decide(
        metrics,
        champion,
        p,
        y=y,
        pred=pred,
        champion_pred=champion_pred,
        slices=slices,
        champion_with_other_labels=other_labels,
        labels=labels,
        baseline=base,
        runtime={"latency_p95_ms": runtime["latency"]["p95_ms"], "model_mb": runtime["size"]["mb"]},
    )
    history = read_json(paths.train_metrics).get("history", [])

    with atomic_dir(paths.evaluation) as out:
        write_json(decision, out / "decision.json")
        write_json(
            {
                "labels": labels,
                "positive_class": labels[1] if binary else None,
                "per_class": metrics["per_class"],
                "confusion_matrix": metrics["confusion_matrix"],
                "confusion_matrix_axes": "rows: actual class, columns: predicted class, both in label order",
            },
            out / "per_class.json",
        )
        write_json(
            {
                "champion_version": champion["version"] if champion else None,
                "min_slice_rows": p.min_slice_rows,
                "dimensions": slices,
            },
            out / "slices.json",
        )
        write_json(base if base is not None else {"enabled": False}, out / "baseline.json")
        write_json(runtime, out / "runtime.json")
        write_json(
            {"ece": calib["ece"], "bins": calib["bins"], "confidence": "probability of the predicted class"},
            out / "calibration.json",
        )
        confusion_png(metrics["confusion_matrix"], labels, out / "confusion_matrix.png")
        reliability_png(calib["bins"], calib["ece"], out / "calibration.png")
        if binary and binary["roc"] is not None:
            roc = binary["roc"]
            curve_png(
                [r["fpr"] for r in roc["points"]],
                [r["tpr"] for r in roc["points"]],
                out / "roc_curve.png",
                title=f"ROC (test), positive class {binary['positive']!r}: AUC {roc['auc']:.4f}",
                xlabel="false positive rate",
                ylabel="true positive rate",
                diagonal=True,
            )
        if binary and binary["pr"] is not None:
            pr = binary["pr"]
            curve_png(
                [r["recall"] for r in pr["points"]],
                [r["precision"] for r in pr["points"]],
                out / "pr_curve.png",
                title=f"Precision-recall (test), positive class {binary['positive']!r}: AP {pr['ap']:.4f}",
                xlabel="recall",
                ylabel="precision",
            )
        if history:
            history_png(history, out / "training_curves.png")

    eval_metrics = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n_test": metrics["n"]}
    if binary:
        eval_metrics.update(
            positive_class=binary["positive"],
            roc_auc=binary["roc"]["auc"] if binary["roc"] else None,
            pr_auc=binary["pr"]["ap"] if binary["pr"] else None,
        )
    eval_metrics.update(
        {
            "ece": calib["ece"],
            "latency_p50_ms": runtime["latency"]["p50_ms"],
            "latency_p95_ms": runtime["latency"]["p95_ms"],
            "rows_per_second": runtime["throughput"]["rows_per_second"],
            "model_mb": runtime["size"]["mb"],
            "parameters": runtime["size"]["parameters"],
            "baseline_accuracy": base.get("accuracy") if base else None,
            "baseline_macro_f1": base.get("macro_f1") if base else None,
            "champion_version": champion["version"] if champion else None,
            "champion_accuracy": champion["accuracy"] if champion else None,
            "champion_macro_f1": champion["macro_f1"] if champion else None,
            "promote": decision["promote"],
            "verdict": decision["verdict"],
        }
    )
    write_json(eval_metrics, paths.eval_metrics)
    _write_plots(paths, y_true, preds, binary, calib)
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "champion": champion,
        "baseline": None if base is None else {k: base[k] for k in ("accuracy", "macro_f1", "error") if k in base},
        "latency_p95_ms": runtime["latency"]["p95_ms"],
        "model_mb": runtime["size"]["mb"],
        "promote": decision["promote"],
        "verdict": decision["verdict"],
        "reasons": decision["reasons"],
        "comparison": decision["comparison"],
    }


def _binary_curves(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    """ROC and precision-recall of the second label (the positive class) from its probability."""
    positive, score = labels[1], probs[:, 1]
    roc, pr = roc_curve(y == 1, score), pr_curve(y == 1, score)
    return {
        "positive": positive,
        "roc": None if roc is None else {"auc": roc["auc"], "points": thin(roc, ("fpr", "tpr", "threshold"))},
        "pr": None
        if pr is None
        else {"ap": pr["average_precision"], "points": thin(pr, ("recall", "precision", "threshold"))},
    }


def _runtime(predictor, paths: Paths, texts: list[str], scoring_seconds: float, batch_size: int) -> dict:
    """Latency of one raw text at a time (cleaned, tokenized, scored as served in-process), the batched
    scoring pass's throughput, and the bundle's size."""
    sample = [texts[i] for i in sample_rows(len(texts))]
    lat = latency(lambda t: predictor.predict_proba([t], 1), sample)
    lat = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in lat.items()}
    size = directory_bytes(paths.model)
    try:
        n_params = predictor.parameter_count()
    except AttributeError:
        n_params = None
    return {
        "latency": {
            **lat,
            "how": "one raw text per Predictor.predict_proba call (cleaning, tokenizing, the model "
            "on CPU) after untimed warm-up calls; test rows spread evenly over the split",
        },
        "throughput": {
            "rows": len(texts),
            "batch_size": batch_size,
            "seconds": round(scoring_seconds, 4),
            "rows_per_second": round(len(texts) / scoring_seconds, 1) if scoring_seconds > 0 else None,
        },
        "size": {
            "bytes": size,
            "mb": round(size / MB, 4),
            "parameters": n_params,
            "files": sorted(str(f.relative_to(paths.model)) for f in paths.model.rglob("*") if f.is_file()),
        },
    }


def _baseline(paths: Paths, modality: modalities.Modality, texts: list, y: np.ndarray, labels: list[str]) -> dict:
    """TF-IDF + LR trained on the train split's original rows, scored on the same test rows."""
    train = read_table(paths.split / "train.parquet", modality.schemas.SPLIT)
    train = train[~train["is_augmented"]]
    try:
        pred, info = tfidf_baseline.fit_predict(modality.values(train), train["label"].tolist(), texts)
    except ValueError as e:
        print(f"evaluate: baseline not scored: {e}", flush=True)
        return {"model": tfidf_baseline.DESCRIPTION, "error": str(e)}
    unknown = sorted(set(pred) - set(labels))
    if unknown:
        return {**info, "error": f"the baseline predicts labels {unknown} the model does not know"}
    m = classification_metrics(y, _indices(pred, labels), num_classes=len(labels), labels=labels)
    return {
        **info,
        "test_rows": m["n"],
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "per_class": m["per_class"],
    }


def _write_plots(paths: Paths, y_true: list[str], preds: list[str], binary: dict | None, calib: dict) -> None:
    _write_csv(paths.confusion_plot, ["actual", "predicted"], zip(y_true, preds, strict=True))
    roc = binary["roc"]["points"] if binary and binary["roc"] else []
    _write_csv(paths.roc_plot, ["fpr", "tpr", "threshold"], ((r["fpr"], r["tpr"], r["threshold"]) for r in roc))
    pr = binary["pr"]["points"] if binary and binary["pr"] else []
    _write_csv(
        paths.pr_plot, ["recall", "precision", "threshold"], ((r["recall"], r["precision"], r["threshold"]) for r in pr)
    )
    _write_csv(
        paths.calibration_plot,
        ["bin", "lower", "upper", "rows", "confidence", "accuracy"],
        (
            (b["bin"], b["lower"], b["upper"], b["rows"], b["confidence"], b["accuracy"])
            for b in calib["bins"]
            if b["rows"]
        ),
    )


def _write_csv(path, header: list[str], rows) -> None:
    with atomic_path(path) as tmp:
        lines = [",".join(header)] + [",".join(_csv(v) for v in row) for row in rows]
        tmp.write_text("\n".join(lines) + "\n")


def _indices(values: list[str], labels: list[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([index[v] for v in values], dtype=np.int64)


def _csv(v) -> str:
    if isinstance(v, float):
        return repr(v) if np.isfinite(v) else ("inf" if v > 0 else "-inf")
    v = str(v)
    return '"' + v.replace('"', '""') + '"' if ("," in v or '"' in v or "\n" in v) else v

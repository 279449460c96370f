"""Evaluation plots as PNG (for MLflow) and tables (for `dvc plots`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def confusion_png(cm: list[list[int]], labels: list[str], path: Path, title: str = "Confusion matrix (test)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(labels), 1.0 + 0.8 * len(labels)), dpi=110)
    ax.imshow(arr, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    hi = arr.max() if arr.size else 0
    for i in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            ax.text(j, i, str(arr[i, j]), ha="center", va="center", color="white" if arr[i, j] > hi / 2 else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def history_png(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=110)
    a.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    a.plot(epochs, [h["val_loss"] for h in history], marker="o", label="val")
    a.set_title("loss")
    a.set_xlabel("epoch")
    a.legend()
    b.plot(epochs, [h["val_accuracy"] for h in history], marker="o", label="val accuracy")
    b.plot(epochs, [h["val_macro_f1"] for h in history], marker="o", label="val macro-F1")
    b.set_title("validation")
    b.set_xlabel("epoch")
    b.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_png(
    x: list[float], y: list[float], path: Path, *, title: str, xlabel: str, ylabel: str, diagonal: bool = False
) -> None:
    """A ROC or precision-recall curve (a dashed chance line for ROC)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=110)
    if diagonal:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.plot(x, y, drawstyle="steps-post" if not diagonal else "default")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def reliability_png(bins: list[dict], ece: float, path: Path) -> None:
    """Accuracy per confidence bin (bars span the bins, dots sit at their mean confidence); diagonal = calibrated."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=110)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    full = [b for b in bins if b["rows"]]
    ax.bar(
        [b["lower"] for b in full],
        [b["accuracy"] for b in full],
        width=[b["upper"] - b["lower"] for b in full],
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="accuracy of the bin",
    )
    ax.plot(
        [b["confidence"] for b in full],
        [b["accuracy"] for b in full],
        "o",
        color="black",
        markersize=3,
        label="at the bin's mean confidence",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (test), ECE {ece:.4f}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

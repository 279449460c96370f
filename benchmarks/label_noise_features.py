"""The label_noise rule's n-gram counts (label_noise.ngram_counts, a compiled loop) against the baseline it
replaced, scikit-learn's HashingVectorizer with the same settings (2**20 columns, word 1-2-grams, counts),
on AG News's texts from ../shared/datasets (the test set and the train subset). Timed alternating, CPU
seconds, medians; both matrices' non-zero counts are printed (they differ only by hash collisions).

    .venv/bin/python benchmarks/label_noise_features.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ag_news_texts(datasets: Path) -> list[str]:
    import pandas as pd

    test = pd.read_csv(datasets / "ag_news" / "test.csv", header=None, names=["label", "title", "text"])
    train = pd.read_csv(datasets / "ag_news" / "hf_format_train_subset" / "train.csv", header=None,
                        names=["text", "label"])
    return (test["title"] + " " + test["text"]).tolist() + train["text"].tolist()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared/datasets")
    args = ap.parse_args()
    if not (args.datasets / "ag_news" / "test.csv").is_file():
        print(f"skipped: {args.datasets} has no ag_news/test.csv")
        return 0
    from sklearn.feature_extraction.text import HashingVectorizer

    from bigmodel_core.data.label_noise import FEATURE_BITS, ngram_counts

    texts = ag_news_texts(args.datasets)
    baseline = HashingVectorizer(n_features=2**FEATURE_BITS, ngram_range=(1, 2), alternate_sign=False, norm=None)
    sides = {"HashingVectorizer (baseline)": baseline.transform, "ngram_counts (bigmodel)": ngram_counts}
    for run in sides.values():  # untimed: imports, and the compiled loop's first call
        run(texts[:100])
    times: dict[str, list[float]] = {name: [] for name in sides}
    nnz = {}
    for _ in range(args.repeats):
        for name, run in sides.items():
            start = time.process_time()
            nnz[name] = run(texts).nnz
            times[name].append(time.process_time() - start)
    print(f"{len(texts):,} AG News texts, {args.repeats} alternating repeats, median (min-max) CPU seconds:")
    for name, ts in times.items():
        print(f"  {name:30s} {statistics.median(ts):.3f} ({min(ts):.3f}-{max(ts):.3f})  non-zeros {nnz[name]:,}")
    base, ours = (statistics.median(ts) for ts in times.values())
    print(f"speed-up: {base / ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

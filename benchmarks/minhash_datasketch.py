"""validate's MinHash signatures over a column of real texts: the compiled scan (minhash.Scanner, what validate uses;
it also counts the words, keys the texts and collects the vocabulary) against datasketch's MinHash (128
permutations, the same word 3-shingles of the lower-cased text, `update_batch`), which is what it would be without
the compiled code. Prints the median CPU seconds of --repeat alternating runs and the ratio.

    .venv/bin/python benchmarks/minhash_datasketch.py --rows 20000

Texts: IMDb, AG News and SMS Spam from ../shared/datasets (via the examples' params), cycled to --rows.
"""

from __future__ import annotations

import argparse

import pyarrow.compute as pc
from clean_layout import real_texts
from timing import cpu_medians


def with_datasketch(texts: list[str], k: int) -> None:
    from datasketch import LeanMinHash, MinHash

    for text in texts:
        words = text.split()
        m = MinHash(num_perm=128)
        m.update_batch([" ".join(words[i : i + k]).encode() for i in range(max(1, len(words) - k + 1))])
        LeanMinHash(m)


def with_scan(arr, k: int) -> None:
    from bigmodel_core.data.minhash import Scanner

    scanner = Scanner(k, vocab=True)
    scanner.scan(arr, low_bits=True)
    scanner.vocabulary()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    arr = real_texts(args.rows)
    lowered = pc.utf8_lower(arr).to_pylist()
    with_scan(arr.slice(0, 10), 3)  # compiles (cached on disk) before timing
    print(f"{len(arr)} texts, {pc.sum(pc.binary_length(arr)).as_py() / 1e6:.0f} MB")
    best = cpu_medians(
        {
            "compiled (kernels.scan)": lambda: with_scan(arr, 3),
            "datasketch": lambda: with_datasketch(lowered, 3),
        },
        args.repeat,
    )
    a, b = best.values()
    print(f"datasketch / compiled: {b / a:.0f}x")


if __name__ == "__main__":
    main()

"""Cleaning's layout steps (tags, whitespace, ASCII case, length) over a column of real texts: what cleaning uses
(cleaning._layout_array: the compiled pass kernels.layout.layout for tags and whitespace, pyarrow for the rest)
against the same steps as pyarrow compute calls (RE2), which is what it would be without the compiled code. Both
must give the same texts; prints CPU seconds (best of --repeat) and the ratio.

    .venv/bin/python benchmarks/clean_layout.py --rows 200000

Texts: IMDb, AG News and SMS Spam from ../shared/datasets (via the examples' params), cycled to --rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parents[1]


def real_texts(rows: int) -> pa.Array:
    import pandas as pd

    from bigmodel_core.config import load_params
    from bigmodel_core.data.formats import read_source

    texts: list[str] = []
    for name in ("imdb", "ag_news", "sms_spam"):
        params = load_params(REPO / "examples" / f"{name}-transformer.yaml")
        df = pd.concat([read_source(s, REPO) for s in params.data.sources], ignore_index=True)
        texts += df["text"].dropna().astype(str).tolist()
    return pa.array([texts[i % len(texts)] for i in range(rows)], type=pa.large_string())


def with_pyarrow(arr: pa.Array, p) -> pa.Array:
    """The layout steps with pyarrow compute (RE2): tags, whitespace runs (but a lone space), trim, ASCII lower, cut."""
    from bigmodel_core.data.charset import WS_RUN_RE2

    t = pc.replace_substring_regex(arr, r"<[^<>]{0,200}>", " ") if p.strip_html else arr
    if p.normalize_whitespace:
        t = pc.utf8_trim(pc.replace_substring_regex(t, WS_RUN_RE2, " "), " ")
    if p.lowercase:
        t = pc.ascii_lower(t)
    return pc.utf8_slice_codeunits(t, 0, p.max_chars)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from bigmodel_core.config import CleanParams
    from bigmodel_core.data.cleaning import _layout_array

    arr = real_texts(args.rows)
    p = CleanParams()
    compiled = _layout_array(arr, p, p.lowercase, p.max_chars)  # compiles (cached on disk) before timing
    assert with_pyarrow(arr, p).equals(compiled), "the two versions disagree"
    print(f"{len(arr)} texts, {pc.sum(pc.binary_length(arr)).as_py() / 1e6:.0f} MB, max_chars={p.max_chars}")
    best = {}
    for name, fn in (
        ("compiled (kernels.layout)", lambda: _layout_array(arr, p, p.lowercase, p.max_chars)),
        ("pyarrow (RE2)", lambda: with_pyarrow(arr, p)),
    ):
        times = []
        for _ in range(args.repeat):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        best[name] = min(times)
        print(f"{name:28s} {best[name]:.3f} CPU s (best of {args.repeat})")
    a, b = best.values()
    print(f"pyarrow / compiled: {b / a:.1f}x")


if __name__ == "__main__":
    main()

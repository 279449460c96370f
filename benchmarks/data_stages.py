"""Data stages at scale: rows/s and peak memory of ingest, clean, validate, augment and split.

Run from the repository root (needs ../shared/datasets):

    .venv/bin/python benchmarks/data_stages.py --rows 1000000
    .venv/bin/python benchmarks/data_stages.py --rows 10000000 --no-pandas

It builds a corpus of --rows rows from the real datasets (AG News, SMS Spam, IMDb reviews): rows are drawn at
random from the ~70k real texts and perturbed (about a fifth of the words replaced by other corpus words, so
each row is new text but keeps the real length and vocabulary), with 1% exact copies and 0.1% empty texts
mixed in; written as Parquet files of 250k rows, the input of a `parquet` source. Then, each in a process of
its own, measured with os.wait4 (CPU seconds, wall seconds, peak RSS):

- bigmodel: the stage's own `run(params, paths)` on a workspace made for the corpus (drift off: no registry);
- floor: pyarrow reading the stage's input Parquet and writing it back, in record batches of 65,536 rows
  (no work at all on the rows);
- floor_out: pyarrow reading the stage's input and writing the output the stage made (its own files: augment
  writes 1.7 times the rows it reads, ingest adds columns), the reading of that output timed in the child
  and taken away; measured after bigmodel;
- pandas: a straightforward pandas implementation of the same stage (row-wise `apply` for text
  cleaning, `duplicated`/`groupby`/`str.contains` for the rules, one datasketch MinHash per row for
  near-duplicates, `itertuples` with the same word dropout and swaps (Python's `random`) for augmentation, `apply` of the
  same hash for the split). It does the same work, without bigmodel's extras (provenance checks, reports,
  examples, profile, pandera schemas). --no-pandas skips it.

- baseline (with --baseline-code DIR): the stage's `run` from another checkout of bigmodel (for example
  `git worktree add /tmp/bigmodel-before <commit>`), on the same input, just before bigmodel: the cost of a
  change, before and after in one run. Run the benchmark once at a few thousand rows first, so that both
  checkouts' compiled kernels are in their caches and no compile time is counted.

All are measured in the same run, the stages in order (each reads the previous bigmodel stage's
output). Prints a markdown table with ratios to the floor and to pandas, and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("ingest", "clean", "validate", "augment", "split")
FILE_ROWS = 250_000
LABELS = ["world", "sports", "business", "scitech", "ham", "spam", "neg", "pos"]


# ---------------------------------------------------------------- corpus

def base_texts(datasets: Path, cache: Path) -> tuple[list[str], list[str]]:
    """The real texts and labels (AG News train subset + test, SMS Spam, IMDb), cached as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if cache.exists():
        t = pq.read_table(cache)
        return t["text"].to_pylist(), t["label"].to_pylist()
    import pandas as pd

    texts, labels = [], []
    ag = ["world", "sports", "business", "scitech"]
    # test.csv: class (1-4), title, description; the train subset: text, class (0-3); neither has a header
    test = pd.read_csv(datasets / "ag_news/test.csv", header=None, names=["y", "title", "body"])
    texts += (test["title"] + " " + test["body"]).tolist()
    labels += [ag[y - 1] for y in test["y"]]
    train = pd.read_csv(datasets / "ag_news/hf_format_train_subset/train.csv", header=None, names=["text", "y"])
    texts += train["text"].tolist()
    labels += [ag[y] for y in train["y"]]
    for line in (datasets / "sms_spam/SMSSpamCollection").read_text(encoding="utf-8", errors="replace").splitlines():
        if "\t" in line:
            lab, text = line.split("\t", 1)
            texts.append(text)
            labels.append(lab)
    with tarfile.open(datasets / "imdb/aclImdb_v1_labeled.tar.gz") as tar:
        for m in tar:
            parts = m.name.split("/")
            if m.isfile() and len(parts) >= 3 and parts[-2] in ("pos", "neg") and m.name.endswith(".txt"):
                texts.append(tar.extractfile(m).read().decode("utf-8", errors="replace"))
                labels.append(parts[-2])
    cache.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": texts, "label": labels}), cache)
    return texts, labels


def build_corpus(rows: int, out: Path, datasets: Path, seed: int = 0) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = out / "DONE.json"
    if marker.exists() and json.loads(marker.read_text())["rows"] == rows:
        return json.loads(marker.read_text())
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    texts, labels = base_texts(datasets, out.parent / "base.parquet")
    rng = random.Random(seed)
    vocab = [w for t in rng.sample(texts, 2000) for w in t.split()]
    started, n_files, done = time.perf_counter(), 0, 0
    while done < rows:
        n = min(FILE_ROWS, rows - done)
        col_t, col_l = [], []
        for _ in range(n):
            i = rng.randrange(len(texts))
            u = rng.random()
            if u < 0.001:
                col_t.append("")
            elif u < 0.011:
                col_t.append(texts[i])  # an exact copy of a real row
            else:
                words = texts[i].split(" ")
                for _k in range(max(1, len(words) // 5)):
                    words[rng.randrange(len(words))] = rng.choice(vocab)
                col_t.append(" ".join(words))
            col_l.append(labels[i])
        pq.write_table(pa.table({"text": col_t, "label": col_l}), out / f"part-{n_files:04d}.parquet")
        n_files += 1
        done += n
        print(f"  corpus: {done:,}/{rows:,} rows", file=sys.stderr, flush=True)
    info = {"rows": rows, "files": n_files, "bytes": sum(f.stat().st_size for f in out.glob("*.parquet")),
            "base_texts": len(texts), "seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(info))
    return info


def make_workspace(ws: Path, corpus: Path) -> None:
    import yaml

    ws.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = {"sources": [{"name": "bench", "path": str(corpus / "*.parquet"), "format": "parquet"}],
                      "labels": LABELS}
    params["validate"]["drift"]["policy"] = "off"
    params["validate"]["max_quarantine_fraction"] = 0.5
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


# ---------------------------------------------------------------- children (each measured on its own)

def child_bigmodel(stage: str, ws: str) -> None:
    from bigmodel_core import stages
    from bigmodel_core.config import load_params
    from bigmodel_core.paths import Paths

    stages.get(stage).run(load_params(Path(ws) / "params.yaml"), Paths(Path(ws)))


def _stage_io(stage: str, ws: Path, corpus: Path) -> tuple[list[Path], Path]:
    ins = {"ingest": sorted(corpus.glob("*.parquet")), "clean": [ws / "data/raw/rows.parquet"],
           "validate": [ws / "data/clean/rows.parquet"], "augment": [ws / "data/validated/rows.parquet"],
           "split": [ws / "data/augmented/rows.parquet"]}[stage]
    return ins, ws / "bench-out" / stage


_OUTPUTS = {"ingest": ["data/raw/rows.parquet"], "clean": ["data/clean/rows.parquet"],
            "validate": ["data/validated/rows.parquet", "data/validated/quarantine.parquet"],
            "augment": ["data/augmented/rows.parquet"],
            "split": ["data/split/train.parquet", "data/split/val.parquet", "data/split/test.parquet"]}


def child_floor_out(stage: str, ws: str, corpus: str) -> None:
    """The I/O of the stage's own files: read its input and write the output it made (bigmodel's run just
    before), in record batches as child_floor. The output's rows must be read to be written: that reading is
    timed here (CPU seconds of this process, around each batch read) and written to WS/bench-out/STAGE/
    read_out.json, and measure() takes it away."""
    import pyarrow.parquet as pq

    from bigmodel_core.io import PARQUET_OPTIONS, iter_batches

    wsp = Path(ws)
    ins, out = _stage_io(stage, wsp, Path(corpus))
    out.mkdir(parents=True, exist_ok=True)
    for f in ins:
        for _batch in iter_batches(pq.ParquetFile(f)):
            pass
    reading = 0.0
    for i, rel in enumerate(_OUTPUTS[stage]):
        reader = pq.ParquetFile(wsp / rel)
        batches = iter_batches(reader)
        with pq.ParquetWriter(out / f"out-{i}.parquet", reader.schema_arrow, **PARQUET_OPTIONS) as writer:
            while True:
                started = time.process_time()
                batch = next(batches, None)
                reading += time.process_time() - started
                if batch is None:
                    break
                writer.write_batch(batch)
    (out / "read_out.json").write_text(json.dumps({"cpu_s": reading}))


def child_floor(stage: str, ws: str, corpus: str) -> None:
    """Read the stage's input and write the same rows back: the I/O a stage cannot avoid."""
    import pyarrow.parquet as pq

    from bigmodel_core.io import PARQUET_OPTIONS, iter_batches

    ins, out = _stage_io(stage, Path(ws), Path(corpus))
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(ins):  # in record batches, as the stages stream (a 10M-row table does not fit whole)
        reader = pq.ParquetFile(f)
        # written as the stages write (io.PARQUET_OPTIONS), so the floor is the same files' I/O
        with pq.ParquetWriter(out / f"floor-{i}.parquet", reader.schema_arrow, **PARQUET_OPTIONS) as writer:
            for batch in iter_batches(reader):  # a row group at a time, as the stages read
                writer.write_batch(batch)


_TAG = re.compile(r"<[^<>]{0,200}>")
_WS = re.compile(r"\s+")
_NUM = re.compile(r"(?<![&\w])#(\d{1,5});")
_NAMED = re.compile(r"(?<![&\w])(quot|amp|lt|gt|nbsp|apos);")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _split_of(key: str, s: dict) -> str:
    """The split rule, written out for the pandas version: a hash of salt and group key."""
    import hashlib

    u = int.from_bytes(hashlib.sha256(f"{s['salt']}\0{key}".encode()).digest()[:8], "big") / 2**64
    if u < s["test_fraction"]:
        return "test"
    return "val" if (u - s["test_fraction"]) / (1 - s["test_fraction"]) < s["val_fraction"] else "train"


def child_pandas(stage: str, ws: str, corpus: str) -> None:
    """The same stage written the way a pandas script would: correct, row-wise where the work is per text."""
    import hashlib
    import html

    import pandas as pd
    import yaml

    wsp = Path(ws)
    p = yaml.safe_load((wsp / "params.yaml").read_text())
    ins, out = _stage_io(stage, wsp, Path(corpus))
    out.mkdir(parents=True, exist_ok=True)
    if stage == "ingest":
        frames = []
        for f in ins:
            df = pd.read_parquet(f)
            df["source"], df["source_file"] = "bench", str(f)
            df["source_row"] = range(1, len(df) + 1)
            df["row_id"] = df.apply(lambda r: hashlib.sha1(f"bench\0{r.source_file}\0{r.source_row}".encode()).hexdigest()[:16], axis=1)
            df["fixed_split"] = None
            frames.append(df)
        pd.concat(frames, ignore_index=True).to_parquet(out / "rows.parquet")
    elif stage == "clean":
        c = p["clean"]
        df = pd.read_parquet(ins[0])

        def clean(t):
            if t is None:
                return None
            t = _NAMED.sub(r"&\1;", _NUM.sub(r"&#\1;", t))
            t = html.unescape(html.unescape(t))
            t = _WS.sub(" ", _TAG.sub(" ", t)).strip()
            return t[: c["max_chars"]]

        df["text"] = df["text"].apply(clean)
        df.to_parquet(out / "rows.parquet")
    elif stage == "validate":
        from datasketch import MinHash, MinHashLSH

        v = p["validate"]
        df = pd.read_parquet(ins[0])
        text = df["text"].fillna("")
        reason = pd.Series("", index=df.index)
        reason[text.str.strip() == ""] = "empty_text"
        reason[(reason == "") & df["label"].isna()] = "missing_label"
        reason[(reason == "") & ~df["label"].isin(LABELS)] = "unknown_label"
        df["key"] = text.apply(lambda t: hashlib.sha1(" ".join(t.casefold().split()).encode()).hexdigest()[:20])
        ok = reason == ""
        n_labels = df[ok].groupby("key")["label"].nunique()
        reason[ok & df["key"].isin(n_labels[n_labels > 1].index)] = "conflicting_labels"
        reason[(reason == "") & df["key"].duplicated()] = "duplicate"
        reason[(reason == "") & text.str.contains("\ufffd", regex=False)] = "undecodable"
        reason[(reason == "") & (text.str.len() < v["rules"]["too_short"]["min_chars"])] = "too_short"
        reason[(reason == "") & text.str.contains(_CONTROL)] = "control_chars"
        words = text.str.split().str.len()
        long_ = words > v["rules"]["too_long"]["max_words"]
        html_left = text.str.contains(r"<[a-zA-Z/][^<>]{0,200}>|&#?\w{2,8};")
        rule = v["rules"]["near_duplicate"]
        lsh = MinHashLSH(threshold=rule["min_jaccard"], num_perm=128, weights=(0.1, 0.9))
        pairs = 0
        for i, t in zip(df.index[reason == ""], text[reason == ""]):
            w = t.casefold().split()
            k = rule["shingle_words"]
            m = MinHash(num_perm=128, seed=1)
            for s in ([" ".join(w)] if len(w) <= k else (" ".join(w[j:j + k]) for j in range(len(w) - k + 1))):
                m.update(s.encode())
            pairs += len(lsh.query(m))
            lsh.insert(i, m)
        df["group_key"] = df["key"]
        df[reason == ""].drop(columns=["key"]).to_parquet(out / "rows.parquet")
        q = df[reason != ""].drop(columns=["key"]).assign(rule=reason[reason != ""])
        q.to_parquet(out / "quarantine.parquet")
        json.dump({"long": int(long_.sum()), "html": int(html_left.sum()), "pairs": pairs}, open(out / "r.json", "w"))
    elif stage == "augment":
        a, s = p["augment"], p["split"]
        df = pd.read_parquet(ins[0])

        rows = []
        for r in df[df["group_key"].apply(_split_of, args=(s,)) == "train"].itertuples(index=False):
            for k in range(a["copies"]):
                seed = int.from_bytes(hashlib.sha256(f"{a['seed']}\0{r.row_id}\0{k}".encode()).digest()[:8], "big")
                rng = random.Random(seed)
                words = r.text.split(" ")
                if len(words) > 1:
                    words = [w for w in words if rng.random() >= a["word_dropout"]] or [rng.choice(words)]
                i = 0
                while i < len(words) - 1:  # neighbour swaps
                    if rng.random() < a["swap_prob"]:
                        words[i], words[i + 1] = words[i + 1], words[i]
                        i += 2
                    else:
                        i += 1
                rows.append({**r._asdict(), "row_id": f"{r.row_id}-aug{k}", "text": " ".join(words),
                             "parent_id": r.row_id, "is_augmented": True})
        df["parent_id"], df["is_augmented"] = df["row_id"], False
        pd.concat([df, pd.DataFrame(rows)], ignore_index=True).to_parquet(out / "rows.parquet")
    elif stage == "split":
        s = p["split"]
        df = pd.read_parquet(ins[0])

        df["split"] = df["group_key"].apply(_split_of, args=(s,))
        assert df.groupby("group_key")["split"].nunique().max() == 1
        for name, part in df.groupby("split"):
            part.to_parquet(out / f"{name}.parquet")


# ---------------------------------------------------------------- measuring

def measure(kind: str, stage: str, ws: Path, corpus: Path, code: Path = REPO) -> dict:
    """One child process (kind: bigmodel, floor, floor_out, pandas, baseline) on the stage; code: the checkout
    whose bigmodel_core it imports (the baseline's for kind baseline)."""
    child = "bigmodel" if kind == "baseline" else kind
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child, stage, str(ws), str(corpus)]
    # bytecode cached as a normal install has it (this machine's PYTHONDONTWRITEBYTECODE would recompile
    # every module in every process: seconds of fixed cost that are not the stage's)
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1",
           "PYTHONPYCACHEPREFIX": str(ws.parent / ("pycache-baseline" if kind == "baseline" else "pycache"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ws)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{kind} {stage} failed with exit {code}")
    cpu = usage.ru_utime + usage.ru_stime
    if kind == "floor_out":  # without the reading of the output, which only served to have its rows
        cpu -= json.loads((ws / "bench-out" / stage / "read_out.json").read_text())["cpu_s"]
    shutil.rmtree(ws / "bench-out" / stage, ignore_errors=True)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bigmodel-data-bench"))
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared/datasets")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--no-pandas", action="store_true", help="skip the pandas implementation")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default: WORKDIR/results-ROWS.json)")
    ap.add_argument("--baseline-code", type=Path, default=None,
                    help="another bigmodel checkout whose stages are measured too, just before this one's")
    args = ap.parse_args()
    if args.baseline_code is not None and not (args.baseline_code / "bigmodel_core").is_dir():
        raise SystemExit(f"--baseline-code: {args.baseline_code} has no bigmodel_core/ (a checkout of bigmodel)")
    if not (args.datasets / "imdb").is_dir():
        print(f"skipped: {args.datasets} has no imdb/ (the benchmark builds its corpus from the real datasets)")
        return 0
    corpus = args.workdir / f"corpus-{args.rows}"
    # in a child: this process stays small, so the children it starts do not inherit its peak RSS
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "corpus", str(args.rows), str(corpus),
                    str(args.datasets)], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    info = json.loads((corpus / "DONE.json").read_text())
    ws = args.workdir / f"ws-{args.rows}"
    if "ingest" in args.stages.split(","):
        shutil.rmtree(ws, ignore_errors=True)  # otherwise the stages read the outputs of the last run
    make_workspace(ws, corpus)
    print(f"corpus: {info['rows']:,} rows in {info['files']} Parquet files, {info['bytes'] / 2**20:.0f} MiB", flush=True)
    # floor_out after bigmodel: it writes the output bigmodel made
    # the baseline just before bigmodel, so the next stage reads bigmodel's output
    kinds = (["floor"] + (["baseline"] if args.baseline_code else []) + ["bigmodel", "floor_out"]
             + ([] if args.no_pandas else ["pandas"]))
    requested = args.stages.split(",")
    unknown = [s for s in requested if s not in STAGES]
    if unknown:
        raise SystemExit(f"--stages: unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")

    def ensure_input(stage: str) -> None:
        # a stage measured alone needs the outputs of the stages before it: run those first, untimed
        if all(f.exists() for f in _stage_io(stage, ws, corpus)[0]):
            return
        before = STAGES[STAGES.index(stage) - 1]
        ensure_input(before)
        print(f"  {before:9s} (untimed: {stage} needs its output)", flush=True)
        measure("bigmodel", before, ws, corpus)

    results = {}
    for stage in requested:
        ensure_input(stage)
        results[stage] = {}
        for kind in kinds:  # bigmodel runs before pandas: later stages read bigmodel's outputs
            code = args.baseline_code if kind == "baseline" else REPO
            results[stage][kind] = measure(kind, stage, ws, corpus, code)
            print(f"  {stage:9s} {kind:9s} {results[stage][kind]}", flush=True)
    rows = args.rows
    print(f"\n{rows:,} rows; CPU seconds (wall), peak RSS; ratios of CPU seconds. floor: read the input, write "
          "it back; floor_out: read the input, write the stage's own output (CPU s only)\n")
    print("| stage | floor (pyarrow read+write) | floor_out | bigmodel | pandas | bigmodel / floor | "
          "bigmodel / floor_out | pandas / bigmodel | bigmodel rows/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for stage, r in results.items():
        f, fo, b, pd_ = r["floor"], r["floor_out"], r["bigmodel"], r.get("pandas")

        def cell(m):
            return f"{m['cpu_s']:.1f} s ({m['wall_s']:.1f}), {m['peak_rss_mib'] / 1024:.2f} GiB" if m else "-"
        speedup = f"{pd_['cpu_s'] / b['cpu_s']:.1f}x" if pd_ else "-"
        print(f"| {stage} | {cell(f)} | {fo['cpu_s']:.1f} s | {cell(b)} | {cell(pd_)} | {b['cpu_s'] / f['cpu_s']:.1f}x | "
              f"{b['cpu_s'] / fo['cpu_s']:.1f}x | {speedup} | {rows / b['wall_s']:,.0f} |")
    if args.baseline_code:
        print(f"\nbaseline: {args.baseline_code} (CPU s, peak RSS; bigmodel / baseline)\n")
        print("| stage | baseline | bigmodel | bigmodel / baseline (CPU) | bigmodel / floor | baseline / floor |")
        print("|---|---|---|---|---|---|")
        for stage, r in results.items():
            f, b, base = r["floor"], r["bigmodel"], r["baseline"]
            print(f"| {stage} | {base['cpu_s']:.1f} s, {base['peak_rss_mib'] / 1024:.2f} GiB | {b['cpu_s']:.1f} s, "
                  f"{b['peak_rss_mib'] / 1024:.2f} GiB | {b['cpu_s'] / base['cpu_s']:.2f}x | "
                  f"{b['cpu_s'] / f['cpu_s']:.1f}x | {base['cpu_s'] / f['cpu_s']:.1f}x |")
    out = args.out or args.workdir / f"results-{rows}.json"
    out.write_text(json.dumps({"rows": rows, "corpus": info, "machine": platform.platform(), "cpus": os.cpu_count(),
                               "date": time.strftime("%Y-%m-%d %H:%M"), "results": results,
                               "baseline_code": str(args.baseline_code) if args.baseline_code else None}, indent=2))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        {"bigmodel": lambda s, w, c: child_bigmodel(s, w), "floor": child_floor, "floor_out": child_floor_out,
         "pandas": child_pandas,
         "corpus": lambda n, c, d: build_corpus(int(n), Path(c), Path(d))}[kind](*rest)
        sys.exit(0)
    sys.exit(main())

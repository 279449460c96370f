"""Compare bigmodel's models with a TF-IDF + logistic-regression baseline on the same split.

Run from the repository root:

    .venv/bin/python benchmarks/baseline.py --dataset all
    .venv/bin/python benchmarks/baseline.py --dataset sms_spam --model bag --out /tmp/results.json
    .venv/bin/python benchmarks/baseline.py --dataset ag_news --model auto --model auto-tuned --tune-trials 10
    .venv/bin/python benchmarks/baseline.py --dataset imdb --set validate.rules.control_chars.policy=warn

For each dataset (demo, imdb, ag_news, sms_spam, and ag_news_merged: AG News with Business and Sci/Tech
merged into one class, a task no recipe was written for) and model it makes a fresh temporary workspace,
writes the params there as params.yaml, copies data/sources/, and runs the stages ingest -> evaluate
in-process (not deploy), with MLFLOW_TRACKING_URI pointing at a SQLite file inside that workspace. The params:

- bag, transformer: the recipe, examples/DATASET-MODEL.yaml (ag_news_merged: AG News's recipes with the
  merged labels; demo: the repo's params.yaml with -S model.kind=transformer, or with the bag overrides below);
- linear, auto, auto-tuned: what a new user gets: the data sections of the dataset's bag recipe (sources,
  clean, validate, augment, split) with the model and train sections of the repo's params.yaml (what
  `bigmodel init` writes), -S model.kind=linear or auto; auto-tuned adds -S train.tune.trials=N.

Every model of a dataset shares its data sections, so they split the same rows the same way (checked:
the baseline must score the same on every workspace). The example params read `../shared/datasets/...`;
the workspace gets a `../shared/datasets` link to --datasets-dir (default: ../shared/datasets next to the
repo), so the params are used exactly as written.

Then, on the same split files (data/split/{train,test}.parquet), it fits the baseline: the product's own
(bigmodel_core/evaluation/baseline.py: model.kind linear with its defaults, TF-IDF word 1-2 grams, sublinear
tf, min_df 2, + logistic regression with C 10), trained on the train split's original rows only
(is_augmented == False, no validation rows), and scored on the test split with sklearn.metrics.

Times are measured as they come (other load included): wall-clock seconds and the process's CPU seconds
(all threads) of ours = the train stage + the evaluate stage (tokenizer training, the fit loop or every
candidate and trial, saving the bundle, test inference, evaluate's own baseline fit and 200 timed
one-text predictions, the MLflow champion lookup); baseline = vectorizer + model fit + test predict.

Prints a markdown table per run, a summary per dataset (with the target: auto's accuracy at most 0.5
points below the baseline's, auto-tuned's at or above it) and writes every figure to --out as JSON (entries
of datasets run earlier and not run now are kept). A real dataset whose files are missing is skipped with a
message: exit status 0 when it came from 'all', 2 when it was asked for by name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASETS = ("demo", "imdb", "ag_news", "sms_spam", "ag_news_merged")
# What must exist under --datasets-dir for each real dataset.
REQUIRED = {
    "imdb": ["imdb/aclImdb_v1_labeled.tar.gz"],
    "ag_news": ["ag_news/test.csv", "ag_news/hf_format_train_subset/train.csv"],
    "sms_spam": ["sms_spam/SMSSpamCollection"],
}
REQUIRED["ag_news_merged"] = REQUIRED["ag_news"]
PREP_STAGES = ("ingest", "clean", "validate", "augment", "split")
MODELS = ("linear", "bag", "transformer", "auto", "auto-tuned")
RECIPE_MODELS = ("bag", "transformer")  # the others take the product's defaults (params.yaml's model, train)
BASELINE = "TF-IDF + LR baseline"
TUNE_TRIALS = 10
# the demo's bag: params.yaml with these overrides (its transformer: -S model.kind=transformer)
DEMO_BAG = ["model.kind=bag", "model.d_model=32", "model.char_ngrams=[3, 5]", "train.lr=0.01", "train.grad_clip=0",
            "train.weight_decay=0", "train.epochs=5", "train.checkpoint_every=0"]
# ag_news_merged: AG News with Business and Sci/Tech as one class
MERGED = "Business_SciTech"


def params_file(dataset: str, model: str = "transformer") -> Path:
    """The file the params start from: the recipe (linear and auto: the bag recipe's, for its data sections)."""
    if dataset == "demo":
        return REPO / "params.yaml"
    base = "ag_news" if dataset == "ag_news_merged" else dataset
    return REPO / "examples" / f"{base}-{model if model in RECIPE_MODELS else 'bag'}.yaml"


def overrides(dataset: str, model: str, tune_trials: int = TUNE_TRIALS) -> list[str]:
    if dataset == "demo" and model in RECIPE_MODELS:
        return DEMO_BAG if model == "bag" else ["model.kind=transformer"]
    if model in RECIPE_MODELS:
        return []
    kind = ["model.kind=linear"] if model == "linear" else ["model.kind=auto"]
    return kind + ([f"train.tune.trials={tune_trials}"] if model == "auto-tuned" else [])


def recipe_params(dataset: str, model: str, tune_trials: int = TUNE_TRIALS) -> dict:
    """The params a run uses (before the overrides)."""
    import yaml

    raw = yaml.safe_load(params_file(dataset, model).read_text())
    if model not in RECIPE_MODELS and dataset != "demo":  # a new user's model and train sections
        product = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["model"], raw["train"] = product["model"], product["train"]
    if dataset == "ag_news_merged":
        for source in raw["data"]["sources"]:
            source["label_map"] = {k: (MERGED if v in ("Business", "Sci/Tech") else v)
                                   for k, v in source["label_map"].items()}
        raw["data"]["labels"] = ["World", "Sports", MERGED]
    return raw


def describe(dataset: str, model: str, tune_trials: int = TUNE_TRIALS) -> str:
    base = str(params_file(dataset, model).relative_to(REPO))
    if model not in RECIPE_MODELS and dataset != "demo":
        base = f"{base} (data sections) + params.yaml (model, train)"
    if dataset == "ag_news_merged":
        base += f" with Business and Sci/Tech merged into {MERGED}"
    return base + "".join(f" -S {o}" for o in overrides(dataset, model, tune_trials))


def missing_files(dataset: str, datasets_dir: Path) -> list[str]:
    return [p for p in REQUIRED.get(dataset, []) if not (datasets_dir / p).exists()]


@contextmanager
def env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_workspace(tmp: Path, dataset: str, datasets_dir: Path, model: str = "transformer",
                   tune_trials: int = TUNE_TRIALS, extra: list[str] | None = None) -> Path:
    """tmp/main is the workspace (params.yaml, data/sources); tmp/shared/datasets links to the data."""
    import yaml

    from bigmodel_core.pipeline.params_file import persist_overrides

    work = tmp / "main"
    (work / "data").mkdir(parents=True)
    if model in RECIPE_MODELS and dataset != "ag_news_merged":
        shutil.copy2(params_file(dataset, model), work / "params.yaml")  # as written, comments included
    else:
        (work / "params.yaml").write_text(yaml.safe_dump(recipe_params(dataset, model, tune_trials), sort_keys=False))
    if overrides(dataset, model, tune_trials) + (extra or []):
        persist_overrides(work / "params.yaml", overrides(dataset, model, tune_trials) + (extra or []))
    if (REPO / "data" / "sources").is_dir():
        shutil.copytree(REPO / "data" / "sources", work / "data" / "sources")
    (tmp / "shared").mkdir()
    if datasets_dir.exists():
        (tmp / "shared" / "datasets").symlink_to(datasets_dir.resolve(), target_is_directory=True)
    return work


def run_pipeline(work: Path) -> dict:
    """Run ingest..evaluate in-process; return each stage's report and the wall time of each."""
    from bigmodel_core import stages
    from bigmodel_core.config import load_params
    from bigmodel_core.paths import Paths

    params = load_params(work / "params.yaml")
    paths = Paths(work)
    reports, seconds, cpu = {}, {}, {}
    with env(MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}"):
        for name in (*PREP_STAGES, "train", "evaluate"):
            print(f"  stage {name} ...", flush=True)
            t0, c0 = time.perf_counter(), time.process_time()
            reports[name] = stages.get(name).run(params, paths)
            seconds[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
            print(f"  stage {name} done in {seconds[name]:.1f}s ({cpu[name]:.1f} CPU s)", flush=True)
    labels = json.loads((paths.evaluation / "per_class.json").read_text())["labels"]
    return {"reports": reports, "seconds": seconds, "cpu_seconds": cpu, "labels": labels}


def sklearn_scores(y_true, y_pred, labels: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))}


def run_baseline(work: Path, labels: list[str]) -> dict:
    """The product's own baseline recipe (bigmodel_core.evaluation.baseline), scored here with sklearn."""
    import pandas as pd

    from bigmodel_core.evaluation.baseline import fit_predict

    train = pd.read_parquet(work / "data/split/train.parquet")
    test = pd.read_parquet(work / "data/split/test.parquet")
    train = train[~train["is_augmented"]]
    pred, info = fit_predict(train["text"].tolist(), train["label"].tolist(), test["text"].tolist())
    return {**sklearn_scores(test["label"].tolist(), pred, labels), "train_rows": len(train),
            "test_rows": len(test), "seconds": info["seconds"]}


def check_our_scores(work: Path, ours: dict, labels: list[str]) -> None:
    """Recompute our scores with sklearn from plots/confusion.csv (actual,predicted per test row)."""
    import pandas as pd

    conf = pd.read_csv(work / "plots/confusion.csv", dtype=str, keep_default_na=False)
    again = sklearn_scores(conf["actual"].tolist(), conf["predicted"].tolist(), labels)
    for k in ("accuracy", "macro_f1"):
        if abs(again[k] - ours[k]) > 1e-9:
            print(f"  WARNING: evaluate's {k} {ours[k]:.6f} != sklearn's {again[k]:.6f}", flush=True)


def benchmark(dataset: str, model: str, datasets_dir: Path, keep: bool, tune_trials: int = TUNE_TRIALS,
              extra: list[str] | None = None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"bigmodel-bench-{dataset}-{model}-"))
    recipe = describe(dataset, model, tune_trials) + "".join(f" -S {o}" for o in extra or [])
    try:
        work = make_workspace(tmp, dataset, datasets_dir, model, tune_trials, extra)
        print(f"[{dataset}/{model}] workspace {work} (params: {recipe})", flush=True)
        pipe = run_pipeline(work)
        rep, sec, cpu, labels = pipe["reports"], pipe["seconds"], pipe["cpu_seconds"], pipe["labels"]
        train_m, eval_r = rep["train"], rep["evaluate"]
        ours = {"accuracy": eval_r["accuracy"], "macro_f1": eval_r["macro_f1"],
                "train_rows": train_m["train_rows"], "augmented_train_rows": rep["split"]["augmented_in_train"],
                "test_rows": rep["split"]["rows"]["test"], "seconds": sec["train"] + sec["evaluate"],
                "cpu_seconds": cpu["train"] + cpu["evaluate"],
                "train_stage_seconds": sec["train"], "evaluate_stage_seconds": sec["evaluate"],
                "train_stage_cpu_seconds": cpu["train"], "evaluate_stage_cpu_seconds": cpu["evaluate"],
                "fit_loop_seconds": train_m["seconds"], "epochs_run": train_m["epochs_run"],
                "best_epoch": train_m["best_epoch"], "parameters": train_m["parameters"], "device": train_m["device"],
                "tokens_per_second": train_m.get("tokens_per_second"),
                "padding_efficiency": train_m.get("padding_efficiency"),
                "model_kind": train_m.get("model_kind", model), "chosen": train_m.get("chosen")}
        full = json.loads((work / "metrics/train.json").read_text())
        if full.get("candidates") and model in ("auto", "auto-tuned"):
            ours["candidates"] = [{k: r.get(k) for k in ("name", "kind", "val_macro_f1", "val_accuracy", "seconds",
                                                         "cpu_seconds", "trials", "chosen", "settings")}
                                  for r in full["candidates"]]
        check_our_scores(work, ours, labels)
        print(f"[{dataset}/{model}] baseline ...", flush=True)
        base = run_baseline(work, labels)
        quality = rep["validate"]
        return {
            "dataset": dataset,
            "model": model,
            "params_file": recipe,
            "finished_at": dt.datetime.now().isoformat(timespec="seconds"),
            "labels": labels,
            "ours": ours,
            "baseline": base,
            "ratio": {k: ours[k] / base[k] if base[k] else None for k in ("accuracy", "macro_f1", "seconds")},
            "data": {
                "rows_in": quality["rows_in"], "rows_out": quality["rows_out"],
                "quarantined": {rule: r["rows"] for rule, r in quality["rules"].items()},
                "quarantine_fraction": quality["quarantine_fraction"],
                "split_rows": rep["split"]["rows"],
                "prep_seconds": {s: round(sec[s], 3) for s in PREP_STAGES},
            },
        }
    finally:
        if keep:
            print(f"[{dataset}/{model}] kept workspace {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def table(r: dict) -> str:
    o, b, q = r["ours"], r["baseline"], r["ratio"]
    aug = (f" (incl. {o['augmented_train_rows']:,} augmented)"
           if o["augmented_train_rows"] and o["train_rows"] > o["augmented_train_rows"] else "")
    kind = f", chose {o['chosen']} ({o['model_kind']})" if o.get("chosen") else ""
    lines = [
        f"### {r['dataset']} / {r['model']}  ({r['params_file']}, {len(r['labels'])} classes)",
        "",
        "| model | accuracy | macro-F1 | train rows | test rows | wall s | CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| bigmodel ({r['model']}{kind}) | {o['accuracy']:.4f} | {o['macro_f1']:.4f} | {o['train_rows']:,}{aug} | "
        f"{o['test_rows']:,} | {o['seconds']:.1f} | {o.get('cpu_seconds', float('nan')):.1f} |",
        f"| {BASELINE} | {b['accuracy']:.4f} | {b['macro_f1']:.4f} | {b['train_rows']:,} (non-augmented) | {b['test_rows']:,} | {b['seconds']:.1f} | |",
        "",
        f"ours / baseline: accuracy {q['accuracy']:.3f}, macro-F1 {q['macro_f1']:.3f}, time {q['seconds']:.1f}x",
        "",
        f"ours: train stage {o['train_stage_seconds']:.1f}s (fit {o['fit_loop_seconds']:.1f}s, "
        f"{o['epochs_run']} epoch(s), best {o['best_epoch']}, {o['parameters']:,} params, {o['device']}), "
        f"evaluate stage {o['evaluate_stage_seconds']:.1f}s; baseline: fit + predict. "
        f"Quarantined {sum(r['data']['quarantined'].values()):,} of {r['data']['rows_in']:,} rows: "
        + ", ".join(f"{k} {v}" for k, v in r["data"]["quarantined"].items()) + ".",
    ]
    for c in o.get("candidates") or []:
        lines.append(f"- candidate {c['name']} ({c['kind']}): val macro-F1 {c['val_macro_f1']:.4f}, "
                     f"{c['seconds']:.1f}s, {c['cpu_seconds']:.1f} CPU s"
                     + (f", {c['trials']} trials" if c.get("trials") else "") + (" (chosen)" if c["chosen"] else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", action="append", choices=[*DATASETS, "all"], required=True,
                    help="dataset to run; repeat for several, or 'all'")
    ap.add_argument("--model", action="append", choices=list(MODELS), default=None,
                    help=f"model to run; repeat for several (default: all: {', '.join(MODELS)})")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a params override for every run (as `bigmodel run -S`), after the recipe's own; repeatable")
    ap.add_argument("--tune-trials", type=int, default=TUNE_TRIALS,
                    help=f"auto-tuned: train.tune.trials, trials per candidate (default {TUNE_TRIALS})")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.json", help="JSON results file")
    ap.add_argument("--datasets-dir", type=Path, default=REPO.parent / "shared" / "datasets",
                    help="folder holding imdb/, ag_news/, sms_spam/ (default: ../shared/datasets)")
    ap.add_argument("--keep", action="store_true", help="keep each temporary workspace (its path is printed)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a killed run still removes its workspace

    explicit = {d for d in args.dataset if d != "all"}
    wanted = list(DATASETS) if "all" in args.dataset else [d for d in DATASETS if d in explicit]
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    models = args.model or list(MODELS)
    status = 0
    for dataset in wanted:
        missing = missing_files(dataset, args.datasets_dir)
        if missing:
            print(f"[{dataset}] SKIPPED: missing {', '.join(str(args.datasets_dir / m) for m in missing)} "
                  f"(set --datasets-dir)", flush=True)
            if dataset in explicit:
                status = 2
            continue
        for model in models:
            r = benchmark(dataset, model, args.datasets_dir, args.keep, args.tune_trials, args.set)
            r["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
            results[f"{dataset}/{model}"] = r
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
            print("\n" + table(r) + "\n", flush=True)
        same = [results[f"{dataset}/{m}"]["baseline"]["accuracy"] for m in models if f"{dataset}/{m}" in results]
        if len(set(same)) > 1:
            print(f"[{dataset}] WARNING: the baseline differs between recipes ({same}): their splits differ", flush=True)
    summary(results, wanted, models)
    return status


def summary(results: dict, datasets: list[str], models: list[str]) -> None:
    """One line per dataset: each model and the baseline (the README table); then the targets of auto and the
    cost of each model in CPU seconds (train + evaluate stages)."""
    print("| dataset | " + " | ".join(f"{m} acc / F1 / s" for m in models) + f" | {BASELINE} acc / F1 / s |")
    print("| --- | " + " | ".join("---:" for _ in models) + " | ---: |")
    for d in datasets:
        rows = [results.get(f"{d}/{m}") for m in models]
        if not any(rows):
            continue
        base = next(r for r in rows if r)["baseline"]
        cells = [f"{r['ours']['accuracy']:.4f} / {r['ours']['macro_f1']:.4f} / {r['ours']['seconds']:.0f}" if r else "-"
                 for r in rows]
        print(f"| {d} | " + " | ".join(cells) + f" | {base['accuracy']:.4f} / {base['macro_f1']:.4f} / {base['seconds']:.1f} |")
    autos = [m for m in ("auto", "auto-tuned") if m in models]
    if autos:
        print("\ntargets: auto >= baseline accuracy - 0.5 points; auto-tuned >= baseline accuracy")
        print("| dataset | " + " | ".join(f"{m}: chose, acc - baseline (points), target" for m in autos) + " |")
        print("| --- | " + " | ".join("---" for _ in autos) + " |")
        for d in datasets:
            cells = []
            for m in autos:
                r = results.get(f"{d}/{m}")
                if not r:
                    cells.append("-")
                    continue
                gap = 100 * (r["ours"]["accuracy"] - r["baseline"]["accuracy"])
                met = gap >= (-0.5 if m == "auto" else 0.0) - 1e-9
                cells.append(f"{r['ours'].get('chosen')} ({r['ours'].get('model_kind')}), {gap:+.2f}, "
                             f"{'met' if met else 'MISSED'}")
            if any(c != "-" for c in cells):
                print(f"| {d} | " + " | ".join(cells) + " |")
    print("\ncost: CPU seconds of the train + evaluate stages (train stage alone in brackets)")
    print("| dataset | " + " | ".join(models) + " |")
    print("| --- | " + " | ".join("---:" for _ in models) + " |")
    for d in datasets:
        rows = [results.get(f"{d}/{m}") for m in models]
        if any(rows):
            print(f"| {d} | " + " | ".join(
                f"{r['ours']['cpu_seconds']:.0f} ({r['ours']['train_stage_cpu_seconds']:.0f})"
                if r and "cpu_seconds" in r["ours"] else "-" for r in rows) + " |")


if __name__ == "__main__":
    sys.exit(main())

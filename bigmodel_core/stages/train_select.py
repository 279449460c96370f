"""The train stage for model.kind auto and linear, and for tuning (train.tune): train candidates, keep the best.

Every candidate trains on the same train split (its original rows, or with the augment stage's variants:
model.augmented_rows) and is scored on the validation split; training/select.py chooses by validation
macro-F1. Only then is the test split read, for the data profile that travels in the bundle (drift
checks compare the next run's rows with it); the evaluate stage scores the chosen model on it.

Each candidate works in .bigmodel/train/candidates/<name>/ (encoded data, checkpoints, its bundle and
result.json), so a train stage killed halfway resumes with the candidates it finished. MLflow: a run
nested under the pipeline's run per candidate (its epochs, figures and settings) and, when tuning, one
nested under the candidate's per trial. metrics/train.json holds the chosen model's figures and, under
`candidates`, one row per candidate.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from bigmodel_core.config import Candidate, Params, candidate_names, candidate_params, default_candidates
from bigmodel_core.io import atomic_dir, write_json
from bigmodel_core.paths import Paths
from bigmodel_core.stages.train_fit import candidate_settings, fit_one


def _plan(params: Params, train_rows: int) -> list[tuple[str, Candidate | None]]:
    """[(name, candidate or None)]: None is the model section itself (a single kind: linear, or one being tuned)."""
    if params.model.kind != "auto":
        return [(params.model.kind, None)]
    from bigmodel_core.training.device import pick_device

    given = params.model.candidates
    cands = list(given) if given else default_candidates(train_rows, pick_device(params.train.device).type == "cuda")
    return list(zip(candidate_names(cands), cands, strict=True))


def _finish_run(live, result: dict, status: str = "FINISHED", tags: dict | None = None) -> None:
    if live is None:
        return
    figures = {
        k: result[k]
        for k in ("val_accuracy", "val_macro_f1", "val_loss", "seconds", "cpu_seconds")
        if result.get(k) is not None
    }
    live.finish(status, figures, summary_step=result["metrics"].get("best_epoch") or 0, tags=tags)


# --------------------------------------------------------------------------- one candidate, tuned or not
def _candidate(
    params: Params, name: str, cand, splits, workdir: Path, key: str, live, seconds: float | None, augmented: bool
) -> dict:
    """Train the candidate (every trial of its search when tuning); its best model ends in workdir/bundle."""
    p = candidate_params(params, cand) if cand is not None else params
    tune = params.train.tune
    if not (tune.trials > 0 or tune.minutes is not None):
        result = fit_one(p, splits, workdir, key, live, checkpoint=True)
        return {**result, "settings": candidate_settings(p), "trials": None}

    from bigmodel_core.training.select import choose_trial
    from bigmodel_core.training.tune import search

    trials: list[dict] = []  # in trial order (Optuna numbers them 0, 1, ...)
    best: dict | None = None

    def objective(number: int, model_keys: dict, train_keys: dict) -> float:
        nonlocal best
        tp = candidate_params(params, cand, model_keys, train_keys)
        tdir = workdir / f"trial-{number}"
        settings = candidate_settings(tp)
        print(
            f"train: {name} trial {number}: " + ", ".join(f"{k} {v}" for k, v in settings.items() if k != "kind"),
            flush=True,
        )
        child = live.child(f"{name} trial {number}", settings, {"bigmodel.trial": str(number)}) if live else None
        try:
            result = fit_one(tp, splits, tdir, f"{key}-{name}-{number}", child, checkpoint=False)
        except BaseException:
            if child is not None:
                child.finish("FAILED")
            raise
        _finish_run(child, result)
        row = {
            "trial": number,
            "val_macro_f1": result["val_macro_f1"],
            "val_accuracy": result["val_accuracy"],
            "seconds": result["seconds"],
            "cpu_seconds": result["cpu_seconds"],
            "settings": settings,
        }
        trials.append({**row, "result": result})
        print(
            f"train: {name} trial {number}: val macro-F1 {result['val_macro_f1']:.4f}, {result['seconds']:.1f}s",
            flush=True,
        )
        # the best so far keeps its bundle (a tie keeps the earlier trial), and so does trial 0, the settings as written
        if best is None or round(result["val_macro_f1"], 9) > round(best["val_macro_f1"], 9):
            if best is not None and best["trial"] != 0:
                shutil.rmtree(workdir / f"trial-{best['trial']}", ignore_errors=True)
            best = {**result, "trial": number}
        elif number != 0:
            shutil.rmtree(tdir, ignore_errors=True)
        return float(result["val_macro_f1"])

    model_d, train_d = p.model.model_dump(), p.train.model_dump()
    study = search(
        p.model.kind,
        model_d,
        train_d,
        objective,
        trials=tune.trials,
        seconds=seconds,
        seed=params.train.seed,
        augmented=augmented,
    )
    assert best is not None
    index = {lab: i for i, lab in enumerate(splits[2])}
    val_y = splits[1]["label"].map(index).to_numpy(dtype=np.int64)
    kept = {0, best["trial"]}  # the trials whose bundles are still on disk: the settings as written, the best
    pick = choose_trial(
        [
            {"val_macro_f1": t["val_macro_f1"], "val_pred": t["result"]["val_pred"]}
            if t["trial"] in kept
            else {"val_macro_f1": -1.0, "val_pred": None}
            for t in trials
        ],
        val_y,
        len(index),
        params.model.selection,
    )
    chosen = trials[pick]
    shutil.rmtree(workdir / "bundle", ignore_errors=True)
    shutil.move(str(workdir / f"trial-{pick}" / "bundle"), str(workdir / "bundle"))
    for t in kept:
        shutil.rmtree(workdir / f"trial-{t}", ignore_errors=True)
    total = float(study.user_attrs.get("seconds", 0.0))
    note = (
        ""
        if pick == best["trial"]
        else f"; trial {best['trial']} ({best['val_macro_f1']:.4f}) is within one standard error of it"
    )
    print(
        f"train: {name}: {len(trials)} trial(s) in {total:.1f}s, keeping trial {pick} "
        f"(val macro-F1 {chosen['val_macro_f1']:.4f}{note})",
        flush=True,
    )
    return {
        **chosen["result"],
        "settings": chosen["settings"],
        "seconds": round(sum(t["seconds"] for t in trials), 3),
        "cpu_seconds": round(sum(t["cpu_seconds"] for t in trials), 3),
        "chosen_trial": pick,
        "trials": [{k: v for k, v in t.items() if k != "result"} for t in trials],
    }


# --------------------------------------------------------------------------- the stage
def select(params: Params, paths: Paths, key: str) -> dict:
    from bigmodel_core.stages.train_fit import copy_profile, read_train_val, reset_work_dir, write_csv
    from bigmodel_core.tracking.live import MlflowLive
    from bigmodel_core.training.select import RULE_SHORT, choose

    wall, cpu = time.perf_counter(), time.process_time()
    reset_work_dir(paths, key)
    splits = read_train_val(params, paths)
    train, val, labels = splits
    original = int((~train["is_augmented"]).sum())
    plan = _plan(params, original)
    auto = params.model.kind == "auto"
    print(
        f"train: {'candidates ' + ', '.join(n for n, _ in plan) if auto else params.model.kind + ' model'}; "
        f"{original} original train rows ({len(train) - original} augmented), {len(val)} validation rows, "
        f"{len(labels)} classes" + (f"; tuning: {_budget(params)}" if _tuning(params) else ""),
        flush=True,
    )

    run_file = paths.train_work / "mlflow_run.json"
    resume_id = json.loads(run_file.read_text())["run_id"] if run_file.exists() else None
    live = MlflowLive.open(params, paths.root, resume_id)
    if live is not None and live.owns_run:
        run_file.write_text(json.dumps({"run_id": live.run_id}) + "\n")

    results: list[dict] = []
    budget_end = (time.monotonic() + params.train.tune.minutes * 60) if params.train.tune.minutes else None
    with MlflowLive.closed_on_failure(live):
        for i, (name, cand) in enumerate(plan):
            workdir = paths.train_work / "candidates" / name
            done = workdir / "result.json"
            if done.exists() and (workdir / "bundle").is_dir():  # finished before the stage was stopped
                result = json.loads(done.read_text())
                print(f"train: {name}: done before, val macro-F1 {result['val_macro_f1']:.4f}", flush=True)
                results.append(result)
                continue
            seconds = None if budget_end is None else max(0.0, (budget_end - time.monotonic()) / (len(plan) - i))
            p = candidate_params(params, cand) if cand is not None else params
            if auto:
                print(f"train: candidate {i + 1} of {len(plan)}: {name} ({p.model.kind})", flush=True)
            run = live.child(name, candidate_settings(p), {"bigmodel.candidate": name}) if (auto and live) else live
            try:
                result = _candidate(
                    params,
                    name,
                    cand,
                    splits,
                    workdir,
                    f"{key}-{name}",
                    run,
                    seconds,
                    augmented=bool(train["is_augmented"].any()),
                )
            except BaseException as e:
                if run is not None and run is not live:
                    run.finish("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
                raise
            result.update(name=name, kind=p.model.kind)
            if auto:
                _finish_run(run, result, tags={"bigmodel.candidate": name})
            print(
                f"train: {name}: val macro-F1 {result['val_macro_f1']:.4f}, accuracy {result['val_accuracy']:.4f} "
                f"({result['seconds']:.1f}s, {result['cpu_seconds']:.1f} CPU s)",
                flush=True,
            )
            write_json(result, done)
            results.append(result)
        index = {lab: i for i, lab in enumerate(labels)}
        winner, why = choose(
            results, val["label"].map(index).to_numpy(dtype=np.int64), len(labels), params.model.selection
        )
    best = results[winner]
    if auto:
        print(f"train: chose {best['name']}: {why}", flush=True)

    # the choice is made: now the test split may be read, for the run's inputs
    if live is not None:
        try:
            from bigmodel_core.tracking.run_data import log_split_datasets

            log_split_datasets(live.client, live.run_id, paths.split)
        except Exception as e:
            print(f"train: could not log the split datasets to MLflow ({type(e).__name__}: {e})", flush=True)
    with atomic_dir(paths.model) as out:
        shutil.copytree(paths.train_work / "candidates" / best["name"] / "bundle", out, dirs_exist_ok=True)
        copy_profile(paths, out)
    table = [
        {
            "name": r["name"],
            "kind": r["kind"],
            "val_macro_f1": r["val_macro_f1"],
            "val_accuracy": r["val_accuracy"],
            "seconds": r["seconds"],
            "cpu_seconds": r["cpu_seconds"],
            "trials": len(r["trials"]) if r.get("trials") else None,
            "chosen": i == winner,
            "settings": r["settings"],
            **({"why": why} if i == winner and auto else {}),
            **({"chosen_trial": r["chosen_trial"], "search": r["trials"]} if r.get("trials") else {}),
        }
        for i, r in enumerate(results)
    ]
    metrics = {
        **best["metrics"],
        "model_kind": best["kind"],
        "chosen": best["name"] if auto else None,
        "val_accuracy": best["val_accuracy"],
        "val_macro_f1": best["val_macro_f1"],
        "val_loss": best["val_loss"],
        "val_rows": len(val),
        "candidates_trained": len(results),
        "seconds": round(time.perf_counter() - wall, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "mlflow_run_id": live.run_id if live is not None else None,
        "selection": (RULE_SHORT if params.model.selection == "one_se" else "best val macro-F1") if auto else None,
        "candidates": table,
        "history": best["history"],
    }
    write_json(metrics, paths.train_metrics)
    write_csv(
        paths.training_plot,
        best["history"],
        ["epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "tokens_per_second"],
    )
    write_csv(
        paths.training_steps_plot, best["steps"], ["step", "epoch", "loss", "lr", "grad_norm", "tokens_per_second"]
    )
    if live is not None:
        from bigmodel_core.tracking.pipeline_run import summary_metrics

        figures, sentence = summary_metrics(metrics)
        tags = {"bigmodel.summary": sentence, "bigmodel.model_kind": best["kind"]}
        if auto:
            tags.update({"bigmodel.chosen_candidate": best["name"], "bigmodel.choice": why})
            figures.update({f"candidate_{r['name']}_val_macro_f1": r["val_macro_f1"] for r in results})
        live.finish("FINISHED", figures, summary_step=best["metrics"].get("best_epoch") or 0, tags=tags)
    shutil.rmtree(paths.train_work, ignore_errors=True)
    return {k: v for k, v in metrics.items() if k not in ("history", "candidates")}


def _tuning(params: Params) -> bool:
    return params.train.tune.trials > 0 or params.train.tune.minutes is not None


def _budget(params: Params) -> str:
    t = params.train.tune
    parts = ([f"at most {t.trials} trial(s) per candidate"] if t.trials else []) + (
        [f"{t.minutes:g} minute(s) in all"] if t.minutes is not None else []
    )
    return " and ".join(parts)

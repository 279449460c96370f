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
from typing import Any

import numpy as np

from bigmodel_core.config import KIND_KEYS, Candidate, Params, candidate_names, candidate_params, default_candidates
from bigmodel_core.io import atomic_dir, write_json
from bigmodel_core.models.registry import kind_of
from bigmodel_core.paths import Paths

# train keys logged beside a candidate's model keys (the ones that differ between kinds and that tuning changes)
_TRAIN_KEYS = ("lr", "epochs", "batch_size", "weight_decay", "grad_clip", "warmup_fraction")


def _settings(p: Params) -> dict:
    """What a candidate is: its kind's model keys and, for the neural kinds, the main train keys."""
    out: dict[str, Any] = {"kind": p.model.kind}
    out.update({k: getattr(p.model, k) for k in KIND_KEYS[p.model.kind]})
    out["augmented_rows"] = _uses_augmented(p)
    if kind_of(p.model.kind).neural:
        out.update({k: getattr(p.train, k) for k in _TRAIN_KEYS})
    return out


def _uses_augmented(p: Params) -> bool:
    from bigmodel_core.training.select import uses_augmented

    return uses_augmented(p.model)


def _plan(params: Params, train_rows: int) -> list[tuple[str, Candidate | None]]:
    """[(name, candidate or None)]: None is the model section itself (a single kind: linear, or one being tuned)."""
    if params.model.kind != "auto":
        return [(params.model.kind, None)]
    from bigmodel_core.training.device import pick_device

    given = params.model.candidates
    cands = list(given) if given else default_candidates(train_rows, pick_device(params.train.device).type == "cuda")
    return list(zip(candidate_names(cands), cands, strict=True))


# --------------------------------------------------------------------------- one model
def _fit(p: Params, splits, workdir: Path, key: str, live, checkpoint: bool) -> dict:
    """Train one model of params `p` into workdir/bundle; returns its validation figures and train metrics."""
    from bigmodel_core.models.bundle import save_bundle

    train, val, labels = splits
    index = {lab: i for i, lab in enumerate(labels)}
    val_y = val["label"].map(index).to_numpy(dtype=np.int64)
    workdir.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    kind = kind_of(p.model.kind)
    if kind.fit is not None:  # fitted in one call (linear), not by the torch loop
        rows = train if _uses_augmented(p) else train[~train["is_augmented"]]
        linear = kind.fit(p, rows["text"].tolist(), rows["label"].tolist())
        save_bundle(workdir / "bundle", linear, None, labels, p.model, p.tokenizer, p.clean)
        metrics: dict[str, Any] = {
            "best_epoch": None,
            "epochs_run": 0,
            "stopped_early": False,
            "train_rows": len(rows),
            "parameters": linear.parameters,
            "vocab_size": linear.features,
            "steps": 0,
            "padding_efficiency": None,
            "tokens_per_second": None,
            "device": "cpu",
            "precision": "fp64",
            "processes": 1,
            "resumed_from_step": None,
        }
        history, steps = [], []
        if linear.min_df_used != p.model.min_df:
            print(f"train: min_df {p.model.min_df} left no n-gram; fitted with min_df 1", flush=True)
    else:
        from bigmodel_core.models import build_model
        from bigmodel_core.stages.train import _Console, load_prepared, prepare
        from bigmodel_core.training.batching import padding_efficiency, plan_batches
        from bigmodel_core.training.checkpoint import Checkpoints
        from bigmodel_core.training.loop import fit, seed_everything

        prepared = prepare(p, None, key, target=workdir / "prepared", splits=splits)
        encoder, labels, data = load_prepared(p, prepared)
        seed_everything(p.train.seed)
        model = build_model(p.model, encoder, labels, p.tokenizer.max_length)
        sequence = kind.sequence
        plan = plan_batches(data.train.lengths, p.train.batch_size, p.train.token_budget, p.train.seed, 1)
        pad_eff = padding_efficiency(data.train.lengths, plan, multiple=8) if sequence else None
        checkpoints = Checkpoints(workdir, key, p.train.checkpoint_every) if checkpoint else None
        callbacks = [_Console()] + ([live] if live is not None else [])
        model, result = fit(
            model,
            data,
            p.train,
            callbacks=callbacks,
            checkpoints=checkpoints,
            max_length=p.tokenizer.max_length if sequence else None,
        )
        save_bundle(workdir / "bundle", model, encoder, labels, p.model, p.tokenizer, p.clean)
        if checkpoints is not None:
            checkpoints.clear()
        shutil.rmtree(prepared, ignore_errors=True)
        metrics = {
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "train_rows": len(data.train),
            "parameters": sum(q.numel() for q in model.parameters()),
            "vocab_size": encoder.vocab_size,
            "steps": result.total_steps,
            "padding_efficiency": None if pad_eff is None else round(pad_eff, 4),
            "tokens_per_second": round(float(np.median([h["tokens_per_second"] for h in result.history])), 1)
            if result.history
            else None,
            "device": result.device,
            "precision": result.precision,
            "processes": 1,
            "resumed_from_step": result.resumed_from_step,
        }
        history, steps = result.history, result.steps
    # the validation figures of the bundle as saved, read back as it will be served: what the choice compares
    from bigmodel_core.models.bundle import Predictor
    from bigmodel_core.training.select import val_scores

    probs = Predictor(workdir / "bundle").predict_proba(val["text"].tolist(), clean=False)  # split text is clean
    val_m = val_scores(val_y, probs, len(labels))
    return {
        "val_accuracy": val_m["accuracy"],
        "val_macro_f1": val_m["macro_f1"],
        "val_loss": val_m["loss"],
        "val_pred": probs.argmax(1).tolist(),
        "seconds": round(time.perf_counter() - wall, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "metrics": metrics,
        "history": history,
        "steps": steps,
    }


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
        result = _fit(p, splits, workdir, key, live, checkpoint=True)
        return {**result, "settings": _settings(p), "trials": None}

    from bigmodel_core.training.select import choose_trial
    from bigmodel_core.training.tune import search

    trials: list[dict] = []  # in trial order (Optuna numbers them 0, 1, ...)
    best: dict | None = None

    def objective(number: int, model_keys: dict, train_keys: dict) -> float:
        nonlocal best
        tp = candidate_params(params, cand, model_keys, train_keys)
        tdir = workdir / f"trial-{number}"
        settings = _settings(tp)
        print(
            f"train: {name} trial {number}: " + ", ".join(f"{k} {v}" for k, v in settings.items() if k != "kind"),
            flush=True,
        )
        child = live.child(f"{name} trial {number}", settings, {"bigmodel.trial": str(number)}) if live else None
        try:
            result = _fit(tp, splits, tdir, f"{key}-{name}-{number}", child, checkpoint=False)
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
    from bigmodel_core.stages.train import _copy_profile, _reset_work_dir, _write_csv, read_train_val
    from bigmodel_core.tracking.live import MlflowLive
    from bigmodel_core.training.select import RULE_SHORT, choose

    wall, cpu = time.perf_counter(), time.process_time()
    _reset_work_dir(paths, key)
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
    try:
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
            run = live.child(name, _settings(p), {"bigmodel.candidate": name}) if (auto and live) else live
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
    except BaseException as e:
        if live is not None:
            killed = isinstance(e, KeyboardInterrupt)
            live.finish(
                "KILLED" if killed else "FAILED",
                reason="training interrupted" if killed else f"train: {type(e).__name__}: {e}",
            )
        raise
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
        _copy_profile(paths, out)
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
    _write_csv(
        paths.training_plot,
        best["history"],
        ["epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "tokens_per_second"],
    )
    _write_csv(
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

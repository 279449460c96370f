"""One model trained on the split: the train and validation rows read, encoded once per fingerprint (prepared),
trained by the loop (or fitted, for a fitted kind) into a bundle, with its validation figures; shared by the train
stage (one kind) and train_select (auto, tuning)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_core import modalities
from bigmodel_core.config import (
    KIND_KEYS,
    Params,
)
from bigmodel_core.io import atomic_dir, atomic_path, read_table, shown
from bigmodel_core.models.registry import kind_of
from bigmodel_core.paths import Paths


def class_labels(params: Params, train_labels) -> list[str]:
    return list(params.data.labels) if params.data.labels is not None else sorted(set(train_labels))


# --------------------------------------------------------------------------- encoded data, cached
def copy_profile(paths: Paths, bundle: Path) -> None:
    """Put the profile of the rows this model was made from into its bundle: validate's profile of the rows it
    passed (data/profile.json), which are every split's rows without augmented variants, so a later validate
    compares like with like."""
    import shutil

    from bigmodel_core.models.bundle import PROFILE_FILE

    if not paths.data_profile.is_file():
        from bigmodel_core.errors import DataError

        raise DataError(f"{shown(paths.data_profile)}: not found (run the stage that makes it first: validate)")
    shutil.copyfile(paths.data_profile, bundle / PROFILE_FILE)


def read_train_val(params: Params, paths: Paths):
    """The train and validation splits and the label list (the test split is not read here)."""
    schemas = modalities.get(params.data.modality).schemas
    train = read_table(paths.split / "train.parquet", schemas.SPLIT)
    val = read_table(paths.split / "val.parquet", schemas.SPLIT)
    labels = class_labels(params, train["label"])
    unknown = sorted(set(val["label"]) - set(labels))
    if unknown:
        from bigmodel_core.errors import DataError

        raise DataError(f"{shown(paths.split / 'val.parquet')}: labels {unknown} are not in the label set {labels}")
    return train, val, labels


def prepare(params: Params, paths: Paths | None, key: str, target: Path | None = None, splits=None) -> Path:
    """Encode train/val once per fingerprint into .bigmodel/train/prepared (reused by resumes and DDP ranks), or
    into `target` from `splits` (train, val, labels) already read (a candidate of model.kind auto; paths None)."""
    from bigmodel_core.models.registry import build_encoder
    from bigmodel_core.training.select import uses_augmented

    if target is None:
        if paths is None:
            raise ValueError("prepare: needs paths or a target")
        target = paths.train_work / "prepared"
    if (target / "fingerprint").exists() and (target / "fingerprint").read_text().strip() == key:
        return target
    if splits is None:
        if paths is None:
            raise ValueError("prepare: needs paths or the splits")
        splits = read_train_val(params, paths)
    train, val, labels = splits
    if not uses_augmented(params.model):
        train = train[~train["is_augmented"]]
    index = {lab: i for i, lab in enumerate(labels)}
    modality = modalities.get(params.data.modality)
    encoder = build_encoder(params.model, params.tokenizer, modality.values(train))
    with atomic_dir(target) as out:
        encoder.save(out)
        encoder.encode(modality.values(train)).save(out / "train.npz")
        encoder.encode(modality.values(val)).save(out / "val.npz")
        np.save(out / "train_y.npy", train["label"].map(index).to_numpy(dtype=np.int64))
        np.save(out / "val_y.npy", val["label"].map(index).to_numpy(dtype=np.int64))
        (out / "labels.json").write_text(json.dumps(labels) + "\n")
        (out / "fingerprint").write_text(key + "\n")
    return target


def load_prepared(params: Params, prepared: Path):
    from bigmodel_core.models.registry import load_encoder
    from bigmodel_core.training.batching import Ragged
    from bigmodel_core.training.loop import TrainData

    encoder = load_encoder(prepared, params.model, params.tokenizer)
    labels = json.loads((prepared / "labels.json").read_text())
    data = TrainData(
        train=Ragged.load(prepared / "train.npz"),
        train_y=np.load(prepared / "train_y.npy"),
        val=Ragged.load(prepared / "val.npz"),
        val_y=np.load(prepared / "val_y.npy"),
        num_classes=len(labels),
        collate=encoder.collate,
    )
    return encoder, labels, data


# --------------------------------------------------------------------------- the stage
class Console:
    """Epoch lines on stdout (the flow shows lines starting with 'epoch ' on its console)."""

    def on_step(self, step: int, metrics: dict) -> None:
        pass

    def on_epoch(self, epoch: int, row: dict) -> None:
        print(
            f"epoch {epoch}: train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
            f"val_acc {row['val_accuracy']:.4f}  val_macro_f1 {row['val_macro_f1']:.4f}  "
            f"({row['tokens_per_second']:.0f} tokens/s, {row['seconds']:.1f}s)",
            flush=True,
        )


def reset_work_dir(paths: Paths, key: str) -> None:
    """Drop encoded data and checkpoints that belong to another fingerprint."""
    import shutil

    marker = paths.train_work / "fingerprint"
    if paths.train_work.exists() and (not marker.exists() or marker.read_text().strip() != key):
        if (paths.train_work / "checkpoint.pt").exists():
            print("train: discarding the checkpoint of an earlier run (params, data or code changed)", flush=True)
        shutil.rmtree(paths.train_work, ignore_errors=True)
    paths.train_work.mkdir(parents=True, exist_ok=True)
    marker.write_text(key + "\n")


def write_csv(target: Path, rows: list[dict], cols: list[str]) -> None:
    def fmt(v) -> str:
        return str(v) if isinstance(v, int) else f"{v:.6g}"

    with atomic_path(target) as tmp:
        tmp.write_text("\n".join([",".join(cols)] + [",".join(fmt(r[c]) for c in cols) for r in rows]) + "\n")


# train keys logged beside a candidate's model keys (the ones that differ between kinds and that tuning changes)
TRAIN_KEYS = ("lr", "epochs", "batch_size", "weight_decay", "grad_clip", "warmup_fraction")


def candidate_settings(p: Params) -> dict:
    """What a candidate is: its kind's model keys and, for the neural kinds, the main train keys."""
    out: dict[str, Any] = {"kind": p.model.kind}
    out.update({k: getattr(p.model, k) for k in KIND_KEYS[p.model.kind]})
    out["augmented_rows"] = uses_augmented_rows(p)
    if kind_of(p.model.kind).neural:
        out.update({k: getattr(p.train, k) for k in TRAIN_KEYS})
    return out


def uses_augmented_rows(p: Params) -> bool:
    from bigmodel_core.training.select import uses_augmented

    return uses_augmented(p.model)


def loop_metrics(result, train_rows: int, model, encoder, pad_eff: float | None, processes: int) -> dict[str, Any]:
    """The figures of one model trained by the torch loop, as train's metrics file and the candidates' results
    record them."""
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "train_rows": train_rows,
        "parameters": sum(q.numel() for q in model.parameters()),
        "vocab_size": encoder.vocab_size,
        "steps": result.total_steps,
        "padding_efficiency": None if pad_eff is None else round(pad_eff, 4),
        "tokens_per_second": round(float(np.median([h["tokens_per_second"] for h in result.history])), 1)
        if result.history
        else None,
        "device": result.device,
        "precision": result.precision,
        "processes": processes,
        "resumed_from_step": result.resumed_from_step,
    }


# --------------------------------------------------------------------------- one model
def fit_one(p: Params, splits, workdir: Path, key: str, live, checkpoint: bool) -> dict:
    """Train one model of params `p` into workdir/bundle; returns its validation figures and train metrics."""
    from bigmodel_core.models.bundle import save_bundle

    train, val, labels = splits
    modality = modalities.get(p.data.modality)
    index = {lab: i for i, lab in enumerate(labels)}
    val_y = val["label"].map(index).to_numpy(dtype=np.int64)
    workdir.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    kind = kind_of(p.model.kind)
    if kind.fit is not None:  # fitted in one call (linear), not by the torch loop
        rows = train if uses_augmented_rows(p) else train[~train["is_augmented"]]
        linear = kind.fit(p, modality.values(rows), rows["label"].tolist())
        save_bundle(workdir / "bundle", linear, None, labels, p.model, p.tokenizer, p.clean, modality=modality.name)
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
        callbacks = [Console()] + ([live] if live is not None else [])
        model, result = fit(
            model,
            data,
            p.train,
            callbacks=callbacks,
            checkpoints=checkpoints,
            max_length=p.tokenizer.max_length if sequence else None,
        )
        save_bundle(workdir / "bundle", model, encoder, labels, p.model, p.tokenizer, p.clean, modality=modality.name)
        if checkpoints is not None:
            checkpoints.clear()
        shutil.rmtree(prepared, ignore_errors=True)
        metrics = loop_metrics(result, len(data.train), model, encoder, pad_eff, processes=1)
        history, steps = result.history, result.steps
    # the validation figures of the bundle as saved, read back as it will be served: what the choice compares
    from bigmodel_core.models.bundle import Predictor
    from bigmodel_core.training.select import val_scores

    probs = Predictor(workdir / "bundle").predict_proba(modality.values(val), clean=False)  # split rows are clean
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

"""train: encode the splits, fit the model (resuming a crashed run), keep the best epoch.

    bigmodel stage train          # what dvc.yaml runs; with train.nproc > 1 it starts itself under torchrun

model.kind auto and linear, and tuning (train.tune), go through stages/train_select.py; what follows is one
neural model. The encoder is fitted on the train split only (subword tokenizer), or is fixed (hashed n-grams, the
backbone's tokenizer). Encoded data and checkpoints live in .bigmodel/train/ (not a DVC output),
keyed by a fingerprint of params, data and code; they are removed when the stage succeeds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bigmodel_core.config import TEXT_ROW_RULES, Params
from bigmodel_core.errors import BigmodelError
from bigmodel_core.io import atomic_dir, read_json, sha256_file, write_json
from bigmodel_core.models.registry import kind_of
from bigmodel_core.paths import Paths
from bigmodel_core.stages.spec import Out, StageSpec, metric, param_value, plot
from bigmodel_core.stages.train_fit import (
    Console,
    copy_profile,
    load_prepared,
    loop_metrics,
    prepare,
    reset_work_dir,
    write_csv,
)

# the code whose change makes an old checkpoint meaningless
CODE_DIRS = ("training", "models", "text")
#: The train keys the result depends on: all but log_every, which only sets how often progress is reported.
TRAIN_KEYS = (
    "epochs",
    "batch_size",
    "token_budget",
    "grad_accum",
    "lr",
    "weight_decay",
    "warmup_fraction",
    "schedule",
    "grad_clip",
    "label_smoothing",
    "class_weights",
    "patience",
    "max_steps",
    "seed",
    "device",
    "precision",
    "compile",
    "num_threads",
    "nproc",
    "checkpoint_every",
    "tune",
)


def tuning(params: Params) -> bool:
    return params.train.tune.trials > 0 or params.train.tune.minutes is not None


def fingerprint(params: Params, paths: Paths) -> str:
    """What the training result depends on: its params, the train/val split files and the training code."""
    import bigmodel_core

    pkg = Path(bigmodel_core.__file__).parent
    code = hashlib.sha256()
    for path in sorted(
        [pkg / "stages/train.py", pkg / "stages/train_select.py"]
        + [f for d in CODE_DIRS for f in (pkg / d).glob("*.py")]
    ):
        code.update(path.name.encode() + path.read_bytes())
    doc = {
        "params": {key: param_value(params, key) for key in SPEC.params},  # what dvc.yaml declares for train
        "code": code.hexdigest(),
        "version": bigmodel_core.__version__,
        "data": {s: sha256_file(paths.split / f"{s}.parquet") for s in ("train", "val")},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


SPEC = StageSpec(
    inputs=("split", "data_profile"),
    # the text rules of validate go into the bundle (what serving refuses), so their settings are read here too
    params=(
        "data.labels",
        "data.modality",
        "clean",
        "tokenizer",
        "model",
        *(f"train.{k}" for k in TRAIN_KEYS),
        *(f"validate.rules.{r}" for r in TEXT_ROW_RULES),
    ),
    bookkeeping=(
        "train.log_every",
        "tracking.uri",
        "tracking.experiment",
        "tracking.artifact_root",
        "deploy.model_name",
    ),
    outs=(
        Out("model"),
        metric("train_metrics"),
        plot("training_plot", x="epoch", y="val_macro_f1"),
        plot("training_steps_plot", x="step", y="loss"),
    ),
)


def run(params: Params, paths: Paths) -> dict:
    from bigmodel_core.training import distributed
    from bigmodel_core.training.distributed import DistInfo

    dist = DistInfo.from_env()
    key = fingerprint(params, paths)
    if params.model.kind == "auto" or not kind_of(params.model.kind).neural or tuning(params):
        from bigmodel_core.stages.train_select import select

        return select(params, paths, key)
    if params.train.nproc > 1 and not dist.enabled:
        return _launch_ranks(params, paths, key)
    try:
        return _train(params, paths, key, dist)
    except BigmodelError as e:
        if dist.enabled:  # torchrun turns every rank's exit code into 1: leave ours for the launcher
            failure = paths.train_work / f"failed-rank{dist.rank}.json"
            failure.write_text(json.dumps({"rank": dist.rank, "exit_code": e.exit_code, "message": str(e)}) + "\n")
        raise
    finally:
        distributed.shutdown()


def _launch_ranks(params: Params, paths: Paths, key: str) -> dict:
    """Encode once here, then start this stage on train.nproc ranks under torchrun and wait for them."""
    from bigmodel_core.training.distributed import launch

    reset_work_dir(paths, key)
    prepare(params, paths, key)
    n = params.train.nproc
    print(f"train: starting {n} processes with torchrun (DDP)", flush=True)
    params_file = paths.train_work / "params.yaml"  # the ranks read exactly the params validated here
    import yaml

    params_file.write_text(yaml.safe_dump(params.as_dict(), sort_keys=False))
    for stale in paths.train_work.glob("failed-rank*.json"):
        stale.unlink()
    code = launch(n, ["bigmodel_core.cli", "stage", "train", "--params", str(params_file)], cwd=str(paths.root))
    if code != 0:
        failures = sorted(
            (json.loads(f.read_text()) for f in paths.train_work.glob("failed-rank*.json")), key=lambda f: f["rank"]
        )
        if failures:  # the first rank's own error and exit code (2: change params; not worth a retry)
            err = BigmodelError(f"rank {failures[0]['rank']} of {n}: {failures[0]['message']}")
            err.exit_code = failures[0]["exit_code"]
            raise err
        raise BigmodelError(f"distributed training failed: torchrun exited with {code} (the ranks' errors are above)")
    metrics = read_json(paths.train_metrics)
    return {k: v for k, v in metrics.items() if k != "history"}


def _train(params: Params, paths: Paths, key: str, dist) -> dict:
    from bigmodel_core.models import build_model
    from bigmodel_core.models.bundle import save_bundle
    from bigmodel_core.tracking.live import MlflowLive
    from bigmodel_core.training import distributed
    from bigmodel_core.training.batching import padding_efficiency, plan_batches
    from bigmodel_core.training.checkpoint import Checkpoints
    from bigmodel_core.training.device import pick_device
    from bigmodel_core.training.loop import fit, seed_everything

    p = params.train
    if dist.is_main:
        reset_work_dir(paths, key)
        prepare(params, paths, key)
    distributed.init(dist, pick_device(p.device, dist.local_rank).type)
    distributed.barrier(dist)  # the other ranks wait for rank 0's encoding
    encoder, labels, data = load_prepared(params, paths.train_work / "prepared")
    seed_everything(p.seed)  # the initial weights come from the seed
    model = build_model(params.model, encoder, labels, params.tokenizer.max_length)
    n_params = sum(q.numel() for q in model.parameters())
    sequence = kind_of(params.model.kind).sequence
    plan = plan_batches(data.train.lengths, p.batch_size, p.token_budget, p.seed, 1)
    pad_eff = padding_efficiency(data.train.lengths, plan, multiple=8) if sequence else None
    live = None
    run_file = paths.train_work / "mlflow_run.json"
    if dist.is_main:
        print(
            f"train: {params.model.kind} model, {n_params:,} parameters; {len(data.train)} train rows, "
            f"{len(data.val)} val rows, {len(labels)} classes; vocabulary {encoder.vocab_size:,}"
            + (f"; padding efficiency {pad_eff:.3f}" if pad_eff is not None else ""),
            flush=True,
        )
        from bigmodel_core.tracking.run_data import log_split_datasets

        # the MLflow run the checkpoint's training logged into, if any; a run of its own (plain `dvc repro`) is
        # continued, a flow's run is not (the flow that owned it has ended)
        wrote = json.loads(run_file.read_text()) if run_file.exists() else None
        live = MlflowLive.open(params, paths.root, wrote["run_id"] if wrote and wrote.get("owned", True) else None)
        if live is not None:
            live.resumed_from = wrote["run_id"] if wrote else None  # a resumed checkpoint's epochs are logged again
            run_file.write_text(json.dumps({"run_id": live.run_id, "owned": live.owns_run}) + "\n")
            try:
                log_split_datasets(live.client, live.run_id, paths.split)
            except Exception as e:
                print(f"train: could not log the split datasets to MLflow ({type(e).__name__}: {e})", flush=True)
    checkpoints = Checkpoints(paths.train_work, key, p.checkpoint_every)
    callbacks = [Console()] + ([live] if live is not None else [])
    with MlflowLive.closed_on_failure(live):
        model, result = fit(
            model,
            data,
            p,
            callbacks=callbacks,
            checkpoints=checkpoints,
            dist=dist,
            max_length=params.tokenizer.max_length if sequence else None,
        )
        if not dist.is_main:
            distributed.barrier(dist)
            return {}
        # a failure from here on (models/ not writable, a full disk) leaves the checkpoint of the finished training
        # (train.checkpoint_every > 0): the next attempt writes the model from it without training again
        with atomic_dir(paths.model) as out:
            save_bundle(
                out,
                model,
                encoder,
                labels,
                params.model,
                params.tokenizer,
                params.clean,
                params.validate,
                modality=params.data.modality,
            )
            copy_profile(paths, out)  # what the next run's data is compared with
    metrics = {
        **loop_metrics(result, len(data.train), model, encoder, pad_eff, dist.world),
        "val_accuracy": result.best_val.get("accuracy"),
        "val_macro_f1": result.best_val.get("macro_f1"),
        "val_loss": result.best_val.get("loss"),
        "seconds": round(result.seconds, 3),
        "mlflow_run_id": live.run_id if live is not None else None,
        "history": result.history,
    }
    write_json(metrics, paths.train_metrics)
    write_csv(
        paths.training_plot,
        result.history,
        ["epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "tokens_per_second"],
    )
    write_csv(
        paths.training_steps_plot, result.steps, ["step", "epoch", "loss", "lr", "grad_norm", "tokens_per_second"]
    )
    if live is not None:
        from bigmodel_core.tracking.pipeline_run import summary_metrics

        figures, sentence = summary_metrics(metrics)
        live.finish("FINISHED", figures, summary_step=result.best_epoch, tags={"bigmodel.summary": sentence})
    checkpoints.clear()
    import shutil

    shutil.rmtree(paths.train_work, ignore_errors=True)  # done: no checkpoint or encoded data left to resume from
    distributed.barrier(dist)
    return {k: v for k, v in metrics.items() if k != "history"}

"""train: the training loop and tuning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bigmodel_core.config.base import _Section


class TuneParams(_Section):
    trials: int = Field(
        default=0,
        ge=0,
        description="Most Optuna trials per candidate (each trains a model on the train split and scores it on the "
        "validation split); the first trial is the candidate's settings as written. 0 and minutes null: no tuning.",
    )
    minutes: float | None = Field(
        default=None,
        gt=0,
        description="Wall-clock budget of all tuning, shared by the candidates (cheapest first; each gets an equal "
        "share of what is left). A time budget makes the number of trials depend on the machine's speed: set trials "
        "alone for a choice that a rerun repeats.",
    )


class TrainParams(_Section):
    epochs: int = Field(default=4, ge=1, description="Passes over the training split.")
    batch_size: int = Field(default=32, ge=1, description="Rows per micro-batch (all processes together).")
    token_budget: int = Field(
        default=0,
        ge=0,
        description="If > 0, micro-batches are cut by size instead: rows x longest row <= token_budget (batch_size "
        "is then ignored).",
    )
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches per optimizer step (gradient accumulation).")
    lr: float = Field(
        default=1e-3, gt=0, description="Peak learning rate (AdamW; SparseAdam for the bag's n-gram table)."
    )
    weight_decay: float = Field(
        default=0.01, ge=0, description="AdamW weight decay (not applied to embeddings, norms, biases)."
    )
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1, description="Share of optimizer steps with linear warm-up.")
    schedule: Literal["linear", "cosine", "constant"] = Field(
        default="linear", description="Learning-rate decay after warm-up: linear or cosine to zero, or constant."
    )
    grad_clip: float = Field(default=1.0, ge=0, description="Clip the gradient norm to this (0 = off).")
    label_smoothing: float = Field(default=0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    class_weights: Literal["none", "balanced"] = Field(
        default="none", description="balanced: weigh each class by n_rows / (n_classes * class_rows) in the loss."
    )
    patience: int = Field(
        default=2, ge=0, description="Stop after this many epochs without a better val macro-F1 (0 = off)."
    )
    max_steps: int = Field(default=0, ge=0, description="Stop after this many optimizer steps (0 = run every epoch).")
    seed: int = Field(default=42, description="Seed for weights, batch order and dropout.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto", description="auto = cuda when available, else cpu."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto = bf16 autocast on CUDA, fp32 elsewhere."
    )
    compile: bool = Field(default=False, description="torch.compile the model (CUDA only; ignored on CPU).")
    num_threads: int = Field(default=0, ge=0, description="CPU threads for torch (0 = torch's default).")
    nproc: int = Field(
        default=1,
        ge=1,
        description="Processes for data-parallel training (DDP; one per GPU, or gloo on CPU). >1: the train stage "
        "launches torchrun itself.",
    )
    log_every: int = Field(
        default=50, ge=1, description="Report loss, lr, grad norm and tokens/s every this many steps."
    )
    checkpoint_every: int = Field(
        default=500,
        ge=0,
        description="Save a resumable checkpoint every this many optimizer steps and at each epoch end "
        "(0 = no checkpoints: for runs of seconds, where writing them costs more than redoing the work).",
    )
    tune: TuneParams = Field(
        default_factory=TuneParams,
        description="Search each candidate's main settings on the validation split with Optuna (TPE, seeded by "
        "train.seed); off by default.",
    )

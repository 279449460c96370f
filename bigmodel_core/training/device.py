"""Device and precision from params ('auto' picks CUDA and bf16 when available)."""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    from bigmodel_core.errors import ConfigError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda", local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device: 'mps' requested but torch sees no MPS device")
    return torch.device(name)


def configure_backends(device: torch.device) -> None:
    """TF32 for the fp32 matmuls that remain under bf16 autocast (and all of them in fp32 mode)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def uses_bf16(device: torch.device, precision: str) -> bool:
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, precision: str):
    if uses_bf16(device, precision) and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device: torch.device, precision: str) -> str:
    return "bf16" if uses_bf16(device, precision) else "fp32"

"""Device and precision from params ('auto' picks CUDA and bf16 when available)."""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from bigmodel_core.errors import ConfigError

        raise ConfigError("train.device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device: torch.device, precision: str) -> str:
    return "bf16" if precision == "bf16" or (precision == "auto" and device.type == "cuda") else "fp32"

"""Torch modules for images and feature vectors (groundwork: not yet a `model.kind` of the registry).

Inputs come as the tables store them: images as uint8 (batch, height, width, channels), vectors as float32
(batch, features). Each module keeps its input scaling as buffers (per-channel mean and std for images, per
feature for vectors), fitted on the train split before training (`fit_scaling`), so the saved state dict
carries them and a served model scales exactly as training did.

Two classes can use one output unit (`binary_head=True`, the seed's `Dense(1, sigmoid)`): its logit z is
returned as the pair (0, z), whose softmax is (1 - sigmoid(z), sigmoid(z)); cross-entropy on that pair is the
binary cross-entropy of sigmoid(z), so the training loop and metrics stay the same for every head.

On CPU with one OpenMP thread (OMP_NUM_THREADS=1), torch 2.13's oneDNN corrupts the heap in the ResNet's backward
(glibc: "double free or corruption"; the process aborts); with oneDNN off (torch.backends.mkldnn) it does not.
tests/test_vision_models.py trains with oneDNN off on CPU for that reason; a stage that trains these modules must
settle it first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class _Head(nn.Module):
    def __init__(self, inputs: int, num_classes: int, binary_head: bool) -> None:
        super().__init__()
        if binary_head and num_classes != 2:
            raise ValueError(f"a binary head needs 2 classes, not {num_classes}")
        self.binary = binary_head
        self.linear = nn.Linear(inputs, 1 if binary_head else num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return torch.cat([torch.zeros_like(z), z], dim=1) if self.binary else z


class _Scaled(nn.Module):
    """Holds the input's mean and std as buffers (saved with the weights) and applies them."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def fit_scaling(self, x: np.ndarray, axis: tuple[int, ...]) -> None:
        """Mean and std of the train inputs `x` over `axis` (a constant input gets std 1: it is only centred)."""
        values = x.astype(np.float64) / (255.0 if x.dtype == np.uint8 else 1.0)
        std = values.std(axis=axis)
        self.mean.copy_(torch.as_tensor(values.mean(axis=axis), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.where(std > 0, std, 1.0), dtype=torch.float32))


class MLPClassifier(_Scaled):
    """Dense layers with ReLU on flattened inputs (images or vectors); `hidden=(128,)` with a binary head is
    the seed's `Dense(128, relu) -> Dense(1, sigmoid)` on 784 inputs."""

    def __init__(
        self, inputs: int, num_classes: int, hidden: Sequence[int] = (128,), dropout: float = 0.0, binary_head=False
    ) -> None:
        super().__init__(inputs)
        layers: list[nn.Module] = []
        width = inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            width = h
        self.body = nn.Sequential(*layers)
        self.head = _Head(width, num_classes, binary_head)

    def fit_scaling(self, x: np.ndarray, axis: tuple[int, ...] = (0,)) -> None:
        super().fit_scaling(x.reshape(len(x), -1), axis)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs.reshape(len(inputs), -1).float()
        if inputs.dtype == torch.uint8:
            x = x / 255.0
        return self.head(self.body((x - self.mean) / self.std))


def _pixels(module: _Scaled, images: torch.Tensor) -> torch.Tensor:
    """uint8 (batch, height, width, channels) to scaled float (batch, channels, height, width); on CUDA
    channels-last in memory, the layout its convolutions run fastest in with bf16."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    x = (x - module.mean.view(1, -1, 1, 1)) / module.std.view(1, -1, 1, 1)
    return x.contiguous(memory_format=torch.channels_last if x.is_cuda else torch.contiguous_format)


class LeNetClassifier(_Scaled):
    """LeNet-5's shape (two convolution and pooling stages, then dense layers) with widths from params:
    conv(widths[0], 5x5, same) -> pool -> conv(widths[1], 5x5, same) -> pool -> dense(hidden) -> classes."""

    def __init__(
        self,
        height: int,
        width: int,
        channels: int,
        num_classes: int,
        widths: tuple[int, int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.25,
        binary_head: bool = False,
    ) -> None:
        super().__init__(channels)
        a, b = widths
        self.features = nn.Sequential(
            nn.Conv2d(channels, a, 5, padding=2),
            nn.BatchNorm2d(a),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(a, b, 5, padding=2),
            nn.BatchNorm2d(b),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = b * (height // 4) * (width // 4)
        self.dense = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU())
        self.head = _Head(hidden, num_classes, binary_head)

    def fit_scaling(self, x: np.ndarray, axis: tuple[int, ...] = (0, 1, 2)) -> None:
        super().fit_scaling(x, axis)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.dense(self.features(_pixels(self, pixels))))


class _Block(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.skip = (
            nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs))
            if stride != 1 or inputs != outputs
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ResNetClassifier(_Scaled):
    """A small residual network: a 3x3 stem, then per entry of `widths` `blocks` basic blocks (the first of each
    stage after the first halves the resolution), global average pooling, the head."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 128),
        blocks: int = 1,
        binary_head: bool = False,
    ) -> None:
        super().__init__(channels)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages: list[nn.Module] = []
        width = widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks):
                stages.append(_Block(width, w, 2 if (i > 0 and j == 0) else 1))
                width = w
        self.stages = nn.Sequential(*stages)
        self.head = _Head(width, num_classes, binary_head)

    def fit_scaling(self, x: np.ndarray, axis: tuple[int, ...] = (0, 1, 2)) -> None:
        super().fit_scaling(x, axis)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(_pixels(self, pixels)))
        return self.head(x.mean(dim=(2, 3)))

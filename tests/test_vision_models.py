"""The image and vector modules: shapes, the seed MLP's size, the binary head's loss, scaling kept in the weights,
and each one learning a task a glance solves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigmodel_core.models.vision import LeNetClassifier, MLPClassifier, ResNetClassifier


def _halves(n: int = 48, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images bright on the left (class 0) or on the right (class 1), with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 60, size=(n, size, size, 1)).astype(np.uint8)
    for i, side in enumerate(y):
        x[i, :, side * (size // 2) : (side + 1) * (size // 2)] += 150
    return x, y


def test_the_seed_mlp_has_the_seed_architecture():
    model = MLPClassifier(784, 2, hidden=(128,), binary_head=True)
    assert sum(p.numel() for p in model.parameters()) == 784 * 128 + 128 + 128 * 1 + 1
    out = model(torch.zeros(5, 28, 28, 1, dtype=torch.uint8))
    assert out.shape == (5, 2) and torch.all(out[:, 0] == 0)
    with pytest.raises(ValueError, match="a binary head needs 2 classes, not 10"):
        MLPClassifier(784, 10, binary_head=True)


def test_cross_entropy_on_the_binary_head_is_binary_cross_entropy():
    z = torch.tensor([[-2.0], [0.3], [4.0]])
    y = torch.tensor([0, 1, 1])
    pair = torch.cat([torch.zeros_like(z), z], dim=1)
    ce = F.cross_entropy(pair, y, reduction="none")
    bce = F.binary_cross_entropy_with_logits(z[:, 0], y.float(), reduction="none")
    assert torch.allclose(ce, bce, atol=1e-6)


def test_scaling_is_fitted_on_train_and_travels_in_the_state_dict():
    x, _ = _halves()
    model = LeNetClassifier(8, 8, 1, 2, widths=(4, 8), hidden=16)
    model.fit_scaling(x)
    values = x / 255.0
    assert model.mean.item() == pytest.approx(values.mean(), rel=1e-6)
    assert model.std.item() == pytest.approx(values.std(), rel=1e-5)
    copy = LeNetClassifier(8, 8, 1, 2, widths=(4, 8), hidden=16)
    copy.load_state_dict(model.state_dict())
    model.eval(), copy.eval()
    batch = torch.as_tensor(x[:8])
    assert torch.equal(model(batch), copy(batch))
    vectors = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    mlp = MLPClassifier(2, 2)
    mlp.fit_scaling(vectors)
    assert mlp.mean.tolist() == [2.0, 5.0] and mlp.std.tolist() == [1.0, 1.0]  # constant feature: std 1


@pytest.mark.parametrize(
    "build",
    [
        lambda: MLPClassifier(64, 2, hidden=(32,)),
        lambda: MLPClassifier(64, 2, hidden=(32,), binary_head=True),
        lambda: LeNetClassifier(8, 8, 1, 2, widths=(4, 8), hidden=16),
        lambda: ResNetClassifier(1, 2, widths=(4, 8), blocks=1),
    ],
    ids=["mlp", "mlp-binary", "lenet", "resnet"],
)
def test_each_module_learns_which_half_is_bright(build):
    # oneDNN off: with one OpenMP thread (the suite sets OMP_NUM_THREADS=1) torch 2.13's oneDNN corrupts the heap
    # in the ResNet's backward and the process aborts (models/vision.py says so)
    with torch.backends.mkldnn.flags(enabled=False):
        _learns(build)


def _learns(build) -> None:
    torch.manual_seed(0)
    x, y = _halves()
    model = build()
    model.fit_scaling(x)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xb, yb = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(25):
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    test_x, test_y = _halves(seed=1)
    with torch.no_grad():
        accuracy = (model(torch.as_tensor(test_x)).argmax(1).numpy() == test_y).mean()
    assert accuracy >= 0.95


def test_resnet_halves_the_resolution_per_stage_and_pools():
    with torch.backends.mkldnn.flags(enabled=False):  # see test_each_module_learns_which_half_is_bright
        model = ResNetClassifier(3, 10, widths=(4, 8, 16), blocks=2)
        assert len(model.stages) == 6
        assert model(torch.zeros(2, 28, 28, 3, dtype=torch.uint8)).shape == (2, 10)
        assert model.stages[2].conv1.stride == (2, 2) and model.stages[1].conv1.stride == (1, 1)

"""The training path on a bare machine, the CUDA-path switches as seen from a CPU, and old bundles."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from bigmodel_core.config import ModelParams, TokenizerParams, TrainParams
from bigmodel_core.training.device import autocast, pick_device, precision_name
from bigmodel_core.training.loop import fit
from tests.conftest import REPO
from tests.test_training import params, toy_data, toy_model

BLOCKED = ("mlflow", "prefect", "dvc", "pandera", "sklearn", "yaml", "tqdm", "matplotlib", "fsspec", "typer")

BARE = f"""
import importlib.machinery, sys
class Refuse:
    def create_module(self, spec):
        raise ImportError(f'{{spec.name}} is not installed on a bare machine')
    def exec_module(self, module):
        pass
class Block:  # the packages look installed (torch probes some), but importing one fails
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            return importlib.machinery.ModuleSpec(name, Refuse())
sys.meta_path.insert(0, Block())
from tests.test_training import toy_data, toy_model, params
from bigmodel_core.training.loop import fit
from bigmodel_core.text.encoders import SubwordEncoder
from bigmodel_core.config import TokenizerParams
enc = SubwordEncoder.train(['a b c', 'b c d'] * 20, TokenizerParams(vocab_size=100, min_frequency=1))
m, r = fit(toy_model(), toy_data(), params(epochs=1), progress=False)
print('trained', r.best_val['accuracy'] > 0.5, sorted(k for k in sys.modules if k.split('.')[0] in {BLOCKED!r}))
"""


@pytest.mark.stage
def test_training_path_needs_no_mlflow_prefect_dvc_pandera():
    """What benchmarks/train_throughput.py needs on a bare GPU machine: torch, tokenizers, numpy, pydantic."""
    proc = subprocess.run([sys.executable, "-c", BARE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "trained True []"


def test_device_and_precision_choices_on_a_cpu_machine():
    from bigmodel_core.errors import ConfigError

    assert pick_device("auto") == torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="train.device: 'cuda' requested but torch sees no CUDA device"):
            pick_device("cuda")
    cpu = torch.device("cpu")
    assert precision_name(cpu, "auto") == "fp32" and precision_name(torch.device("cuda"), "auto") == "bf16"
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, "auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_bf16_autocast_trains_and_compile_is_ignored_on_cpu():
    m, r = fit(toy_model(), toy_data(), params(epochs=2, precision="bf16", compile=True), progress=False)
    assert r.precision == "bf16" and r.best_val["accuracy"] > 0.9
    assert not hasattr(m, "_orig_mod")  # no torch.compile wrapper off CUDA


def test_a_version_1_bundle_still_loads_and_predicts(tmp_path):
    """Champions registered by bigmodel 0.1 (nn.TransformerEncoder weights) stay comparable after an upgrade."""
    from bigmodel_core.models.bundle import Predictor
    from bigmodel_core.models.legacy import LegacyTransformerClassifier
    from bigmodel_core.text.tokenizer import pad_id, train_tokenizer

    texts = ["the striker scored a goal", "shares and profit rose"] * 20
    tok = train_tokenizer(texts, TokenizerParams(vocab_size=120, min_frequency=1, max_length=16))
    torch.manual_seed(0)
    model = LegacyTransformerClassifier(tok.get_vocab_size(), 2, 16, 2, 1, 32, 0.0, 16, "mean", pad_id(tok))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    tok.save(str(tmp_path / "tokenizer.json"))
    old_model = {"kind": "transformer", "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "dropout": 0.0, "pooling": "mean"}
    old_tok = {"kind": "bpe", "vocab_size": 120, "min_frequency": 1, "lowercase": True, "max_length": 16}
    (tmp_path / "model.json").write_text(json.dumps({
        "format": "bigmodel-bundle/1", "labels": ["sports", "business"], "model": old_model, "tokenizer": old_tok,
        "clean": {"max_chars": 100}, "vocab_size": tok.get_vocab_size()}))
    pred = Predictor(tmp_path)
    probs = pred.predict_proba(["the striker scored", "profit rose", ""])
    ids = tok.encode("the striker scored").ids
    with torch.no_grad():
        direct = torch.softmax(model.eval()(torch.tensor([ids])), -1).numpy()[0]
    assert pred.kind == "legacy-transformer" and probs.shape == (3, 2)
    assert np.allclose(probs[0], direct, atol=1e-5)

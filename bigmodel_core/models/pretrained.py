"""Fine-tune a Hugging Face encoder (model.backbone) with a fresh classification head.

Needs the optional `transformers` dependency (`pip install bigmodel[hf]`). The fine-tuned weights
and the tokenizer are saved into the model bundle, so serving needs neither the hub nor the
original backbone directory.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bigmodel_core.errors import ConfigError

HF_DIR = "hf"


def require_transformers():
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "model.kind: 'pretrained' needs the transformers package: pip install 'bigmodel[hf]'"
        ) from None
    transformers.logging.set_verbosity_error()  # the "newly initialized classifier" notice is expected here
    transformers.logging.disable_progress_bar()
    return transformers


class PretrainedClassifier(nn.Module):
    def __init__(self, hf_model) -> None:
        super().__init__()
        self.hf = hf_model

    @classmethod
    def from_backbone(cls, backbone: str, labels: list[str], dropout: float | None = None) -> PretrainedClassifier:
        transformers = require_transformers()
        local = Path(backbone).expanduser()
        try:
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                str(local) if local.exists() else backbone,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={lab: i for i, lab in enumerate(labels)},
                local_files_only=local.exists(),
            )
        except OSError as e:
            raise ConfigError(f"model.backbone: cannot load {backbone!r}: {str(e).splitlines()[0]}") from None
        return cls(model)

    @classmethod
    def load(cls, directory: Path) -> PretrainedClassifier:
        transformers = require_transformers()
        return cls(
            transformers.AutoModelForSequenceClassification.from_pretrained(
                str(directory / HF_DIR), local_files_only=True
            )
        )

    def save(self, directory: Path) -> None:
        self.hf.save_pretrained(str(directory / HF_DIR))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.hf(input_ids=ids, attention_mask=None if mask is None else mask.long()).logits

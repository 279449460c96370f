"""A trained model as a directory: weights, architecture, tokenizer, label list and cleaning rules.

The same Predictor is used by the evaluate stage and by the MLflow pyfunc, so what was
evaluated is exactly what is served (cleaning included).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bigmodel_core.config import CleanParams, ModelParams, TokenizerParams

WEIGHTS, META, TOKENIZER = "model.pt", "model.json", "tokenizer.json"


def save_bundle(directory: Path, model, tokenizer, labels: list[str], model_p: ModelParams,
                tok_p: TokenizerParams, clean_p: CleanParams) -> None:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, directory / WEIGHTS)
    tokenizer.save(str(directory / TOKENIZER))
    meta = {
        "format": "bigmodel-bundle/1",
        "labels": labels,
        "model": model_p.model_dump(mode="json"),
        "tokenizer": tok_p.model_dump(mode="json"),
        "clean": clean_p.model_dump(mode="json"),
        "vocab_size": tokenizer.get_vocab_size(),
    }
    (directory / META).write_text(json.dumps(meta, indent=2) + "\n")


class Predictor:
    """Raw texts in, class probabilities out."""

    def __init__(self, directory: str | Path, device: str = "cpu") -> None:
        import torch

        from bigmodel_core.models import build_model
        from bigmodel_core.text.tokenizer import load_tokenizer, pad_id

        directory = Path(directory)
        meta = json.loads((directory / META).read_text())
        self.labels: list[str] = meta["labels"]
        self.clean_p = CleanParams(**meta["clean"])
        tok_p = TokenizerParams(**meta["tokenizer"])
        self.tokenizer = load_tokenizer(directory / TOKENIZER, tok_p.max_length)
        self.pad = pad_id(self.tokenizer)
        self.model = build_model(ModelParams(**meta["model"]), meta["vocab_size"], len(self.labels), tok_p.max_length, self.pad)
        self.model.load_state_dict(torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True))
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    def predict_proba(self, texts: list[str], batch_size: int = 128, clean: bool = True) -> np.ndarray:
        """Probabilities per class. clean=False is for texts that already went through the clean stage."""
        import torch

        from bigmodel_core.data.cleaning import clean_text
        from bigmodel_core.training.batching import collate

        cleaned = ["" if t is None else (clean_text(str(t), self.clean_p) if clean else str(t)) or "" for t in texts]
        out = np.zeros((len(cleaned), len(self.labels)), dtype=np.float64)
        order = np.argsort([len(t) for t in cleaned], kind="stable")  # similar lengths per batch: less padding
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                enc = [e.ids for e in self.tokenizer.encode_batch([cleaned[i] for i in idx])]
                ids, mask = collate(enc, self.pad)
                logits = self.model(ids.to(self.device), mask.to(self.device))
                out[idx] = torch.softmax(logits.float(), -1).cpu().numpy()
        return out

    def predict(self, texts: list[str], batch_size: int = 128) -> list[str]:
        probs = self.predict_proba(texts, batch_size)
        return [self.labels[i] for i in probs.argmax(1)]

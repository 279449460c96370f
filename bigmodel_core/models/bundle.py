"""A trained model as a directory: weights, text encoder, label list and cleaning rules.

    model.json       format, kind, modality (data.modality: what it scores and what a request holds), labels,
                     the model/tokenizer/clean params it was built with, and
                     input_rules: the settings of the validate rules that judge a text on its own
                     (config.TEXT_ROW_RULES) it was trained under; serving refuses what they set aside
    model.pt         weights (bag, transformer)
    linear.json      the TF-IDF terms and settings, with linear_*.npy arrays (linear; models/linear.py)
    tokenizer.json   the trained subword tokenizer (transformer)
    hf/              the fine-tuned Hugging Face model and its tokenizer (pretrained)

The same Predictor is used by the evaluate stage and by the MLflow pyfunc, so what was evaluated is
exactly what is served (cleaning included). Bundles of format 1 (bigmodel 0.1) still load; bundles without
input_rules (written before they were kept) load with input_rules None: nothing is refused by the rules; bundles
without a modality (written before there was a choice) are text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_core.config import TEXT_ROW_RULES, CleanParams, ModelParams, TokenizerParams, ValidateParams

WEIGHTS, META = "model.pt", "model.json"
FORMAT = "bigmodel-bundle/2"
#: The profile of the rows the model was made from (validate's data/profile.json, which train copies in): the next
#: run's data is compared with it.
PROFILE_FILE = "data_profile.json"


def save_bundle(
    directory: Path,
    model,
    encoder,
    labels: list[str],
    model_p: ModelParams,
    tok_p: TokenizerParams,
    clean_p: CleanParams,
    validate_p: ValidateParams | None = None,
    modality: str = "text",
) -> None:
    import torch

    import bigmodel_core
    from bigmodel_core.models.registry import kind_of

    kind = kind_of(model_p.kind)
    directory.mkdir(parents=True, exist_ok=True)
    if encoder is not None:  # a fitted kind (linear) has none: its vectorizers are part of the model
        encoder.save(directory)
    if kind.saves_itself:
        model.save(directory)
    else:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, directory / WEIGHTS)
    meta = {
        "format": FORMAT,
        "kind": model_p.kind,
        "modality": modality,
        "labels": labels,
        "model": model_p.model_dump(mode="json"),
        "tokenizer": tok_p.model_dump(mode="json"),
        "clean": clean_p.model_dump(mode="json"),
        **({"input_rules": input_rules(validate_p)} if validate_p is not None else {}),
        "vocab_size": encoder.vocab_size if encoder is not None else model.features,
        "bigmodel_version": bigmodel_core.__version__,
    }
    (directory / META).write_text(json.dumps(meta, indent=2) + "\n")


def input_rules(validate_p: ValidateParams) -> dict:
    """The policy and settings (min_chars, ...; null ones too) of each rule in TEXT_ROW_RULES, as model.json keeps
    them; ValidateParams(rules=...) reads them back."""
    from bigmodel_core.config import _RULE_SETTINGS

    return {
        r: validate_p.rules[r].model_dump(mode="json", include={"policy", *_RULE_SETTINGS.get(r, ())})
        for r in TEXT_ROW_RULES
    }


def read_meta(directory: str | Path) -> dict:
    return json.loads((Path(directory) / META).read_text())


def _legacy_model(meta: dict, tok_p: TokenizerParams, pad: int):
    from bigmodel_core.models.legacy import LegacyBagOfTokens, LegacyTransformerClassifier

    m, k = meta["model"], len(meta["labels"])
    if m["kind"] == "bag":
        return LegacyBagOfTokens(meta["vocab_size"], k, m["d_model"], m["dropout"], pad)
    return LegacyTransformerClassifier(
        meta["vocab_size"],
        k,
        m["d_model"],
        m["n_heads"],
        m["n_layers"],
        m["d_ff"],
        m["dropout"],
        tok_p.max_length,
        m["pooling"],
        pad,
    )


class Predictor:
    """Raw texts in, class probabilities out."""

    def __init__(self, directory: str | Path, device: str = "cpu") -> None:
        import torch

        from bigmodel_core.models.registry import load_encoder
        from bigmodel_core.text.encoders import SubwordEncoder

        directory = Path(directory)
        meta = read_meta(directory)
        self.labels: list[str] = meta["labels"]
        #: what it scores (data.modality when it was trained; bundles from before the choice are text)
        self.modality: str = meta.get("modality", "text")
        self.clean_p = CleanParams(**meta["clean"])
        #: the text rules it was trained under (a ValidateParams whose other rules are defaults), None if not kept
        self.input_rules = ValidateParams(rules=meta["input_rules"]) if meta.get("input_rules") else None
        tok_p = TokenizerParams(**meta["tokenizer"])
        self.device = torch.device(device)
        if meta.get("format") == "bigmodel-bundle/1":
            self.kind, self.neural = "legacy-" + meta["model"]["kind"], True
            # the kind's encoder (SubwordEncoder, NgramHasher, PretrainedEncoder), None for linear
            self.encoder: Any = SubwordEncoder.load(directory, tok_p)
            self.model = _legacy_model(meta, tok_p, self.encoder.pad_id)
            self.model.load_state_dict(torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True))
        else:
            from bigmodel_core.models.registry import kind_of

            model_p = ModelParams(**meta["model"])
            self.kind = model_p.kind
            kind = kind_of(model_p.kind)
            self.neural = kind.neural
            self.encoder = load_encoder(directory, model_p, tok_p) if kind.load_encoder is not None else None
            if kind.saves_itself:
                assert kind.load_model is not None
                self.model = kind.load_model(directory)
            else:
                from bigmodel_core.models import build_model

                self.model = build_model(model_p, self.encoder, self.labels, tok_p.max_length)
                self.model.load_state_dict(torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True))
            if not kind.neural:
                # its columns in this bundle's label order (a label without train rows gets probability 0)
                self._columns = [
                    self.model.classes.index(lab) if lab in self.model.classes else -1 for lab in self.labels
                ]
                return
        self.model.to(self.device).eval()

    def clean(self, texts: list) -> list[str]:
        """The texts as this model's cleaning leaves them (what it scores; None becomes ""): cleaning.clean_array,
        the function the clean stage ran on the training texts."""
        from bigmodel_core.data.cleaning import clean_array

        cleaned = clean_array([None if t is None else str(t) for t in texts], self.clean_p).to_pylist()
        return [t or "" for t in cleaned]

    def predict_proba(self, texts: list[str], batch_size: int = 128, clean: bool = True) -> np.ndarray:
        """Probabilities per class. clean=False is for texts that already went through the clean stage."""
        import torch

        from bigmodel_core.training.batching import plan_batches

        cleaned = self.clean(texts) if clean else ["" if t is None else str(t) for t in texts]
        if not self.neural:  # scores texts itself (linear)
            probs = self.model.predict_proba(cleaned)
            out = np.zeros((len(cleaned), len(self.labels)), dtype=np.float64)
            for j, col in enumerate(self._columns):
                if col >= 0:
                    out[:, j] = probs[:, col]
            return out
        data = self.encoder.encode(cleaned)
        out = np.zeros((len(cleaned), len(self.labels)), dtype=np.float64)
        with torch.inference_mode():
            for rows in plan_batches(data.lengths, batch_size, shuffle=False):  # similar lengths: little padding
                batch = {
                    k: (v.to(self.device) if v is not None else None)
                    for k, v in self.encoder.collate(data, rows).items()
                }
                out[rows] = torch.softmax(self.model(**batch).float(), -1).cpu().numpy()
        return out

    def parameter_count(self) -> int:
        if not self.neural:
            return self.model.parameters
        return int(sum(q.numel() for q in self.model.parameters()))

    def predict(self, texts: list[str], batch_size: int = 128) -> list[str]:
        probs = self.predict_proba(texts, batch_size)
        return [self.labels[i] for i in probs.argmax(1)]

"""Text encoders: raw (cleaned) texts in, ragged id arrays out; one per model kind.

- SubwordEncoder: a BPE/WordPiece tokenizer trained on the train split (model.kind=transformer).
- NgramHasher: hashed word and character n-grams with weights (model.kind=bag, fastText-style).
- PretrainedEncoder: the backbone's own Hugging Face tokenizer (model.kind=pretrained).

Each encoder saves itself into the model bundle and is loaded from it, so serving encodes exactly
as training did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigmodel_core.config import ModelParams, TokenizerParams
from bigmodel_core.training.batching import Ragged, collate_bag, collate_padded

CHUNK = 2000  # texts encoded per call: the tokenizers' per-text objects are large, numpy arrays are not


def keep_tokens(
    ids: list[int], max_length: int, truncation: str, n_special_front: int = 1, n_special_back: int = 0
) -> list[int]:
    """Cut one encoded text to max_length, keeping its special tokens and the part `truncation` asks for."""
    if len(ids) <= max_length:
        return ids
    front, body = ids[:n_special_front], ids[n_special_front : len(ids) - n_special_back]
    back = ids[len(ids) - n_special_back :] if n_special_back else []
    room = max_length - len(front) - len(back)
    if truncation == "head":
        kept = body[:room]
    elif truncation == "tail":
        kept = body[len(body) - room :]
    else:  # head_tail: a quarter from the start, the rest from the end
        head = room // 4
        kept = body[:head] + body[len(body) - (room - head) :]
    return front + kept + back


class SubwordEncoder:
    """A subword tokenizer from the `tokenizers` library, trained on the train split only."""

    kind = "subword"
    FILE = "tokenizer.json"

    def __init__(self, tokenizer, max_length: int, truncation: str = "head") -> None:
        from bigmodel_core.text.tokenizer import configure

        self.max_length, self.truncation = max_length, truncation
        self.tokenizer = configure(tokenizer, max_length)
        if truncation != "head":
            self.tokenizer.no_truncation()  # cut in keep_tokens instead, keeping the tail

    @classmethod
    def train(cls, texts: list[str], p: TokenizerParams) -> SubwordEncoder:
        from bigmodel_core.text.tokenizer import train_tokenizer

        return cls(train_tokenizer(texts, p), p.max_length, p.truncation)

    @property
    def pad_id(self) -> int:
        from bigmodel_core.text.tokenizer import pad_id

        return pad_id(self.tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: list[str]) -> Ragged:
        rows: list[list[int]] = []
        for start in range(0, len(texts), CHUNK):
            enc = self.tokenizer.encode_batch(texts[start : start + CHUNK])
            if self.truncation == "head":
                rows += [e.ids for e in enc]
            else:
                rows += [keep_tokens(e.ids, self.max_length, self.truncation) for e in enc]
        return Ragged.from_lists(rows)

    def collate(self, data: Ragged, rows: np.ndarray) -> dict:
        return collate_padded(data, rows, self.pad_id)

    def save(self, directory: Path) -> None:
        self.tokenizer.save(str(directory / self.FILE))

    @classmethod
    def load(cls, directory: Path, tok_p: TokenizerParams) -> SubwordEncoder:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(directory / cls.FILE)), tok_p.max_length, tok_p.truncation)


class NgramHasher:
    """fastText-style features: word n-grams 1..n and optional char n-grams, hashed into buckets.

    Hashing is scikit-learn's MurmurHash3 (HashingVectorizer), stable across runs and processes.
    A text becomes its distinct bucket ids with weights (count, 1+log(count) or 1), normalised to
    sum to 1 for mean pooling.
    """

    kind = "ngram"
    # words, and punctuation marks as tokens of their own ("!" and "?" carry sentiment)
    TOKEN_PATTERN = r"(?u)\b\w+\b|[^\w\s]"

    def __init__(self, model_p: ModelParams, lowercase: bool) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.p, self.lowercase = model_p, lowercase
        common = dict(
            n_features=model_p.buckets, alternate_sign=False, norm=None, lowercase=lowercase, dtype=np.float32
        )
        self.vectorizers = [
            HashingVectorizer(ngram_range=(1, model_p.ngrams), token_pattern=self.TOKEN_PATTERN, **common)
        ]
        if model_p.char_ngrams:
            lo, hi = model_p.char_ngrams
            self.vectorizers.append(HashingVectorizer(analyzer="char_wb", ngram_range=(lo, hi), **common))

    pad_id = 0
    vocab_size = property(lambda self: self.p.buckets)

    def encode(self, texts: list[str]) -> Ragged:
        parts = []
        for start in range(0, len(texts), CHUNK * 5):
            chunk = texts[start : start + CHUNK * 5]
            x = self.vectorizers[0].transform(chunk)
            for v in self.vectorizers[1:]:
                x = x + v.transform(chunk)
            parts.append(x.tocsr())
        import scipy.sparse as sp

        x = sp.vstack(parts).tocsr() if parts else sp.csr_matrix((0, self.p.buckets), dtype=np.float32)  # type: ignore[arg-type]  # scipy-stubs: no (shape, dtype) form
        x.sort_indices()
        data = x.data.astype(np.float32)
        if self.p.counts == "log":
            data = 1.0 + np.log(data)
        elif self.p.counts == "binary":
            data = np.ones_like(data)
        if self.p.bag_pooling == "mean":
            row_of = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
            row_sum = np.bincount(row_of, weights=data, minlength=x.shape[0])
            data = data / row_sum[row_of]
        return Ragged(x.indices.astype(np.int64), x.indptr.astype(np.int64), data.astype(np.float32))

    def collate(self, data: Ragged, rows: np.ndarray) -> dict:
        return collate_bag(data, rows)

    def save(self, directory: Path) -> None:
        pass  # fully described by the model params in model.json

    @classmethod
    def load(cls, directory: Path, model_p: ModelParams, tok_p: TokenizerParams) -> NgramHasher:
        return cls(model_p, tok_p.lowercase)


class PretrainedEncoder:
    """The backbone's Hugging Face tokenizer ([CLS] ... [SEP] for BERT-like models)."""

    kind = "pretrained"
    DIR = "hf"

    def __init__(self, hf_tokenizer, max_length: int, truncation: str = "head") -> None:
        self.tokenizer = hf_tokenizer
        limit = getattr(hf_tokenizer, "model_max_length", None)
        self.max_length = min(max_length, limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else max_length
        self.truncation = truncation
        if hf_tokenizer.pad_token_id is None:
            raise ValueError("the backbone's tokenizer has no padding token")

    @classmethod
    def from_backbone(cls, backbone: str, p: TokenizerParams) -> PretrainedEncoder:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(backbone, use_fast=True), p.max_length, p.truncation)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def _specials(self) -> tuple[list[int], list[int]]:
        """The special ids the tokenizer puts before and after a text (BERT: [CLS] and [SEP])."""
        plain = self.tokenizer("word", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("word")["input_ids"]
        i = next(i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain)
        return full[:i], full[i + len(plain) :]

    def encode(self, texts: list[str]) -> Ragged:
        rows: list[list[int]] = []
        front, back = self._specials() if self.truncation != "head" else ([], [])
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            if self.truncation == "head":
                rows += self.tokenizer(chunk, truncation=True, max_length=self.max_length)["input_ids"]
            else:
                for ids in self.tokenizer(chunk, add_special_tokens=False, truncation=False)["input_ids"]:
                    rows.append(
                        keep_tokens(front + ids + back, self.max_length, self.truncation, len(front), len(back))
                    )
        return Ragged.from_lists(rows)

    def collate(self, data: Ragged, rows: np.ndarray) -> dict:
        return collate_padded(data, rows, self.pad_id)

    def save(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(str(directory / self.DIR))

    @classmethod
    def load(cls, directory: Path, tok_p: TokenizerParams) -> PretrainedEncoder:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(directory / cls.DIR), use_fast=True, local_files_only=True)
        return cls(tok, tok_p.max_length, tok_p.truncation)

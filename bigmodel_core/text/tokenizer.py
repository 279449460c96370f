"""Subword tokenizer trained with the `tokenizers` library on the train split only."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from bigmodel_core.config import TokenizerParams

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIALS = [PAD, UNK, CLS, SEP]


def train_tokenizer(texts: Iterable[str], p: TokenizerParams) -> Tokenizer:
    trainer: trainers.Trainer
    if p.kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(
            vocab_size=p.vocab_size, min_frequency=p.min_frequency, special_tokens=SPECIALS, show_progress=False
        )
        tok.decoder = decoders.WordPiece()
    else:
        tok = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(
            vocab_size=p.vocab_size, min_frequency=p.min_frequency, special_tokens=SPECIALS, show_progress=False
        )
    norms: list[normalizers.Normalizer] = [normalizers.NFD()]
    if p.lowercase:
        norms += [normalizers.Lowercase(), normalizers.StripAccents()]
    tok.normalizer = normalizers.Sequence(norms)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(list(texts), trainer=trainer)
    configure(tok, p.max_length)
    return tok


def configure(tok: Tokenizer, max_length: int) -> Tokenizer:
    """Add [CLS] at the front, truncate to max_length; padding is done per batch by the collator."""
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single=f"{CLS} $A", special_tokens=[(CLS, tok.token_to_id(CLS))])
    tok.enable_truncation(max_length=max_length)
    tok.no_padding()
    return tok


def load_tokenizer(path: str | Path, max_length: int) -> Tokenizer:
    return configure(Tokenizer.from_file(str(path)), max_length)


def encode(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts)]


def pad_id(tok: Tokenizer) -> int:
    found = tok.token_to_id(PAD)
    if found is None:
        raise ValueError(f"the tokenizer has no {PAD} token")
    return found

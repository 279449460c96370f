"""Data-quality rules and the gate of the validate stage.

Each rule marks rows; the rule's policy decides whether they are quarantined, stop the run, or
are only reported. Every row ends up in exactly one of: passed, quarantined (with rule and reason).
The rules are objects (rules.py), run by the Checker (checker.py) over record batches; the two that search
(near-duplicates, label noise) are in searches.py; the report and the gate's verdict in report.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from bigmodel_core.config import TEXT_ROW_RULES, ValidateParams
from bigmodel_core.data.charset import normalize_key
from bigmodel_core.data.quality.checker import QUARANTINE_COLUMNS, Checker, _empty_passed, _empty_quarantine
from bigmodel_core.data.quality.report import HEADLINE, QualityResult, headline
from bigmodel_core.data.quality.rules import INGEST_NOTE, TextFacts, reason, text_masks

__all__ = [
    "HEADLINE",
    "QUARANTINE_COLUMNS",
    "Checker",
    "QualityResult",
    "check",
    "group_key",
    "headline",
    "text_verdicts",
]


def group_key(text: str) -> str:
    """The key that makes rows 'the same text' (duplicates, conflicts, the split): hashing.text_key of the
    words of the normalised text (charset.normalize_key: pinned, KEY_VERSION), 20 hex digits."""
    from bigmodel_core.data.hashing import text_key

    hi, lo = text_key([w.encode() for w in normalize_key(text).split(" ") if w])
    return f"{hi:016x}{lo:04x}"


def check(
    df: pd.DataFrame, p: ValidateParams, labels: list[str] | None, max_tokens: int | None = None
) -> QualityResult:
    """Apply every rule to an in-memory table (Checker over one batch); passed and quarantined rows are
    returned as frames. max_tokens (tokenizer.max_length) feeds the truncated rule; None leaves it unchecked."""
    passed: list[pd.DataFrame] = []
    quarantined: list[pd.DataFrame] = []
    checker = Checker(p, labels, max_tokens)
    checker.scan(lambda: iter([df]), rows=len(df))
    checker.write(passed.append, quarantined.append)
    result = checker.result()
    result.passed = passed[0] if passed else _empty_passed(df)
    result.quarantined = quarantined[0] if quarantined else _empty_quarantine(df)
    assert len(result.passed) + len(result.quarantined) == len(df), "rows in must equal rows out + rows quarantined"
    return result


def text_verdicts(texts: list, p: ValidateParams) -> list[tuple[str, str] | None]:
    """What validate does to a row with each of these (cleaned) texts by the rules that judge a text on its own:
    (rule, reason) of the first rule of TEXT_ROW_RULES that the text breaks and whose policy is quarantine or
    fail, or None (it passes them, or breaks only warn rules). The facts are Checker.scan's (minhash.Scanner,
    _text_masks; no words: empty_text), so a served model refuses exactly what its training set aside."""
    from bigmodel_core.data import minhash

    arr = pa.array(["" if t is None else t for t in texts], type=pa.large_string())
    out: list[tuple[str, str] | None] = [None] * len(arr)
    if not len(arr):
        return out
    got = minhash.Scanner(p.rules["near_duplicate"].shingle_words or 3).scan(arr, low_bits=True)
    masks = {"empty_text": got.words == 0, **text_masks(TextFacts(arr, got.words, got.chars, got.flags), p)}
    for rule in TEXT_ROW_RULES:
        if p.rules[rule].policy == "warn":
            continue
        for i in np.nonzero(masks[rule])[0].tolist():
            if out[i] is None:
                out[i] = (rule, reason(rule, None, None, texts[i], p).removesuffix(INGEST_NOTE))
    return out

"""The row rules as objects, one per rule of config.ROW_RULES: which rows break it and why.

A rule's `hits` picks, among the rows no earlier rule set aside, those that break it, and which of them go aside
(its policy is quarantine; some go aside under every policy, see near_duplicate); `row_reason` says why in the
quarantine file. Rules judged on the text alone (TextRule) also say which texts break them from the facts one
compiled scan finds (`mask`), which is how a served model refuses what validate set aside (text_verdicts).
A new rule, or one for another kind of input, is a new object in RULES; the Checker runs them in this order.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bigmodel_core.config import ROW_RULES, TEXT_ROW_RULES, ValidateParams
from bigmodel_core.data import columns
from bigmodel_core.data.charset import CONTROL_CLASS, WS_CLASS

# C0 and C1 control characters other than tab, line feed and carriage return (and DEL): charset.CONTROL
_CONTROL = re.compile(f"[{CONTROL_CLASS}]")


def _html_left(digit: str) -> str:
    """The HTML rule's pattern (a tag or an entity left after cleaning), with `digit` for a decimal digit."""
    return (
        rf"<(?:[a-zA-Z][a-zA-Z0-9]*|/[a-zA-Z][a-zA-Z0-9]*)(?:[{WS_CLASS}][^<>]{{0,200}})?/?>"
        rf"|&(?:[a-zA-Z]{{2,8}}|#{digit}{{1,6}}|#x[0-9a-fA-F]{{1,6}});"
    )


_HTML_LEFT = re.compile(_html_left(r"\d"))


@functools.cache
def _html_left_re2() -> str:
    """_HTML_LEFT for pyarrow's RE2 on every text: RE2 matches code points as Python does, but its \\d is ASCII,
    so Python's is spelled out (tests/test_vectorized_text.py compares both on adversarial text)."""
    return _html_left(f"[{columns.python_class(str.isdecimal)}]")


INGEST_NOTE = " (ingest names the file, byte and line when it replaced them)"


@dataclass(frozen=True)
class TextFacts:
    """What the compiled scan (minhash.Scanner) found per text: its word count (0 for a blank or null text), its
    length in code points, its flags (kernels.scan.CONTROL, REPLACEMENT, MARKUP), and the texts themselves."""

    texts: pa.Array
    words: np.ndarray
    chars: np.ndarray
    flags: np.ndarray

    @property
    def present(self) -> np.ndarray:
        return self.words > 0


def _text(text: Any) -> str:
    return "" if text is None or (not isinstance(text, str) and pd.isna(text)) else str(text)


@dataclass(frozen=True)
class RowRule:
    name: str
    #: a fixed test row is set aside for it even under validate.fixed_test as_given: it cannot be scored
    unscorable: bool = False

    def hits(self, c, free: np.ndarray, usable: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, Any]:
        """(rows among `free` that break the rule, rows to set aside or None); c: the Checker, whose masks hold
        each mask rule's rows."""
        hits = c.masks[self.name] & free
        return hits, hits if c.p.rules[self.name].policy == "quarantine" else None

    def reason(self, text: str, label: Any, labels: set[str] | None, p: ValidateParams | None) -> str:
        raise NotImplementedError

    def row_reason(self, c, row: int, text: Any, label: Any) -> str:
        """Why row `row` (its text and label) breaks the rule, for the quarantine file."""
        return self.reason(_text(text), label, c.label_set, c.p)


@dataclass(frozen=True)
class TextRule(RowRule):
    def mask(self, facts: TextFacts, p: ValidateParams) -> np.ndarray:
        raise NotImplementedError


class EmptyText(TextRule):
    def mask(self, facts: TextFacts, p: ValidateParams) -> np.ndarray:
        return ~facts.present

    def reason(self, text, label, labels, p) -> str:
        return "text is empty or whitespace only"


class MissingLabel(RowRule):
    def reason(self, text, label, labels, p) -> str:
        return "label is missing"


class UnknownLabel(RowRule):
    def reason(self, text, label, labels, p) -> str:
        return f"label {label!r} is not one of {sorted(labels or [])}"


class ConflictingLabels(RowRule):
    def reason(self, text, label, labels, p) -> str:
        return "the same text appears with more than one label"


class Duplicate(RowRule):
    def reason(self, text, label, labels, p) -> str:
        return "exact duplicate of another row (same text and label); the first copy, or the fixed test copy, is kept"


class NearDuplicate(RowRule):
    """Found by its own search (searches.near_duplicates) over MinHash signatures."""

    def hits(self, c, free, usable, test):
        from bigmodel_core.data.quality.searches import near_duplicates

        c.near = near_duplicates(c, free & usable)
        del c.f["sig"]  # 128 bytes a row that nothing after the near-duplicate search reads
        hits = (c.near["copies"] | c.near["stuck"]) & free
        # under warn or fail, rows that cannot follow their twin into the test split still go aside
        return hits, hits if c.p.rules[self.name].policy == "quarantine" else c.near["stuck"] & free

    def row_reason(self, c, row, text, label) -> str:
        """Its Jaccard similarity and where its kept twin is."""
        near, f = c.near, c.f
        i = int(np.searchsorted(near["aside"], row))
        twin, j = int(near["twin"][i]), float(near["jaccard"][i])
        where = f"{c.files[f['file'][twin]]} row {int(f['source_row'][twin])}"
        if near["stuck"][row]:
            return f"near-duplicate (Jaccard {j:.2f}) of {where}, a fixed test row it cannot follow into test"
        return f"near-duplicate (Jaccard {j:.2f}) of {where}, which is kept"


class LabelNoise(RowRule):
    """Found by a cross-validated model on a sample (searches.label_noise_pass); the labels of test rows are not
    looked at."""

    def hits(self, c, free, usable, test):
        from bigmodel_core.data.quality.searches import label_noise_pass

        hits = label_noise_pass(c, free & usable & ~test)
        return hits, hits if c.p.rules[self.name].policy == "quarantine" else None

    def row_reason(self, c, row, text, label) -> str:
        """The out-of-fold probability of its label and the model's choice."""
        from bigmodel_core.data.label_noise import MODEL

        z, names = c.noise, {code: name for name, code in c.label_names.items()}
        i = int(np.searchsorted(z["rows"], row))
        given = names[int(c.f["label"][row])]
        return (
            f"label {given!r} is contradicted by a cross-validated {MODEL}: p({given})={z['given_p'][i]:.2f}, "
            f"it predicts {names[int(z['predicted'][i])]!r} (p={z['predicted_p'][i]:.2f})"
        )


class Undecodable(TextRule):
    def mask(self, facts, p) -> np.ndarray:
        from bigmodel_core.data.kernels.scan import REPLACEMENT

        return (facts.flags & REPLACEMENT).astype(bool)

    def reason(self, text, label, labels, p) -> str:
        where = text.find(chr(0xFFFD)) + 1
        return f"text has U+FFFD at character {where}: bytes that were not valid text, replaced" + INGEST_NOTE


def _limits(rule, keys: tuple[str, str]) -> list[str]:
    return [f"{k} {getattr(rule, k)}" for k in keys if rule is not None and getattr(rule, k) is not None]


class TooShort(TextRule):
    def mask(self, facts, p) -> np.ndarray:
        r = p.rules[self.name]
        short = np.zeros(len(facts.words), dtype=bool)
        if r.min_chars is not None:
            short |= facts.chars < r.min_chars
        if r.min_words is not None:
            short |= facts.words < r.min_words
        return facts.present & short

    def reason(self, text, label, labels, p) -> str:
        limits = _limits(p.rules[self.name] if p else None, ("min_chars", "min_words"))
        return f"text has {len(text)} character(s) and {len(text.split())} word(s), under {' or '.join(limits)}"


class TooLong(TextRule):
    def mask(self, facts, p) -> np.ndarray:
        r = p.rules[self.name]
        long_ = np.zeros(len(facts.words), dtype=bool)
        if r.max_chars is not None:
            long_ |= facts.chars > r.max_chars
        if r.max_words is not None:
            long_ |= facts.words > r.max_words
        return facts.present & long_

    def reason(self, text, label, labels, p) -> str:
        limits = _limits(p.rules[self.name] if p else None, ("max_chars", "max_words"))
        return f"text has {len(text)} character(s) and {len(text.split())} word(s), over {' or '.join(limits)}"


class ControlChars(TextRule):
    def mask(self, facts, p) -> np.ndarray:
        from bigmodel_core.data.kernels.scan import CONTROL

        return facts.present & (facts.flags & CONTROL).astype(bool)

    def reason(self, text, label, labels, p) -> str:
        m = _CONTROL.search(text)
        return f"control character U+{ord(m.group()):04X} at character {m.start() + 1}" if m else "control character"


class HtmlLeft(TextRule):
    """_HTML_LEFT, matched only in the texts where a tag or an entity can be (kernels.scan.MARKUP)."""

    def mask(self, facts, p) -> np.ndarray:
        from bigmodel_core.data.kernels.scan import MARKUP

        html = np.zeros(len(facts.words), dtype=bool)
        maybe = np.nonzero((facts.flags & MARKUP).astype(bool) & facts.present)[0]
        if len(maybe):
            html[maybe] = columns.contains(pc.fill_null(facts.texts, "").take(pa.array(maybe)), _html_left_re2())
        return html

    def reason(self, text, label, labels, p) -> str:
        m = _HTML_LEFT.search(text)
        return f"HTML left after cleaning: {m.group()!r}" if m else "HTML left after cleaning"


RULES: dict[str, RowRule] = {
    r.name: r
    for r in (
        EmptyText("empty_text", unscorable=True),
        MissingLabel("missing_label", unscorable=True),
        UnknownLabel("unknown_label", unscorable=True),
        ConflictingLabels("conflicting_labels"),
        Duplicate("duplicate"),
        NearDuplicate("near_duplicate"),
        LabelNoise("label_noise"),
        Undecodable("undecodable"),
        TooShort("too_short"),
        TooLong("too_long"),
        ControlChars("control_chars"),
        HtmlLeft("html_left"),
    )
}
#: the rules judged on the text alone but empty_text (which the Checker takes from its own facts)
TEXT_RULES = tuple(name for name, r in RULES.items() if isinstance(r, TextRule) and name != "empty_text")
assert set(RULES) == set(ROW_RULES), "a rule of config.ROW_RULES without its object, or the reverse"
assert tuple(r for r in ROW_RULES if isinstance(RULES[r], TextRule)) == TEXT_ROW_RULES


def reason(rule: str, label: object, labels: set[str] | None, text: Any = None, p: ValidateParams | None = None) -> str:
    """Why a row with this text and label breaks `rule` (a rule whose reason needs only those)."""
    return RULES[rule].reason(_text(text), label, labels, p)


def text_masks(facts: TextFacts, p: ValidateParams) -> dict[str, np.ndarray]:
    """Each rule of TEXT_RULES: the texts that break it."""
    rules: dict[str, Any] = RULES
    return {name: rules[name].mask(facts, p) for name in TEXT_RULES}

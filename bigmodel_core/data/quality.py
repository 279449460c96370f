"""Data-quality rules and the gate of the validate stage.

Each rule marks rows; the rule's policy decides whether they are quarantined, stop the run, or
are only reported. Every row ends up in exactly one of: passed, quarantined (with rule and reason).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bigmodel_core.config import DATASET_RULES, ROW_RULES, TEXT_ROW_RULES, ValidateParams, default_rule
from bigmodel_core.data import columns
from bigmodel_core.data.charset import CONTROL_CLASS, WS_CLASS, normalize_key
from bigmodel_core.data.keys import casefold_key_ints
from bigmodel_core.errors import ConfigError

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


def group_key(text: str) -> str:
    """The key that makes rows 'the same text' (duplicates, conflicts, the split): hashing.text_key of the
    words of the normalised text (charset.normalize_key: pinned, KEY_VERSION), 20 hex digits."""
    from bigmodel_core.data.hashing import text_key

    hi, lo = text_key([w.encode() for w in normalize_key(text).split(" ") if w])
    return f"{hi:016x}{lo:04x}"


@dataclass
class QualityResult:
    passed: pd.DataFrame | None  # None when the rows went to sinks (Checker.write)
    quarantined: pd.DataFrame | None
    report: dict
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


#: The figures of the report that go into metrics/data_quality.json, the file `dvc metrics show` and `dvc exp
#: show` read: a handful of columns (the whole report, examples and profile included, is reports/data_quality.json).
HEADLINE = ("passed", "rows_in", "rows_out", "rows_quarantined", "quarantine_fraction")


def headline(report: dict) -> dict:
    """The metrics-file view of a report: HEADLINE, plus how many warnings it gave and how many classes passed."""
    return {
        **{k: report[k] for k in HEADLINE},
        "warnings": len(report.get("warnings") or []),
        "classes": len(report.get("class_counts") or {}),
    }


_INGEST_NOTE = " (ingest names the file, byte and line when it replaced them)"


def _reason(
    rule: str, label: object, labels: set[str] | None, text: Any = None, p: ValidateParams | None = None
) -> str:
    t = "" if text is None or (not isinstance(text, str) and pd.isna(text)) else str(text)
    if rule == "too_short":
        r = p.rules[rule] if p else None
        limits = [f"min_chars {r.min_chars}" for _ in [0] if r and r.min_chars is not None] + [
            f"min_words {r.min_words}" for _ in [0] if r and r.min_words is not None
        ]
        return f"text has {len(t)} character(s) and {len(t.split())} word(s), under {' or '.join(limits)}"
    if rule == "too_long":
        r = p.rules[rule] if p else None
        limits = [f"max_chars {r.max_chars}" for _ in [0] if r and r.max_chars is not None] + [
            f"max_words {r.max_words}" for _ in [0] if r and r.max_words is not None
        ]
        return f"text has {len(t)} character(s) and {len(t.split())} word(s), over {' or '.join(limits)}"
    if rule == "undecodable":
        return (
            f"text has U+FFFD at character {t.find(chr(0xFFFD)) + 1}: bytes that were not valid text, replaced"
            + _INGEST_NOTE
        )
    if rule == "control_chars":
        m = _CONTROL.search(t)
        return f"control character U+{ord(m.group()):04X} at character {m.start() + 1}" if m else "control character"
    if rule == "html_left":
        m = _HTML_LEFT.search(t)
        return f"HTML left after cleaning: {m.group()!r}" if m else "HTML left after cleaning"
    if rule == "empty_text":
        return "text is empty or whitespace only"
    if rule == "missing_label":
        return "label is missing"
    if rule == "unknown_label":
        return f"label {label!r} is not one of {sorted(labels or [])}"
    if rule == "conflicting_labels":
        return "the same text appears with more than one label"
    return "exact duplicate of another row (same text and label); the first copy, or the fixed test copy, is kept"


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


def _empty_passed(df: pd.DataFrame) -> pd.DataFrame:
    return df.iloc[:0].assign(group_key=pd.Series([], dtype="str"))


def _empty_quarantine(df: pd.DataFrame) -> pd.DataFrame:
    out = df.iloc[:0][list(QUARANTINE_COLUMNS[:6])].copy()
    return out.assign(rule=pd.Series([], dtype="str"), reason=pd.Series([], dtype="str"))


QUARANTINE_COLUMNS = ("row_id", "source", "source_file", "source_row", "text", "label", "rule", "reason")
_FIXED = {"train": 1, "test": 2, "val": 3}
#: rules a fixed test row is still set aside for under validate.fixed_test as_given: without a text or a known
#: label it cannot be scored at all
_UNSCORABLE = ("empty_text", "missing_label", "unknown_label")


class _RowArrays:
    """Per-row arrays filled batch by batch: sized once when the row count is known up front, otherwise grown
    by half again whenever a batch does not fit."""

    def __init__(self, spec: dict[str, tuple], capacity: int) -> None:
        self.spec, self.capacity = spec, max(capacity, 1)
        self.a = {k: np.zeros((self.capacity, *tail), dtype=dtype) for k, (dtype, tail) in spec.items()}

    def put(self, start: int, values: dict[str, np.ndarray], n: int) -> None:
        if start + n > self.capacity:
            self.capacity = max(start + n, self.capacity * 3 // 2)
            for k, (dtype, tail) in self.spec.items():
                grown = np.zeros((self.capacity, *tail), dtype=dtype)
                grown[:start] = self.a[k][:start]
                self.a[k] = grown
        for k, v in values.items():
            self.a[k][start : start + n] = v

    def trimmed(self, n: int) -> dict[str, np.ndarray]:
        return {k: v[:n] for k, v in self.a.items()}


_T = TypeVar("_T")


def _setting(value: _T | None, rule: str, key: str) -> _T:
    """A rule's setting that its pass needs (params.yaml gets the defaults; a Rule built in code may not)."""
    if value is None:
        raise ConfigError(f"validate.rules.{rule}.{key} is not set: the rule needs it")
    return value


class Checker:
    """The rules over a table read in batches, in two passes (memory holds a few bytes per row, not rows):

    1. scan(): per row, the facts every rule needs (blank text, label, group key, text rules, word count,
       source file and row) and, for rows with a usable text and label, an 8-bit MinHash signature
       (minhash.bbit: 128 bytes a row); then the decisions over the whole table (conflicts, duplicates with the
       fixed test copy kept, each rule in order on the rows the rules before it left, near-duplicate clusters
       from LSH bands of the signatures, each candidate pair checked on its full signature; label_noise on a
       sample of the rows still passing, whose texts scan() keeps);
    2. write(): each batch again, split into passed rows (group key, fixed split of a near-copy of a test row)
       and quarantined rows (rule, reason), handed to the sinks; the examples and the profile are collected.

    result() then returns the report and the failures (QualityResult without rows)."""

    def __init__(
        self,
        p: ValidateParams,
        labels: list[str] | None,
        max_tokens: int | None = None,
        reference_vocab: dict | None = None,
    ) -> None:
        from bigmodel_core.data import minhash
        from bigmodel_core.data.profile import Profiler

        self.p, self.labels, self.max_tokens = p, labels, max_tokens
        self.label_set = set(labels) if labels is not None else None
        near = p.rules["near_duplicate"]
        # the settings the near-duplicate and label_noise passes need (a rule built in code may leave them out)
        self.min_jaccard = _setting(near.min_jaccard, "near_duplicate", "min_jaccard")
        self.shingle_words = _setting(near.shingle_words, "near_duplicate", "shingle_words")
        self.bands, self.band_rows = minhash.band_params(self.min_jaccard)
        self.profiler = Profiler(reference_vocab)
        # a Rule built in code may leave the settings out: the defaults stand in
        given, default = p.rules["label_noise"], default_rule("label_noise")
        self.noise_rule = given.model_copy(
            update={k: getattr(default, k) for k in ("folds", "sample_rows") if getattr(given, k) is None}
        )
        self.noise_folds = _setting(self.noise_rule.folds, "label_noise", "folds")
        self.noise_sample_rows = _setting(self.noise_rule.sample_rows, "label_noise", "sample_rows")

    # ---------------------------------------------------------------- pass 1
    def scan(self, batches, rows: int | None = None) -> None:
        """batches: a callable giving the table's frames (called again by write()); rows: how many rows they
        hold, if known (the per-row arrays are then allocated once, and label_noise keeps the texts of about
        its sample; unknown, it keeps every usable text)."""
        from bigmodel_core.data import kernels, minhash

        self.batches = batches
        flags = ("blank", "missing", "unknown", "usable", *_TEXT_RULES)
        spec = {
            **{k: (bool, ()) for k in flags},
            "label": (np.int32, ()),
            "fixed": (np.int8, ()),
            "hi": (np.uint64, ()),
            "lo": (np.uint16, ()),
            "words": (np.int32, ()),
            "file": (np.int32, ()),
            "source_row": (np.int64, ()),
            "sig": (np.uint8, (minhash.BINS,)),
        }
        store = _RowArrays(spec, rows or 65_536)
        self.label_names: dict[str, int] = {}
        self.file_names: dict[str, int] = {}
        self.batch_sizes: list[int] = []
        self.first_empty = pd.DataFrame(
            {
                c: pd.Series(dtype="int64" if c == "source_row" else "str")
                for c in ("row_id", "source", "source_file", "source_row", "text", "label", "fixed_split")
            }
        )
        start = 0
        # label_noise: the texts of a sample of rows, chosen by group key (uniform 64-bit numbers), a fifth more
        # than asked for since later rules take some; _label_noise() keeps sample_rows of them
        want = self.noise_sample_rows
        share = 1.0 if not rows else min(1.0, 1.2 * want / rows)
        cutoff = np.uint64(min(2**64 - 1, int(share * 2**64)))
        self.noise_texts: list[str] = []
        noise_rows: list[np.ndarray] = []
        # one compiled pass over each batch's text bytes (minhash.Scanner): every row's word count, key, length
        # and text facts, the signatures of the rows with a usable label and their words, counted for the
        # profile across batches; write() takes away the quarantined rows' words, so the profile is of the
        # passing rows without a second split
        scanner = minhash.Scanner(self.shingle_words, vocab=True)
        for df in batches():
            n = len(df)
            self.batch_sizes.append(n)
            if not start:
                self.first_empty = df.iloc[:0]
            arr = columns.as_array(df["text"])
            lab = df["label"]
            missing = (lab.isna() | (lab.fillna("").astype(str).str.strip() == "")).to_numpy()
            if self.label_set is not None:
                unknown = ~missing & ~lab.isin(sorted(self.label_set)).to_numpy()
            else:
                unknown = np.zeros(n, dtype=bool)
            got = scanner.scan(arr, want=~(missing | unknown), low_bits=True)
            words = got.words
            blank = words == 0  # no words: null, empty or whitespace only
            usable = ~(blank | missing | unknown)
            codes = np.full(n, -1, dtype=np.int32)
            present = np.nonzero(~missing)[0]
            local, uniques = pd.factorize(lab.iloc[present].astype(str))
            to_global = np.array(
                [self.label_names.setdefault(u, len(self.label_names)) for u in uniques], dtype=np.int32
            )
            codes[present] = to_global[local] if len(present) else codes[present]
            local, uniques = pd.factorize(df["source_file"].astype(str))
            files = np.array([self.file_names.setdefault(u, len(self.file_names)) for u in uniques], dtype=np.int32)
            fixed = df["fixed_split"].map(_FIXED).fillna(0).to_numpy(dtype=np.int8)
            # group keys: the scan's keys of the lower-cased words are those of the normalised text, but for the
            # texts with a character whose case folding is not its lower case (kernels.CASEFOLD), keyed again
            hi, lo = np.where(usable, got.key_hi, np.uint64(0)), np.where(usable, got.key_lo, np.uint16(0))
            folded = np.nonzero(usable & (got.flags & kernels.CASEFOLD).astype(bool))[0]
            if len(folded):
                hi[folded], lo[folded] = casefold_key_ints(arr.take(pa.array(folded, type=pa.int64())))
            where = np.nonzero(usable)[0]
            if want and len(where):
                pick = where[hi[where] <= cutoff]
                noise_rows.append(start + pick)
                self.noise_texts += arr.take(pa.array(pick, type=pa.int64())).to_pylist()
            store.put(
                start,
                {
                    **_text_masks(arr, self.p, words, got.chars, got.flags),
                    "blank": blank,
                    "missing": missing,
                    "unknown": unknown,
                    "usable": usable,
                    "label": codes,
                    "fixed": fixed,
                    "hi": hi,
                    "lo": lo,
                    "words": words,
                    "file": files[local],
                    "source_row": df["source_row"].to_numpy(),
                    "sig": got.sig,
                },
                n,
            )
            start += n
            del got
        self.profiler.add_counts(*scanner.vocabulary())
        del scanner
        self.n = start
        self.noise_rows = np.concatenate(noise_rows) if noise_rows else np.empty(0, dtype=np.int64)
        self.f = store.trimmed(start)
        del store  # self.f holds the arrays now: _decide() can let the signatures go
        self.files = list(self.file_names)
        self.profiler.merge()  # the word counts waiting to be summed go before the near-duplicate search
        pa.default_memory_pool().release_unused()  # the batches' Arrow buffers, before the decisions
        self._decide()

    def empty_passed(self) -> pd.DataFrame:
        return _empty_passed(self.first_empty)

    def empty_quarantine(self) -> pd.DataFrame:
        return _empty_quarantine(self.first_empty)

    # ---------------------------------------------------------------- decisions
    def _key_ids(self) -> np.ndarray:
        """A number per distinct group key (-1 for rows without one); 32 bits, as the near-duplicate search
        indexes by it."""
        f = self.f
        ids = np.full(self.n, -1, dtype=np.int32)
        rows = np.nonzero(f["usable"])[0]
        if len(rows):
            order = rows[np.lexsort((f["lo"][rows], f["hi"][rows]))]
            hi, lo = f["hi"][order], f["lo"][order]
            new = np.concatenate([[True], (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])])
            ids[order] = np.cumsum(new) - 1
        return ids

    def _copies(self, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(conflicting, duplicate) row masks. Its own function so that its temporaries (a few 8-byte numbers a
        row) are gone before the near-duplicate search, validate's peak."""
        f, key_id = self.f, self.key_id
        # conflicting labels: one text (key), several labels
        n_keys = int(key_id.max()) + 1 if self.n else 0  # 0 too when no row is usable (every id is -1)
        lo_lab = np.full(n_keys, np.iinfo(np.int32).max, dtype=np.int32)
        hi_lab = np.full(n_keys, -1, dtype=np.int32)
        keys, labels = key_id[usable], f["label"][usable]
        np.minimum.at(lo_lab, keys, labels)
        np.maximum.at(hi_lab, keys, labels)
        conflicting = np.zeros(self.n, dtype=bool)
        conflicting[usable] = (lo_lab != hi_lab)[keys]  # only usable rows have a key to look up
        del lo_lab, hi_lab, keys, labels
        # duplicates: the first copy is kept, but a copy in a fixed test split first of all (removing it would
        # shrink the official test set, while the train copy is the one that would leak)
        cand = np.nonzero(usable & ~conflicting)[0]
        order = cand[np.argsort((f["fixed"][cand] != 2).astype(np.int8), kind="stable")]
        del cand
        _, first_at = np.unique(key_id[order], return_index=True)
        duplicate = usable & ~conflicting
        duplicate[order[first_at]] = False
        return conflicting, duplicate

    def _decide(self) -> None:
        f, p, n = self.f, self.p, self.n
        self.key_id = self._key_ids()
        usable = f["usable"].astype(bool)
        conflicting, duplicate = self._copies(usable)
        blank, missing, unknown = (f[k].astype(bool) for k in ("blank", "missing", "unknown"))
        masks = {
            "empty_text": blank,
            "missing_label": ~blank & missing,
            "unknown_label": ~blank & unknown,
            "conflicting_labels": conflicting,
            "duplicate": duplicate,
        }
        masks.update({k: f[k].astype(bool) for k in _TEXT_RULES})
        self.assigned = assigned = np.full(n, -1, dtype=np.int8)
        self.hits: dict[str, np.ndarray] = {}
        # validate.fixed_test as_given: a source's fixed test rows are the user's benchmark and are scored as given;
        # a rule they break is reported (test_kept), and of a text in train and test the train copy goes aside
        test = (f["fixed"] == 2) if p.fixed_test == "as_given" else np.zeros(n, dtype=bool)
        self.test_kept: dict[str, int] = {}
        self.near: dict[str, Any] | None = None
        for r, rule in enumerate(ROW_RULES):
            policy = p.rules[rule].policy
            free = assigned < 0
            if rule == "near_duplicate":
                self.near = self._near_duplicates(free & usable)
                del self.f["sig"]  # 128 bytes a row that nothing after the near-duplicate search reads
                hits = (self.near["copies"] | self.near["stuck"]) & free
                # under warn or fail, rows that cannot follow their twin into the test split still go aside
                aside = hits if policy == "quarantine" else self.near["stuck"] & free
            elif rule == "label_noise":
                hits = self._label_noise(free & usable & ~test)  # the labels of test rows are not looked at
                aside = hits if policy == "quarantine" else None
            else:
                hits = masks[rule] & free
                aside = hits if policy == "quarantine" else None
            if rule not in _UNSCORABLE and test.any():
                kept = hits & test
                if kept.any():
                    self.test_kept[rule] = int(kept.sum())
                    hits = hits & ~test
                    aside = None if aside is None else aside & ~test
            self.hits[rule] = hits
            if aside is not None:
                assigned[aside] = r
        self.q_mask = assigned >= 0

    def _near_duplicates(self, candidates: np.ndarray) -> dict:
        """Clusters of near-identical texts among the candidate rows (see bigmodel_core.data.minhash): one
        signature per distinct text (its first candidate row), candidate pairs from shared LSH bands, kept
        when the estimated Jaccard similarity of the full signatures is >= min_jaccard; clusters are the
        connected components, named by their smallest group key. Per row: `cluster` (the row of the cluster's
        name, -1 for rows in no cluster: write() gives a member its cluster's group key), `copies`
        (members but the kept one: a fixed test row first, else the first), `stuck` (fixed train rows of a
        cluster holding a fixed test row), `to_test` (rows of such a cluster), and `reasons`."""
        from bigmodel_core.data import minhash

        rule = self.p.rules["near_duplicate"]
        key_id, f = self.key_id, self.f
        rows = np.nonzero(candidates)[0]
        _, first_at = np.unique(key_id[rows], return_index=True)
        firsts = np.sort(rows[first_at])  # one row per distinct text, in table order
        del _, first_at
        sig = f["sig"]

        def none_found() -> dict:
            no = np.zeros(self.n, dtype=bool)
            return {
                "cluster": np.full(self.n, -1, dtype=np.int64),
                "copies": no,
                "stuck": no,
                "to_test": no,
                "aside": np.empty(0, dtype=np.int64),
                "twin": np.empty(0, dtype=np.int64),
                "jaccard": np.empty(0, dtype=np.float32),
                "pairs": [],
                "pairs_found": 0,
                "clusters": 0,
            }

        if not len(firsts):
            return none_found()
        pairs = minhash.candidate_pairs(sig, self.bands, self.band_rows, subset=firsts)
        a, b = firsts[pairs[:, 0]], firsts[pairs[:, 1]]
        sims = minhash.similarity(sig, np.stack([a, b], axis=1))
        keep = sims >= rule.min_jaccard
        pairs, sims, a, b = pairs[keep], sims[keep], a[keep], b[keep]
        if not len(pairs):
            return none_found()
        comp = minhash.components(len(firsts), pairs)
        in_pair = np.zeros(len(firsts), dtype=bool)
        in_pair[np.unique(pairs)] = True
        # cluster name: the member with the smallest group key (keys sort as (hi, lo), as their hex does)
        member_firsts = firsts[in_pair]
        member_comp = comp[in_pair]
        order = np.lexsort((f["lo"][member_firsts], f["hi"][member_firsts], member_comp))
        sorted_comp = member_comp[order]
        leads = np.concatenate([[True], sorted_comp[1:] != sorted_comp[:-1]])
        leader_of_comp = np.full(int(comp.max()) + 1, -1, dtype=np.int64)
        leader_of_comp[sorted_comp[leads]] = member_firsts[order][leads]
        # per distinct text (key id): its cluster's leader row, and the first row holding it (whose signature
        # stands for the text); every candidate row whose text is in a pair joins that text's cluster
        n_keys = int(key_id.max()) + 1
        leader_of_key = np.full(n_keys, -1, dtype=np.int64)
        leader_of_key[key_id[member_firsts]] = leader_of_comp[member_comp]
        first_of_key = np.full(n_keys, -1, dtype=np.int64)
        first_of_key[key_id[member_firsts]] = member_firsts
        cluster = np.full(self.n, -1, dtype=np.int64)  # the leader row of the row's cluster
        cluster[rows] = leader_of_key[key_id[rows]]
        del leader_of_key
        members = cluster >= 0
        fixed = f["fixed"]
        is_test = members & (fixed == 2)
        test_clusters = np.unique(cluster[is_test])
        to_test = members & np.isin(cluster, test_clusters)
        stuck = to_test & ((fixed == 1) | (fixed == 3))  # fixed train or val rows cannot follow into test
        # keep one row per cluster: a fixed test row first, then the earliest
        m_rows = np.nonzero(members)[0]
        order = m_rows[np.lexsort((m_rows, ~is_test[m_rows], cluster[m_rows]))]
        first_in = np.concatenate([[True], cluster[order][1:] != cluster[order][:-1]])
        kept = order[first_in]  # in ascending order of their cluster's leader
        copies = members.copy()
        copies[kept] = False
        copies &= ~stuck
        aside = np.nonzero(copies | stuck)[0]
        twins = kept[np.searchsorted(cluster[kept], cluster[aside])]
        jac = (
            minhash.similarity(sig, np.stack([first_of_key[key_id[aside]], first_of_key[key_id[twins]]], axis=1))
            if len(aside)
            else np.empty(0)
        )
        top = np.argsort(-sims, kind="stable")[: max(self.p.examples, 10)]
        self.pair_rows = [(int(a[t]), int(b[t]), float(sims[t])) for t in top]
        # reasons are written out in write(), for the rows a batch quarantines: per row only its twin and Jaccard
        return {
            "cluster": cluster,
            "copies": copies,
            "stuck": stuck,
            "to_test": to_test,
            "aside": aside,
            "twin": twins,
            "jaccard": jac.astype(np.float32),
            "pairs": [],
            "pairs_found": len(pairs),
            "clusters": len(kept),
        }

    def _label_noise(self, candidates: np.ndarray) -> np.ndarray:
        """Rows among the candidates (at most sample_rows of those collected in scan, the smallest group keys)
        whose label a cross-validated model contradicts (bigmodel_core.data.label_noise)."""
        from bigmodel_core.data import label_noise

        sample_rows, f = self.noise_sample_rows, self.f
        hits = np.zeros(self.n, dtype=bool)
        sel = np.nonzero(candidates[self.noise_rows])[0]
        if len(sel) > sample_rows:
            sel = np.sort(sel[np.argsort(f["hi"][self.noise_rows[sel]], kind="stable")[:sample_rows]])
        rows = self.noise_rows[sel]
        self.noise: dict[str, Any] = {
            "rows": np.empty(0, dtype=np.int64),
            "checked": 0,
            "candidates": int(candidates.sum()),
            "kappa": None,
            "note": "off (sample_rows 0)" if not sample_rows else "",
        }
        if len(rows):
            found = label_noise.find([self.noise_texts[i] for i in sel], f["label"][rows], self.noise_folds)
            self.noise.update(
                rows=rows[found.flagged],
                given_p=found.given_p,
                predicted=found.predicted,
                predicted_p=found.predicted_p,
                checked=len(found.checked),
                note=found.note,
                kappa=None if found.kappa is None else round(found.kappa, 4),
            )
            hits[self.noise["rows"]] = True
        self.noise_texts = []
        return hits

    def _noise_reason(self, row: int) -> str:
        """Why a row's label looks wrong: the out-of-fold probability of its label and the model's choice."""
        from bigmodel_core.data.label_noise import MODEL

        z, names = self.noise, {c: name for name, c in self.label_names.items()}
        i = int(np.searchsorted(z["rows"], row))
        given = names[int(self.f["label"][row])]
        return (
            f"label {given!r} is contradicted by a cross-validated {MODEL}: p({given})={z['given_p'][i]:.2f}, "
            f"it predicts {names[int(z['predicted'][i])]!r} (p={z['predicted_p'][i]:.2f})"
        )

    def _near_reason(self, row: int) -> str:
        """Why a row went aside as a near-duplicate: its Jaccard similarity and where its kept twin is."""
        near, f = self.near, self.f
        assert near is not None  # a near-duplicate reason is asked for after the near-duplicate pass
        i = int(np.searchsorted(near["aside"], row))
        twin, j = int(near["twin"][i]), float(near["jaccard"][i])
        where = f"{self.files[f['file'][twin]]} row {int(f['source_row'][twin])}"
        if near["stuck"][row]:
            return f"near-duplicate (Jaccard {j:.2f}) of {where}, a fixed test row it cannot follow into test"
        return f"near-duplicate (Jaccard {j:.2f}) of {where}, which is kept"

    # ---------------------------------------------------------------- pass 3
    def write(self, passed_sink, quarantine_sink) -> None:
        from bigmodel_core.data import minhash

        f, near = self.f, self.near
        want: dict[int, list] = {}  # row -> the rules whose examples it is
        for rule, hits in self.hits.items():
            for r in np.nonzero(hits)[0][: self.p.examples].tolist():
                want.setdefault(r, []).append(rule)
        pair_want = {x for a, b, _ in getattr(self, "pair_rows", []) if near and near["pairs_found"] for x in (a, b)}
        self.examples: dict[str, list] = {rule: [] for rule in ROW_RULES}
        self.pair_detail: dict[int, dict] = {}
        self.unusable = 0
        # the words of the quarantined rows that scan() counted, read by the same compiled pass, to be taken
        # away from the profile at the end
        taken = minhash.Scanner(self.shingle_words, vocab=True)
        start = 0
        for df, n in zip(self.batches(), self.batch_sizes, strict=True):
            q = self.q_mask[start : start + n]
            for r in [x for x in want if start <= x < start + n]:
                row = df.iloc[r - start]
                for rule in want[r]:
                    self.examples[rule].append(
                        {
                            "row_id": row["row_id"],
                            "source": row["source"],
                            "source_file": row["source_file"],
                            "source_row": int(row["source_row"]),
                            "text": None if pd.isna(row["text"]) else str(row["text"])[:120],
                            "label": None if pd.isna(row["label"]) else str(row["label"]),
                            # under warn a flagged row stays, so the example is where the model's choice is shown
                            **({"reason": self._noise_reason(r)} if rule == "label_noise" else {}),
                        }
                    )
            for r in [x for x in pair_want if start <= x < start + n]:
                row = df.iloc[r - start]
                self.pair_detail[r] = {
                    "source_file": row["source_file"],
                    "source_row": int(row["source_row"]),
                    "text": str(row["text"])[:160],
                    "label": row["label"],
                }
            if q.any():
                part = df[q].copy()
                rules = [ROW_RULES[k] for k in self.assigned[start : start + n][q].tolist()]
                part["rule"] = rules
                part["reason"] = [
                    self._near_reason(start + int(i))
                    if rule == "near_duplicate"
                    else self._noise_reason(start + int(i))
                    if rule == "label_noise"
                    else _reason(rule, lab, self.label_set, text, self.p)
                    for i, rule, lab, text in zip(np.nonzero(q)[0], rules, part["label"], part["text"], strict=True)
                ]
                part = part[list(QUARANTINE_COLUMNS)].astype(
                    {"text": "str", "label": "str", "rule": "str", "reason": "str"}
                )
                quarantine_sink(part.reset_index(drop=True))
            keep = ~q
            if keep.any():
                part = df[keep].copy()
                idx = np.nonzero(keep)[0] + start
                # near-duplicates share one group key, so the split sends them where their twin goes; a twin of a
                # fixed test row goes to test with it
                hi, lo = f["hi"][idx].copy(), f["lo"][idx].copy()
                if near is not None:
                    lead = near["cluster"][idx]
                    moved = lead >= 0
                    hi[moved], lo[moved] = f["hi"][lead[moved]], f["lo"][lead[moved]]
                    to_test = near["to_test"][idx] & part["fixed_split"].isna().to_numpy()
                    if to_test.any():
                        part.loc[part.index[to_test], "fixed_split"] = "test"
                usable = f["usable"][idx].astype(bool)
                part["group_key"] = pd.Series(_hex_keys(hi, lo, usable), index=part.index, dtype="str")
                # warn-policy rows stay; they still need a usable text and label to train on
                self.unusable += int((f["blank"][idx].astype(bool) | part["label"].isna().to_numpy()).sum())
                part = part.astype({"text": "str", "label": "str", "group_key": "str"})
                lengths = f["words"][idx].copy()
                if not usable.all():  # passing under a warn policy: their words were not counted in scan()
                    words, lengths[~usable] = columns.words_lower(columns.as_array(part["text"][~usable]))
                    self.profiler.add_words(words)
                self.profiler.add_lengths(lengths)
                self.profiler.add_labels(part["label"])
                passed_sink(part.reset_index(drop=True))
            gone = q & f["usable"][start : start + n].astype(bool)  # counted in scan(), but not passing
            if gone.any():
                taken.scan(columns.as_array(df["text"][gone]), low_bits=True)
            start += n
        self.profiler.add_counts(*taken.vocabulary(), sign=-1)

    # ---------------------------------------------------------------- report
    def result(self) -> QualityResult:
        p, n, f = self.p, self.n, self.f
        report_rules: dict[str, dict[str, Any]] = {}
        failures: list[str] = []
        for rule in ROW_RULES:
            count = int(self.hits[rule].sum())
            frac = count / n if n else 0.0
            if rule == "label_noise":  # of the rows the model checked (a sample when there are many)
                frac = count / self.noise["checked"] if self.noise["checked"] else 0.0
            examples = self.examples[rule]
            report_rules[rule] = {
                "policy": p.rules[rule].policy,
                "rows": count,
                "fraction": round(frac, 6),
                "max_fraction": p.rules[rule].max_fraction,
                "examples": examples,
            }
            if rule == "near_duplicate" and self.near is not None:
                pairs = (
                    [
                        {"jaccard": round(j, 3), "a": self.pair_detail[a], "b": self.pair_detail[b]}
                        for a, b, j in getattr(self, "pair_rows", [])
                    ]
                    if self.near and self.near["pairs_found"]
                    else []
                )
                report_rules[rule].update(
                    clusters=self.near["clusters"],
                    pairs=pairs,
                    pairs_found=self.near["pairs_found"],
                    min_jaccard=self.min_jaccard,
                    shingle_words=self.shingle_words,
                )
            if rule == "label_noise":
                from bigmodel_core.data.label_noise import MODEL

                report_rules[rule].update(
                    checked=self.noise["checked"],
                    candidates=self.noise["candidates"],
                    model=MODEL,
                    folds=self.noise_rule.folds,
                    model_kappa=self.noise["kappa"],
                    note=self.noise["note"],
                )
            if p.rules[rule].policy == "fail" and count:
                failures.append(f"rule {rule} (policy fail): {count} row(s), e.g. {_example_str(examples)}")
            elif frac > p.rules[rule].max_fraction:
                failures.append(
                    f"rule {rule}: {count} row(s) = {frac:.1%} > max_fraction "
                    f"{p.rules[rule].max_fraction:.1%}, e.g. {_example_str(examples)}"
                )
        quarantined = int(self.q_mask.sum())
        passed = n - quarantined
        if self.unusable:
            failures.append(
                f"{self.unusable} row(s) with empty text or no label were kept by a 'warn' policy; "
                "they cannot be trained on"
            )
        frac_q = quarantined / n if n else 0.0
        if frac_q > p.max_quarantine_fraction:
            failures.append(
                f"{quarantined} of {n} rows quarantined = {frac_q:.1%} > max_quarantine_fraction "
                f"{p.max_quarantine_fraction:.1%}"
            )
        if passed < p.min_rows:
            failures.append(f"only {passed} rows pass, min_rows is {p.min_rows}")
        code_name = {c: name for name, c in self.label_names.items()}
        kept_labels = f["label"][~self.q_mask]
        per_class = pd.Series(
            {
                code_name[c]: int(k)
                for c, k in zip(*np.unique(kept_labels[kept_labels >= 0], return_counts=True), strict=True)
            },
            dtype="int64",
        ).sort_index()
        expected = sorted(self.label_set) if self.label_set is not None else sorted(per_class.index)
        dataset_rules = _dataset_rules(per_class, expected, p)
        warnings: list[str] = []
        dataset_rules["truncated"] = _truncated(f["words"][~self.q_mask], self.max_tokens, p.rules["truncated"])
        for name in DATASET_RULES:
            r = dataset_rules[name]
            if not r["passed"]:
                (failures if r["policy"] == "fail" else warnings).append(f"rule {name} ({r['policy']}): {r['finding']}")
        if len(expected) < 2:
            failures.append(f"need at least 2 classes, found {expected}")
        fixed_test = {
            "policy": p.fixed_test,
            "rows": int((f["fixed"] == 2).sum()),
            "set_aside": int(((f["fixed"] == 2) & self.q_mask).sum()),
            "kept_despite": self.test_kept,
        }
        report = {
            "passed": not failures,
            "rows_in": n,
            "rows_out": passed,
            "rows_quarantined": quarantined,
            "fixed_test": fixed_test,
            "quarantine_fraction": round(frac_q, 6),
            "rules": report_rules,
            "dataset_rules": dataset_rules,
            "class_counts": {str(k): int(v) for k, v in per_class.items()},
            "failures": failures,
            "warnings": warnings,
        }
        return QualityResult(passed=None, quarantined=None, report=report, failures=failures)


_TEXT_RULES = ("undecodable", "too_short", "too_long", "control_chars", "html_left")
assert tuple(r for r in ROW_RULES if r == "empty_text" or r in _TEXT_RULES) == TEXT_ROW_RULES


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
    masks = {"empty_text": got.words == 0, **_text_masks(arr, p, got.words, got.chars, got.flags)}
    for rule in TEXT_ROW_RULES:
        if p.rules[rule].policy == "warn":
            continue
        for i in np.nonzero(masks[rule])[0].tolist():
            if out[i] is None:
                out[i] = (rule, _reason(rule, None, None, texts[i], p).removesuffix(_INGEST_NOTE))
    return out


def _text_masks(
    arr: pa.Array, p: ValidateParams, words: np.ndarray, chars: np.ndarray, flags: np.ndarray
) -> dict[str, np.ndarray]:
    """Row rules on the text alone, from the facts minhash.Scanner found (words: each text's word count, 0
    for a blank or null text; chars: its length in code points; flags: kernels.CONTROL, REPLACEMENT,
    MARKUP): U+FFFD, too short, too long, control characters (_CONTROL), HTML left after cleaning
    (_html_left_re2, matched only in the texts where a tag or an entity can be: MARKUP)."""
    from bigmodel_core.data import kernels

    present = words > 0
    short, long_ = np.zeros(len(words), dtype=bool), np.zeros(len(words), dtype=bool)
    r = p.rules["too_short"]
    if r.min_chars is not None:
        short |= chars < r.min_chars
    if r.min_words is not None:
        short |= words < r.min_words
    r = p.rules["too_long"]
    if r.max_chars is not None:
        long_ |= chars > r.max_chars
    if r.max_words is not None:
        long_ |= words > r.max_words
    html = np.zeros(len(words), dtype=bool)
    maybe = np.nonzero((flags & kernels.MARKUP).astype(bool) & present)[0]
    if len(maybe):
        html[maybe] = columns.contains(pc.fill_null(arr, "").take(pa.array(maybe)), _html_left_re2())
    return {
        "undecodable": (flags & kernels.REPLACEMENT).astype(bool),
        "too_short": present & short,
        "too_long": present & long_,
        "control_chars": present & (flags & kernels.CONTROL).astype(bool),
        "html_left": html,
    }


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_keys(hi: np.ndarray, lo: np.ndarray, usable: np.ndarray) -> pa.Array:
    """f"{hi:016x}{lo:04x}" per row ("<NA>" where not usable) as an Arrow string array, digit by digit in
    numpy rather than a Python string per row."""
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits = np.empty((len(hi), 20), dtype=np.uint8)
    digits[:, :16] = _HEX[((hi[:, None] >> shifts) & np.uint64(15)).astype(np.intp)]
    digits[:, 16:] = _HEX[((lo.astype(np.uint64)[:, None] >> shifts[-4:]) & np.uint64(15)).astype(np.intp)]
    keys = pa.LargeStringArray.from_buffers(
        len(hi), pa.py_buffer(np.arange(0, 20 * len(hi) + 1, 20, dtype=np.int64)), pa.py_buffer(digits)
    )
    return keys if usable.all() else pc.if_else(pa.array(usable), keys, "<NA>")


def _example_str(examples: list[dict]) -> str:
    if not examples:
        return "-"
    e = examples[0]
    return f"{e['source_file']} row {e['source_row']} (text={e['text']!r}, label={e['label']!r})"


def _truncated(words: np.ndarray, max_tokens: int | None, rule) -> dict:
    """Share of passing rows (their word counts) with more words than max_tokens. A word is one token or more,
    so these rows are certainly truncated by the tokenizer (a lower bound on the truncated share)."""
    out = {"policy": rule.policy, "threshold": rule.max_fraction, "max_tokens": max_tokens}
    if max_tokens is None or not len(words):
        return {**out, "value": None, "rows": 0, "passed": True, "finding": ""}
    over = int((words > max_tokens).sum())
    frac = over / len(words)
    failed = frac > rule.max_fraction
    return {
        **out,
        "value": round(frac, 6),
        "rows": over,
        "passed": not failed,
        "finding": (
            f"{over} of {len(words)} passing rows ({frac:.1%}) have more than tokenizer.max_length "
            f"{max_tokens} words, so the model sees only part of them; max_fraction is "
            f"{rule.max_fraction:.1%} (raise tokenizer.max_length or choose tokenizer.truncation)"
        )
        if failed
        else "",
    }


def _dataset_rules(per_class: pd.Series, expected: list[str], p: ValidateParams) -> dict:
    """class_imbalance and too_few_rows_per_class on the passing rows: figure, threshold, verdict, finding."""
    counts = {lab: int(per_class.get(lab, 0)) for lab in expected}
    few = {lab: c for lab, c in counts.items() if c < p.min_rows_per_class}
    r_few = p.rules["too_few_rows_per_class"]
    out: dict[str, dict[str, Any]] = {
        "too_few_rows_per_class": {
            "policy": r_few.policy,
            "threshold": p.min_rows_per_class,
            "passed": not few,
            "classes": few,
            "finding": "; ".join(
                f"class {lab!r} has {c} passing row(s), min_rows_per_class is {p.min_rows_per_class}"
                for lab, c in few.items()
            ),
        }
    }
    r_imb = p.rules["class_imbalance"]
    present = {lab: c for lab, c in counts.items() if c > 0}
    ratio = None
    if len(present) >= 2:
        big, small = max(present, key=present.__getitem__), min(present, key=present.__getitem__)
        ratio = present[big] / present[small]
    failed = ratio is not None and r_imb.max_ratio is not None and ratio > r_imb.max_ratio
    out["class_imbalance"] = {
        "policy": r_imb.policy,
        "value": None if ratio is None else round(ratio, 4),
        "threshold": r_imb.max_ratio,
        "passed": not failed,
        "finding": (
            f"largest class {big!r} has {present[big]} rows, {ratio:.1f}x the smallest {small!r} "
            f"({present[small]}); max_ratio is {r_imb.max_ratio:g}"
        )
        if failed
        else "",
    }
    return out

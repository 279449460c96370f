"""The Checker: every row rule over a table read in record batches, in two passes, holding a few bytes per row."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from bigmodel_core.config import ROW_RULES, ValidateParams, default_rule
from bigmodel_core.data import columns
from bigmodel_core.data.keys import casefold_key_ints, hex_keys
from bigmodel_core.data.quality.report import QualityResult, build_result
from bigmodel_core.data.quality.rules import RULES, TEXT_RULES, TextFacts, text_masks
from bigmodel_core.errors import ConfigError


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
        from bigmodel_core.data import minhash
        from bigmodel_core.data.kernels.scan import CASEFOLD

        self.batches = batches
        flags = ("blank", "missing", "unknown", "usable", *TEXT_RULES)
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
            # texts with a character whose case folding is not its lower case (kernels.scan.CASEFOLD), keyed again
            hi, lo = np.where(usable, got.key_hi, np.uint64(0)), np.where(usable, got.key_lo, np.uint16(0))
            folded = np.nonzero(usable & (got.flags & CASEFOLD).astype(bool))[0]
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
                    **text_masks(TextFacts(arr, words, got.chars, got.flags), self.p),
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
        #: the rows each mask rule flags (RowRule.hits reads them); the searching rules find their own
        self.masks = {
            "empty_text": blank,
            "missing_label": ~blank & missing,
            "unknown_label": ~blank & unknown,
            "conflicting_labels": conflicting,
            "duplicate": duplicate,
        }
        self.masks.update({k: f[k].astype(bool) for k in TEXT_RULES})
        self.assigned = assigned = np.full(n, -1, dtype=np.int8)
        self.hits: dict[str, np.ndarray] = {}
        # validate.fixed_test as_given: a source's fixed test rows are the user's benchmark and are scored as given;
        # a rule they break is reported (test_kept), and of a text in train and test the train copy goes aside
        test = (f["fixed"] == 2) if p.fixed_test == "as_given" else np.zeros(n, dtype=bool)
        self.test_kept: dict[str, int] = {}
        self.near: dict[str, Any] | None = None
        for r, name in enumerate(ROW_RULES):
            rule = RULES[name]
            free = assigned < 0
            hits, aside = rule.hits(self, free, usable, test)
            if not rule.unscorable and test.any():
                kept = hits & test
                if kept.any():
                    self.test_kept[name] = int(kept.sum())
                    hits = hits & ~test
                    aside = None if aside is None else aside & ~test
            self.hits[name] = hits
            if aside is not None:
                assigned[aside] = r
        del self.masks
        self.q_mask = assigned >= 0

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
        noise = RULES["label_noise"]
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
                            **({"reason": noise.row_reason(self, r, None, None)} if rule == "label_noise" else {}),
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
                    RULES[rule].row_reason(self, start + int(i), text, lab)
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
                part["group_key"] = pd.Series(hex_keys(hi, lo, usable), index=part.index, dtype="str")
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

    # ---------------------------------------------------------------- report
    def result(self) -> QualityResult:
        return build_result(self)

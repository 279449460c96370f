"""The vectorised text paths agree with the row-by-row ones they replace.

clean_array must equal clean_text text by text (the served model cleans one text at a time with clean_text,
so any difference would be training/serving skew); the MinHash signatures must estimate Jaccard similarity
without bias and find the near-duplicate pairs."""

from __future__ import annotations

import random
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from bigmodel_core.config import CleanParams
from bigmodel_core.data import minhash
from bigmodel_core.data.kernels import scan
from bigmodel_core.data.cleaning import clean_array, clean_text
from bigmodel_core.data.demo import generate

PIECES = list("abc XYZ<>/&;#\t\n\x0b\x0c\r\x1c\x1f\x00 ") + [
    "&amp;", "#39;", "quot;", "x#39;", "&#39;", "<br />", "<b>", "</p>", "<" + "a" * 250 + ">", "é", "ß", "\u00a0",
    "\u2028", "\x85", "İ", "  ", " \t ", "&lt;b&gt;", "&amp;lt;i&amp;gt;", "nbsp;", "AMP;", "12;", "#123456;",
    "#١٢;", "\u3000", "\u2009", "\u205f", "\u1680", "x\u200b", "\ufeff", "Ǆ", "ﬁ", "Σ",
    # tags at the 200-character limit, counted in characters of one to four bytes
    *(f"<{c * n}>" for c in ("x", "é", "😀") for n in (199, 200, 201))]


def _samples(seed: int, n: int) -> list[str | None]:
    rng = random.Random(seed)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 30))) for _ in range(n)]
    return texts + [None, "", " ", "  ", "\t", "plain text", " lead", "trail ", "a  b", "A <b>bold</b> move"]


@pytest.mark.parametrize("combo", range(8))
def test_clean_array_equals_clean_text_text_by_text(combo):
    p = CleanParams(lowercase=bool(combo & 1), strip_html=bool(combo & 2), normalize_whitespace=bool(combo & 4),
                    unescape_html=combo < 6, repair_entities=combo % 3 != 0, max_chars=[7, 25, 2000][combo % 3])
    rng = random.Random(combo)
    prose = ["word ", "Words ", "a ", "the end. ", "x", "  ", "A  B ", "don't ", "1999 "]
    # long texts, mostly prose (compiled in eight-byte steps), now and then a piece that stops those steps
    long_texts = ["".join(rng.choice(prose) if rng.random() < 0.9 else rng.choice(PIECES) for _ in range(300))
                  for _ in range(300)]
    texts = _samples(combo, 3000) + generate(rows=500, seed=combo)["text"].tolist() + long_texts
    got = clean_array(texts, p).to_pylist()
    want = [clean_text(t, p) for t in texts]
    assert len(got) == len(want)
    assert [(t, g, w) for t, g, w in zip(texts, got, want) if g != w] == []
    assert got.count(None) == texts.count(None) >= 1


def test_entity_candidates_hold_every_text_the_entity_steps_change():
    """clean_array runs the entity steps only on the texts kernels.entity_candidates marks: every text that
    '&' or the repair pattern matches must be marked (a superset is allowed: the steps match again), and
    plain text is not."""
    from bigmodel_core.data.cleaning import _ENTITY, _entity_candidates

    rng = random.Random(11)
    prose = ["word ", "it; ", "a;b ", "the end. ", "1999; ", "x", "  ", "don't ", "lots; "]
    texts = _samples(3, 4000) + ["".join(rng.choice(prose) if rng.random() < 0.95 else rng.choice(PIECES)
                                         for _ in range(rng.randint(1, 200))) for _ in range(1000)]
    arr = pa.array(texts, type=pa.large_string())
    marked = _entity_candidates(arr)
    exact = pc.fill_null(pc.match_substring_regex(arr, "&|" + _ENTITY), False).to_numpy(zero_copy_only=False)
    assert exact.sum() > 1000 and (~exact).sum() > 1000  # both kinds are in the sample
    assert [t for t, m, e in zip(texts, marked, exact) if e and not m] == []
    assert marked.sum() < 1.2 * exact.sum()  # not everything: a ';' after a word does not mark a text
    cases = {"&": True, "#12;": True, "x#39;": True, "#\u0661\u0662;": True, "quot;": True, "nbsp;": True,
             "amp;": True, "lt;": True, "gt;": True, "apos;": True, "it;": False, "12;": False, "1999; ok": False,
             "plain text with no entity at all, long enough for eight-byte steps": False, "": False}
    got = _entity_candidates(pa.array(list(cases), type=pa.large_string()))
    assert dict(zip(cases, got.tolist())) == cases


def _mutate(words: list[str], rng: random.Random, k: int) -> list[str]:
    out = list(words)
    for _ in range(k):
        out[rng.randrange(len(out))] = f"zz{rng.randrange(10**6)}"
    return out


def _jaccard(a: str, b: str, k: int = 3) -> float:
    def sh(t):
        w = t.lower().split()
        return {tuple(w[i:i + k]) for i in range(max(1, len(w) - k + 1))}
    return len(sh(a) & sh(b)) / len(sh(a) | sh(b))


def test_minhash_estimates_jaccard_without_bias_and_is_stable():
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(3000)]
    base = [" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 300))) for _ in range(800)]
    other = [" ".join(_mutate(t.split(), rng, rng.randint(0, len(t.split()) // 3))) for t in base]
    sig = minhash.signatures(base + other, 3)
    pairs = np.stack([np.arange(800), np.arange(800) + 800], axis=1)
    est = minhash.similarity(sig, pairs)
    exact = np.array([_jaccard(a, b) for a, b in zip(base, other)])
    assert abs(float((est - exact).mean())) < 0.01        # unbiased
    assert float(np.abs(est - exact).mean()) < 0.05        # 128 bins: standard error <= 0.044
    assert exact.min() < 0.5 < 0.9 < exact.max()           # the test covers a real range
    # 8 bits per bin (what validate keeps per row): chance agreement taken out, the same accuracy
    est8 = minhash.similarity(minhash.bbit(sig), pairs)
    assert abs(float((est8 - exact).mean())) < 0.01 and float(np.abs(est8 - exact).mean()) < 0.05
    assert float(np.abs(est8 - est).mean()) < 0.02 and est8.min() >= 0 and est8.max() <= 1
    # a text's signature depends on the text alone: not on its neighbours, the batch or the case
    again = minhash.signatures(list(reversed(base[:50])) + [base[0].upper()], 3)
    assert (again[::-1][1:] == sig[:50]).all() and (again[-1] == sig[0]).all()


def test_lsh_finds_the_similar_pairs_and_components_join_them():
    rng = random.Random(9)
    vocab = [f"w{i}" for i in range(5000)]
    seeds = [[rng.choice(vocab) for _ in range(60)] for _ in range(300)]
    texts = [" ".join(w) for w in seeds] + [" ".join(_mutate(w, rng, 2)) for w in seeds[:100]] + ["", "x"]
    sig32 = minhash.signatures(texts, 3)
    bands, rows = minhash.band_params(0.7)
    truth = {(i, 300 + i) for i in range(100) if _jaccard(texts[i], texts[300 + i]) >= 0.8}
    assert len(truth) >= 60
    for sig in (sig32, minhash.bbit(sig32)):  # 32-bit values, and the 8 bits validate keeps
        pairs = minhash.candidate_pairs(sig, bands, rows)
        sims = minhash.similarity(sig, pairs)
        close = {tuple(p) for p, s in zip(pairs.tolist(), sims) if s >= 0.7}
        # the estimate's spread is that of 128-permutation MinHash (sd ~0.035 at J=0.8), so a rare pair falls under
        assert len(truth & close) >= 0.97 * len(truth)
        assert all(b - a == 300 for a, b in close)                  # and nothing unrelated (the empty text included)
        # searching a subset gives the same pairs, as positions in the subset
        subset = np.arange(0, len(texts), 2)
        sub = minhash.candidate_pairs(sig, bands, rows, subset=subset)
        assert {tuple(p) for p in subset[sub].tolist()} == {tuple(p) for p in pairs.tolist() if p[0] % 2 == 0 == p[1] % 2}
        assert (minhash.pairs_from_bands(minhash.band_hashes(sig, bands, rows)) == pairs).all()
    comp = minhash.components(len(texts), np.array(sorted(close)))
    assert all(comp[a] == comp[b] for a, b in close) and len(set(comp[:300])) == 300


def test_column_operations_equal_their_python_definitions():
    from bigmodel_core.data import columns, keys, quality
    from bigmodel_core.data.cleaning import normalize_key

    texts = _samples(11, 4000) + ["<p class='x'>", "&nbsp;", "&#x1F;", "a\u0085b", "x\x7fy", "\x9f", "<a\u00a0href>", "١٢", "&#١٢٣;", "&#𝟙;", "<b\u2003x>", "<b\u200bx>", "x\ufffdy", "\ufffd", "é\ufffd", "\u0080", "a\u009fb"]
    arr = columns.as_array(texts)
    plain = ["" if t is None else t for t in texts]
    assert minhash.scan(arr, 3)[1].tolist() == [len(t.split()) for t in plain]  # validate's word counts
    assert minhash.scan(arr.slice(5, 100), 3)[1].tolist() == [len(t.split()) for t in plain[5:105]]
    words, counts = columns.split_words(arr, lower=True)
    assert counts.tolist() == [len(t.split()) for t in plain] and "" not in set(words.to_pylist())
    lowered = pc.utf8_lower(pa.array(plain[:2])).to_pylist()  # pyarrow's lower (no final-sigma rule)
    assert words.to_pylist()[:counts[0] + counts[1]] == " ".join(lowered).split()
    assert (minhash.scan(arr, 3)[1] == 0).tolist() == [not t.strip() for t in plain]  # validate's blank texts
    chars, control, replacement, markup = text_facts(arr)
    assert chars.tolist() == [len(t) for t in plain]
    assert control.tolist() == [bool(quality.rules._CONTROL.search(t)) for t in plain]
    assert replacement.tolist() == ["\ufffd" in t for t in plain]
    # where a tag or an entity can be, in the text as it is (the scan lower-cases words, not the bytes it checks)
    from tests.test_kernels import markup as markup_definition

    assert markup.any() and markup.tolist() == [markup_definition(t) for t in plain]
    # every text where the HTML rule fires is one the scan marks (the rule's pattern only runs on those)
    assert not (np.array([bool(quality.rules._HTML_LEFT.search(t)) for t in plain]) & ~markup).any()
    assert columns.contains(arr, quality.rules._html_left_re2()).tolist() == [bool(quality.rules._HTML_LEFT.search(t)) for t in plain]
    assert keys.group_keys(arr) == [quality.group_key(t) for t in plain]
    assert keys.group_keys(arr.slice(7, 300)) == [quality.group_key(t) for t in plain[7:307]]  # offsets past 0
    # the key is that of the normalised text: texts equal after normalize_key share it, and only those
    keyed = {}
    for t, k in zip(plain, keys.group_keys(arr)):
        keyed.setdefault(k, set()).add(normalize_key(t))
    assert all(len(v) == 1 for v in keyed.values()) and len(keyed) == len({normalize_key(t) for t in plain})
    hi, lo = keys.group_key_ints(arr)
    assert [f"{h:016x}{v:04x}" for h, v in zip(hi.tolist(), lo.tolist())] == [quality.group_key(t) for t in plain]
    # the patterns' hits are not all false: the samples exercise each rule
    assert sum(columns.contains(arr, quality.rules._html_left_re2())) > 100
    assert control.sum() > 100 and replacement.sum() == 3


def text_facts(arr: pa.Array) -> tuple[np.ndarray, ...]:
    """minhash.Scanner's facts of a string array: code points, control character, U+FFFD, where HTML can start."""
    got = minhash.Scanner(3).scan(arr, want=np.zeros(len(arr), dtype=bool))
    return (got.chars, *((got.flags & flag) > 0 for flag in (scan.CONTROL, scan.REPLACEMENT, scan.MARKUP)))


def test_re2_classes_match_pythons_on_every_code_point():
    """RE2 matches code points, but its \\s and \\d are ASCII: the classes spelled out for it must hold exactly
    the characters Python's \\s, \\d and the control-character rule match, on every code point."""
    import re

    from bigmodel_core.data import columns, quality
    from bigmodel_core.data.charset import WS_BUT_SPACE as WS_CHARS  # the whitespace set, defined once there

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]  # surrogates are not UTF-8
    arr = pa.array(chars, type=pa.large_string())
    for re2, python in ((f"^[ {WS_CHARS}]$", r"\s"), (f"^[{columns.python_class(str.isdecimal)}]$", r"\d")):
        got = np.nonzero(columns.contains(arr, re2))[0]
        want = [i for i, c in enumerate(chars) if re.search(python, c)]
        assert got.tolist() == want, (python, len(got), len(want))
    # the control-character rule, computed on the bytes, on every code point alone and inside a word
    for texts in (chars, [f"a{c}b" for c in chars]):
        lengths, control, replacement, _ = text_facts(pa.array(texts, type=pa.large_string()))
        assert np.nonzero(control)[0].tolist() == [i for i, c in enumerate(chars) if quality.rules._CONTROL.search(c)]
        assert np.nonzero(replacement)[0].tolist() == [chars.index("\ufffd")]
        assert lengths.tolist() == [len(t) for t in texts]


def test_band_buckets_pair_every_two_texts_that_share_a_band():
    """pairs_from_bands against brute force: buckets of two, of several, and one over max_bucket (which
    pairs each member with the first and with its neighbour)."""
    rng = np.random.default_rng(2)
    hashes = rng.integers(0, 400, size=(700, 3)).astype(np.uint32)  # buckets of every size up to ~8
    hashes[:30, 0] = 7777  # one bucket larger than max_bucket below
    got = {tuple(p) for p in minhash.pairs_from_bands(hashes, max_bucket=20).tolist()}
    want = set()
    for b in range(3):
        for v in np.unique(hashes[:, b]):
            members = np.nonzero(hashes[:, b] == v)[0].tolist()
            if len(members) <= 20:
                want |= {(i, j) for k, i in enumerate(members) for j in members[k + 1:]}
            else:
                want |= {(members[0], j) for j in members[1:]} | set(zip(members[:-1], members[1:]))
    assert got == want and len(want) > 1000


def test_column_operations_take_a_chunked_pandas_series():
    from bigmodel_core.data import columns

    s = pd.concat([pd.Series(["a b", None], dtype="str"), pd.Series(["c  d\te"], dtype="str")], ignore_index=True)
    assert isinstance(columns.as_array(s), pa.Array)
    assert minhash.scan(s, 3)[1].tolist() == [2, 0, 3]

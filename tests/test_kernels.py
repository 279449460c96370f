"""The compiled loops of bigmodel_core.data.kernels against their definitions: MinHash signatures, word counts
and vocabulary (validate), word-dropout variants (augment)."""

from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from bigmodel_core.data import minhash
from bigmodel_core.data.hashing import mix, word_hash
from bigmodel_core.data.kernels import scan

# every character Python's str.split() splits on, and some that it does not
SPACES = [c for c in map(chr, range(0x3001)) if c.isspace()]
NOT_SPACES = ["\u200b", "\u00ad", "\x00", "\x7f", "\u180e", "\ufeff", "\u2060", "é", "ß", "İ", "Σ", "ﬁ", "😀"]


def reference_signatures(texts: list[str], k: int) -> np.ndarray:
    """The definition, row by row: word hashes (hashing.word_hash) of the words of the text lower-cased as
    pyarrow does (utf8_lower: no final sigma, unlike str.lower), k-word shingles summed and mixed,
    one-permutation bins, densified by minhash._PROBES."""
    out = np.empty((len(texts), minhash.BINS), dtype=np.uint32)
    for r, text in enumerate(texts):
        words = _lower(text).split()
        if not words:
            continue
        wh = np.array([word_hash(w.encode()) for w in words], dtype=np.uint64)
        starts = range(len(words) - k + 1) if len(words) >= k else [0]
        raw = np.full(minhash.BINS, np.iinfo(np.uint32).max, dtype=np.uint64)
        for s in starts:
            sh = np.uint64(0)
            with np.errstate(over="ignore"):
                for j in range(k):
                    nxt = wh[s + j] if s + j < len(words) else np.uint64(0)
                    sh = (sh + nxt + np.uint64(j + 1)) * minhash._MULS[j % len(minhash._MULS)]
            sh = mix(np.array([sh], dtype=np.uint64))[0]
            b, v = int(sh >> np.uint64(57)), int((sh >> np.uint64(25)) & np.uint64(0xFFFFFFFF))
            raw[b] = min(raw[b], v)
        empty = np.iinfo(np.uint32).max
        for b in range(minhash.BINS):
            if raw[b] != empty:
                out[r, b] = raw[b]
                continue
            out[r, b] = raw.min()
            for t in range(len(minhash._PROBES)):
                donor = raw[minhash._PROBES[t][b]]
                if donor != empty:
                    out[r, b] = int(mix(np.array([donor + np.uint64(t + 1)], dtype=np.uint64))[0] >> np.uint64(32))
                    break
    return out


def markup(text: str) -> bool:
    """scan.MARKUP's definition: a possible tag start ('<' then a letter or '/') with a '>' after it, or a
    possible entity start ('&' then a letter or '#') with a ';' after it."""
    return bool(re.search(r"<[a-zA-Z/].*>", text, re.S) or re.search(r"&[a-zA-Z#].*;", text, re.S))


def _lower(text: str) -> str:
    return pc.utf8_lower(pa.array([text]))[0].as_py()


def adversarial_texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    words = ["Alpha", "beta", "GAMMA", "straße", "İstanbul", "ÉCOLE", "naïve", "x", "a1", "ΣΊΣΥΦΟΣ", "😀ok", "-", "é"]
    words += NOT_SPACES
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.choice([0, 1, 2, 3, 4, 7, 20, 60])):
            parts.append(rng.choice(words))
            parts.append("".join(rng.choice(SPACES + [" "] * 5) for _ in range(rng.choice([1, 1, 2]))))
        text = "".join(parts)
        if rng.random() < 0.3:
            text = rng.choice(SPACES) + text
        out.append(text)
    return out


def test_whitespace_table_is_pythons():
    from bigmodel_core.data.kernels.base import SPACE

    assert len(SPACES) == 29  # Python's whitespace: 10 ASCII, 19 wider (all below U+3001)
    assert {ord(c) for c in SPACES} == set(np.nonzero(SPACE)[0])
    # the kernel splits exactly where str.split() does, for every whitespace character alone and in a word
    texts = [f"a{c}b" for c in SPACES] + [f"a{c}b" for c in NOT_SPACES] + [c for c in SPACES]
    _, words = minhash.scan(texts, 3)
    assert words.tolist() == [len(t.split()) for t in texts]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_scan_equals_the_definition(k):
    texts = adversarial_texts(k, 400)
    sig, words = minhash.scan(texts, k)
    assert words.tolist() == [len(t.split()) for t in texts]
    ref = reference_signatures(texts, k)
    has = np.array([bool(t.split()) for t in texts])
    assert has.sum() > 300 and (~has).sum() > 5
    assert (sig[has] == ref[has]).all()
    # wordless texts: a signature of their own, unlike any other's
    blank = sig[~has]
    assert len({row.tobytes() for row in blank}) == len(blank)
    assert not (blank[:, None, :] == sig[has][None, :, :]).all(axis=2).any()


def test_scan_counts_words_and_signs_only_the_wanted_rows():
    texts = adversarial_texts(11, 300) + [None, ""]
    want = np.array([i % 3 != 0 for i in range(len(texts))])
    got = {}
    sig, words = minhash.scan(pa.array(texts, type=pa.string()), 3, want=want,
                              on_words=lambda d, c: got.update(zip(d.to_pylist(), c.tolist())))
    plain = [t or "" for t in texts]
    assert words.tolist() == [len(t.split()) for t in plain]
    assert (sig[~want] == 0).all()
    signed = want & (words > 0)
    assert (sig[signed] == reference_signatures([t for t, on in zip(plain, signed) if on], 3)).all()
    low, _ = minhash.scan(pa.array(texts, type=pa.string()), 3, want=want, low_bits=True)
    assert low.dtype == np.uint8 and (low == minhash.bbit(sig)).all()
    expected = Counter(w for t, on in zip(plain, want) if on for w in _lower(t).split())
    assert got == dict(expected)


def test_word_table_grows_and_keeps_every_count():
    # 600,000 distinct words: the table starts at 65,536 slots and grows several times mid-batch
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 600_000, size=(3000, 400))
    texts = [" ".join(f"w{i}" for i in row) for row in ids]
    got = {}
    sig, words = minhash.scan(texts, 2, on_words=lambda d, c: got.update(zip(d.to_pylist(), c.tolist())))
    expected = Counter(f"w{i}" for i in ids.ravel())
    assert got == dict(expected) and len(got) > 300_000
    assert (words == 400).all()
    assert (sig[:20] == reference_signatures(texts[:20], 2)).all()


def test_scan_of_a_slice_reads_only_its_rows():
    texts = pa.array(["one two three", "four five six", "seven eight nine ten"], type=pa.large_string())
    sig, words = minhash.scan(texts.slice(1, 2), 3)
    assert words.tolist() == [3, 4]
    assert (sig == reference_signatures(["four five six", "seven eight nine ten"], 3)).all()


def test_word_table_grows_before_a_long_text():
    # one text of 200,000 distinct words: before it the table grows from 65,536 slots to room for all of
    # them at once, so the text is scanned in one go
    text = " ".join(f"w{i}" for i in range(200_000)) + " w7 w7"
    got = {}
    sig, words = minhash.scan([text, "w7"], 3, on_words=lambda d, c: got.update(zip(d.to_pylist(), c.tolist())))
    assert words.tolist() == [200_002, 1]
    assert len(got) == 200_000 and got["w7"] == 4 and got["w199999"] == 1
    # the same signatures as a scan that counts no words (and never stops)
    alone, _ = minhash.scan([text, "w7"], 3)
    assert (sig == alone).all()
    assert (sig[1] == reference_signatures(["w7"], 3)[0]).all()


def test_scanner_keeps_the_words_of_every_part_and_finds_keys_and_facts():
    from bigmodel_core.data.hashing import text_key

    texts = adversarial_texts(21, 600) + [None, "", "a\x00b", "x <b> y", "caf\ufffd", "p\x85q", "&amp; z", "a < b",
                                          "AT&T", "x </p>", "&#39;", "1<2", "& z", "<", "&", "x<\u00e9"]
    arr = pa.array(texts, type=pa.large_string())
    scanner = minhash.Scanner(3, vocab=True)
    want = np.array([i % 4 != 1 for i in range(len(texts))])
    parts = [scanner.scan(arr.slice(s, 97), want=want[s:s + 97]) for s in range(0, len(texts), 97)]
    distinct, counts = scanner.vocabulary()
    plain = [t or "" for t in texts]
    assert dict(zip(distinct.to_pylist(), counts.tolist())) == dict(
        Counter(w for t, on in zip(plain, want) if on for w in _lower(t).split()))
    assert len(distinct) == len(set(distinct.to_pylist()))  # each word once, though it is in many parts
    got = {k: np.concatenate([getattr(p, k) for p in parts]) for k in ("words", "key_hi", "key_lo", "chars", "flags")}
    assert got["words"].tolist() == [len(t.split()) for t in plain]
    assert got["chars"].tolist() == [len(t) for t in plain]
    keys = [text_key([w.encode() for w in _lower(t).split()]) for t in plain]
    assert list(zip(got["key_hi"].tolist(), got["key_lo"].tolist())) == keys
    control = [any(0 <= ord(c) <= 8 or c in "\x0b\x0c" or 0x0e <= ord(c) <= 0x1f or 0x7f <= ord(c) <= 0x9f
                   for c in t) for t in plain]
    assert ((got["flags"] & scan.CONTROL) > 0).tolist() == control and sum(control) > 50
    assert ((got["flags"] & scan.REPLACEMENT) > 0).tolist() == ["\ufffd" in t for t in plain]
    assert ((got["flags"] & scan.MARKUP) > 0).tolist() == [markup(t) for t in plain]
    # a character that str.casefold() folds otherwise than pyarrow lower-cases it (ß, ς): its text is marked
    refold = [any(c.casefold() != _lower(c) for c in t) for t in plain]
    assert ((got["flags"] & scan.CASEFOLD) > 0).tolist() == refold and sum(refold) > 20
    # the words of the texts not wanted are counted (words) but not signed
    sig = np.concatenate([p.sig for p in parts])
    assert (sig[~want] == 0).all() and (sig[want & (got["words"] > 0)] != 0).any(axis=1).all()


def test_scan_lower_cases_every_code_point_as_pyarrow_does():
    # each code point (but surrogates) in a word of its own, between ASCII capitals: the scan, which lower-cases
    # as it reads (charset.fold_table), keys and counts the words of pyarrow's utf8_lower of the text
    from bigmodel_core.data import charset

    cps = [c for c in range(0x30000) if not 0xD800 <= c < 0xE000]
    texts = [f"Q{chr(c)}Z" for c in cps]
    arr = pa.array(texts, type=pa.large_string())
    lowered = pc.utf8_lower(arr)
    scanner = minhash.Scanner(1, vocab=True)
    folded = scanner.scan(arr)
    plain = minhash.Scanner(1).scan(lowered, lower=False)
    assert (folded.key_hi == plain.key_hi).all() and (folded.key_lo == plain.key_lo).all()
    assert (folded.words == plain.words).all() and (folded.chars == [len(t) for t in texts]).all()
    distinct, counts = scanner.vocabulary()
    assert dict(zip(distinct.to_pylist(), counts.tolist())) == dict(
        Counter(w for t in lowered.to_pylist() for w in t.split()))
    assert sum(a != b for a, b in zip(texts, lowered.to_pylist())) > 1000  # many code points do change
    marked = (folded.flags & scan.CASEFOLD) > 0
    assert marked.tolist() == [chr(c).casefold() != low[1:-1] for c, low in zip(cps, lowered.to_pylist())]
    assert 50 < marked.sum() < 500 and marked[cps.index(ord("ß"))] and marked[cps.index(ord("ς"))]
    # above fold_table's end nothing has a lower case or a case folding, so the kernel reads it as it is
    rest = "".join(chr(c) for c in range(charset.FOLD_LIMIT, 0x110000))
    assert pc.utf8_lower(pa.array([rest]))[0].as_py() == rest and rest.casefold() == rest


@pytest.mark.parametrize("lower", [True, False])
def test_scan_reads_words_of_every_length_eight_bytes_at_a_time_as_byte_by_byte(lower):
    # words of 1 to 40 bytes, mostly plain ASCII (the eight-byte path) with capitals, and now and then a
    # byte that path must stop at (space, tab, control, '<', '&', DEL, non-ASCII) at every position,
    # texts ending anywhere in a chunk: keys, word counts, flags and the vocabulary equal the definitions
    from bigmodel_core.data.hashing import text_key

    rng = random.Random(5 if lower else 6)
    plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-_@[]{}~^`|/=+*%$#()"
    odd = ["<", "&", "\x7f", "\x01", "\t", "é", "É", "ß", "😀", "\u00a0", "<b", "&a", "@", "Z", "A", "\x1f", "\x20", ">",
           ";", "&#"]
    texts = []
    for _ in range(3000):
        words = []
        for _ in range(rng.choice([1, 2, 3, 8])):
            w = "".join(rng.choice(plain) for _ in range(rng.randint(1, 40)))
            if rng.random() < 0.3:
                at = rng.randint(0, len(w))
                w = w[:at] + rng.choice(odd) + w[at:]
            words.append(w)
        texts.append(rng.choice([" ", "  ", "\n"]).join(words) + rng.choice(["", " ", "x"]))
    arr = pa.array(texts, type=pa.large_string())
    scanner = minhash.Scanner(2, vocab=True)
    got = scanner.scan(arr, lower=lower)
    read = [_lower(t) if lower else t for t in texts]
    assert got.words.tolist() == [len(t.split()) for t in texts]
    assert list(zip(got.key_hi.tolist(), got.key_lo.tolist())) == [text_key([w.encode() for w in t.split()]) for t in read]
    assert ((got.flags & scan.MARKUP) > 0).tolist() == [markup(t) for t in texts]
    assert ((got.flags & scan.CONTROL) > 0).tolist() == [bool(re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", t))
                                                             for t in texts]
    assert got.chars.tolist() == [len(t) for t in texts]
    distinct, counts = scanner.vocabulary()
    assert dict(zip(distinct.to_pylist(), counts.tolist())) == dict(Counter(w for t in read for w in t.split()))
    if lower:  # the definition of the signatures reads the text lower-cased
        assert (got.sig == reference_signatures(texts, 2)).all()
    assert sum(len(w.encode()) > 16 for t in texts for w in t.split()) > 1000


def test_variants_of_a_slice_with_nulls_equal_the_definition():
    from bigmodel_core.config import AugmentParams
    from bigmodel_core.data.augment import variant, variant_seeds, variants

    texts = ["skip me", None, "a b c d e f", "", "one", "x  y", None, "é ü 漢字 z", "p q r s t u v w"]
    arr = pa.array(texts, type=pa.string()).slice(1)
    p = AugmentParams(copies=1, word_dropout=0.5, swap_prob=0.5, seed=3)
    seeds = variant_seeds(pa.array([f"r{i}" for i in range(len(arr))], type=pa.large_string()), 0, p.seed)
    got = variants(arr, seeds, p).to_pylist()
    assert got == [variant(t or "", int(s), p) for t, s in zip(texts[1:], seeds)]
    assert got[1] != texts[2] and got[0] == "" and got[3] == "one"
    # long texts, spaces single, doubled, leading and trailing, on every byte of the eight-byte steps
    rng = random.Random(8)
    long_texts = ["".join(rng.choice(["a", "bb", "ccc ", " ", "  ", "é", "dddddddd", "漢字 "]) for _ in range(rng.randint(0, 80)))
                  for _ in range(400)]
    seeds = variant_seeds(pa.array([f"q{i}" for i in range(len(long_texts))], type=pa.large_string()), 1, p.seed)
    assert variants(pa.array(long_texts), seeds, p).to_pylist() == [variant(t, int(s), p) for t, s in zip(long_texts, seeds)]


def test_label_noise_counts_are_hashing_vectorizers():
    # label_noise's features: scikit-learn's HashingVectorizer, word 1-2-grams of the lower-cased text with its
    # default token pattern, unsigned counts
    from sklearn.feature_extraction.text import HashingVectorizer

    from bigmodel_core.data.label_noise import ngram_counts

    rng = random.Random(5)
    vocab = ["the", "cat", "SAT", "on", "a", "mat", "x1", "under_score", "42", "Dogs", "ran"]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randrange(0, 30))) for _ in range(300)]
    texts += ["", "a b c", "Hello, world! it's 3pm; e-mail me: a.b@c.de", "tabs\tand\nlines  here", "the the the"]
    x = ngram_counts(texts, bits=12)
    want = HashingVectorizer(n_features=4096, ngram_range=(1, 2), alternate_sign=False, norm=None).transform(texts)
    assert x.shape == (len(texts), 4096) and (x != want).nnz == 0
    assert x[len(texts) - 1].sum() == 3 + 2  # "the" three times, "the the" twice
    # a non-ASCII letter belongs to the word around it
    accents = ngram_counts(["café crème", "cafe creme"], bits=20)
    assert accents[0].sum() == accents[1].sum() == 3
    assert set(accents[0].indices) != set(accents[1].indices)


def test_split_buckets_are_hashlibs_sha256():
    # messages of 0 to 300 bytes behind the salt: the first 8 bytes of hashlib's SHA-256, as a big-endian
    # number, over 2**64
    import hashlib

    from bigmodel_core.data.split import bucket, buckets

    rng = random.Random(4)
    keys = ["".join(rng.choice("0123456789abcdefé漢") for _ in range(rng.randint(0, 100))) for _ in range(2000)]
    keys += ["x" * n for n in range(0, 130)]
    for salt in ("", "salt", "a much longer salt, longer than one block of sixty-four bytes: " * 2):
        got = buckets(pa.array(keys, type=pa.large_string()), salt)
        heads = [int.from_bytes(hashlib.sha256(f"{salt}\0{k}".encode()).digest()[:8], "big") for k in keys]
        assert got.tolist() == [h / 2**64 for h in heads] == [bucket(k, salt) for k in keys]


def test_compiled_mix_is_hashings():
    # one definition of splitmix's constants (hashing): the compiled mix, the numpy mix and mix_int agree
    from bigmodel_core.data import hashing
    from bigmodel_core.data.kernels.base import mix as compiled_mix

    xs = np.array([0, 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15, *(random.Random(2).getrandbits(64) for _ in range(50))],
                  dtype=np.uint64)
    assert [int(compiled_mix(x)) for x in xs] == hashing.mix(xs).tolist() == [hashing.mix_int(int(x)) for x in xs]

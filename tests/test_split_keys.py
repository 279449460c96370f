"""Group keys and the split they give are pinned: a fixed multilingual sample must keep its keys and splits
across library upgrades (pyarrow, Python's Unicode tables), through the Python definition, the compiled scan
and validate alike. A change that moves a row fails here; a deliberate one bumps charset.KEY_VERSION and
updates the values below (and only those)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from bigmodel_core.config import SplitParams, ValidateParams
from bigmodel_core.data import charset, columns, quality, split
from bigmodel_core.data.keys import group_keys

#: text, its normalised form (charset.normalize_key), its group key, its split under the default SplitParams
PINNED = [
    (
        "The quick brown fox jumps over the lazy dog",
        "the quick brown fox jumps over the lazy dog",
        "e97ad451e74059c98dab",
        "train",
    ),
    (
        "THE QUICK  brown\x09fox\x0ajumps over the lazy dog ",
        "the quick brown fox jumps over the lazy dog",
        "e97ad451e74059c98dab",
        "train",
    ),
    ("Die Straße ist naß", "die strasse ist nass", "59a64a3855aa13299132", "train"),
    ("DIE STRASSE IST NASS", "die strasse ist nass", "59a64a3855aa13299132", "train"),
    ("ẞ capital sharp", "ss capital sharp", "ddf0a081812f7ac21e4e", "test"),
    ("İstanbul ve ISPARTA ılık", "i\u0307stanbul ve isparta ılık", "b73f64ab8586ed6a71b8", "train"),
    ("istanbul ve ısparta ılık", "istanbul ve ısparta ılık", "877b013fd7afa3747c72", "train"),
    ("İı Iİ", "i\u0307ı ii\u0307", "ba1a9380961863c27b55", "train"),
    ("ΟΔΟΣ και οδός λόγος", "οδοσ και οδόσ λόγοσ", "5bc7e4b2d9b4dc2d66e3", "train"),
    ("οδοσ και οδόσ λόγοσ", "οδοσ και οδόσ λόγοσ", "5bc7e4b2d9b4dc2d66e3", "train"),
    ("Ωμέγα ΆΈ", "ωμέγα άέ", "bcd813710c47b3c123b3", "train"),
    ("Привет, МИР! Ёлка", "привет, мир! ёлка", "cfdb785795f68f4755e5", "train"),
    ("привет, мир! ёлка", "привет, мир! ёлка", "cfdb785795f68f4755e5", "train"),
    ("東京は晴れ 今日も", "東京は晴れ 今日も", "a6c850102bcd59ea138e", "train"),
    ("中文 简体 繁體", "中文 简体 繁體", "2ce9308a98f9859df002", "train"),
    ("한국어 텍스트", "한국어 텍스트", "e087272ce671acd8574f", "train"),
    ("عربي نص", "عربي نص", "a1466c62f402f53f0035", "val"),
    ("עברית", "עברית", "1b4e9e1c06ba22e7db45", "val"),
    ("I love it 😀🎉 👍🏽", "i love it 😀🎉 👍🏽", "56b0447e22c6a1d1174f", "train"),
    ("👨\u200d👩\u200d👧 family", "👨\u200d👩\u200d👧 family", "317104ea7b0e453b6e7c", "train"),
    ("café naïve", "café naïve", "5351c5d297fb51b049cc", "train"),
    ("cafe\u0301 nai\u0308ve", "cafe\u0301 nai\u0308ve", "3ffd5b3e18a84fa970ca", "test"),
    ("ＦＵＬＬ\u3000ｗｉｄｔｈ", "ｆｕｌｌ ｗｉｄｔｈ", "98886663ad7d198ae8d4", "train"),
    ("full width", "full width", "554679e317058a750503", "val"),
    ("ﬁne ﬂour ﬀ ﬃ ﬆ", "fine flour ff ffi st", "9a82508ec068949c96b7", "train"),
    ("Ǆemal ǅ ǆ", "ǆemal ǆ ǆ", "175f49ba68945fab1ec2", "val"),
    ("Ꭰꭰ Cherokee", "ᎠᎠ cherokee", "69d5935f7bc381a4ca13", "train"),
    ("µ micro ſ long s", "μ micro s long s", "ee504f70f9d27de39580", "train"),
    ("ǰ ΐ ŉ", "j\u030c ι\u0308\u0301 ʼn", "4cdeeea67891d89972c7", "train"),
    (
        "\xa0nbsp\u2003em\u3000ideographic\u2028line\x85next",
        "nbsp em ideographic line next",
        "0935eefc340f6b9a8dbf",
        "train",
    ),
    ("zero\u200bwidth soft\xadhyphen", "zero\u200bwidth soft\xadhyphen", "36d35ceb1ed10d869b14", "test"),
]
#: the committed case-folding table of KEY_VERSION 1 (bigmodel_core/data/casefold.tsv)
TABLE_SHA256 = "2bf5e6e7f20d7472579ee7442f3fdd4188db0c8629365df2c51a995de619a911"


def test_the_key_definition_is_the_pinned_version():
    # regenerating the table on another Python or pyarrow can change keys: that needs a new KEY_VERSION
    assert charset.KEY_VERSION == 1
    assert hashlib.sha256(charset._TABLE.read_bytes()).hexdigest() == TABLE_SHA256


def test_normalisation_and_keys_of_a_multilingual_sample_are_pinned():
    texts = [t for t, *_ in PINNED]
    assert [charset.normalize_key(t) for t in texts] == [n for _, n, _, _ in PINNED]
    keys = [k for _, _, k, _ in PINNED]
    assert [quality.group_key(t) for t in texts] == keys  # the Python definition
    assert group_keys(columns.as_array(texts)) == keys  # the compiled scan (and its re-keyed texts)
    # what the rule says, in the sample: case, whitespace runs, ß/ẞ and final sigma fold together; dotted and
    # dotless i, composed and combining accents, full-width and ASCII letters stay apart
    key = dict(zip(texts, keys, strict=True))
    assert key["Die Straße ist naß"] == key["DIE STRASSE IST NASS"]
    assert key["ΟΔΟΣ και οδός λόγος"] == key["οδοσ και οδόσ λόγοσ"]
    assert key["İstanbul ve ISPARTA ılık"] != key["istanbul ve ısparta ılık"]
    assert key["café naïve"] != key["cafe\u0301 nai\u0308ve"]
    assert key["ＦＵＬＬ\u3000ｗｉｄｔｈ"] != key["full width"]


def test_splits_of_the_sample_are_pinned():
    p = SplitParams()
    keys = [k for _, _, k, _ in PINNED]
    want = [s for *_, s in PINNED]
    assert [split.assign(k, None, p) for k in keys] == want
    frame = pd.DataFrame({"group_key": keys, "fixed_split": pd.Series([None] * len(keys), dtype="str")})
    assert split.assign_frame(frame, p).tolist() == want
    assert set(want) == {"train", "val", "test"}


def test_validate_gives_the_sample_its_pinned_keys():
    # through the validate stage's checker (quality.check): each passing row keeps the key pinned for its text,
    # and texts with one key are duplicates
    texts = [t for t, *_ in PINNED]
    n = len(texts)
    df = pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(n)],
            "source": "t",
            "source_file": "f.csv",
            "source_row": pd.Series(range(1, n + 1), dtype="int64"),
            "text": pd.Series(texts, dtype="str"),
            "label": pd.Series(["a"] * n, dtype="str"),
            "fixed_split": pd.Series([None] * n, dtype="str"),
        }
    )
    r = quality.check(df, ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0), ["a", "b"])
    pinned = {t: k for t, _, k, _ in PINNED}
    got = dict(zip(r.passed["text"], r.passed["group_key"], strict=True))
    assert all(pinned[t] == k for t, k in got.items())
    # the second text of each pair with one key is its first's duplicate; the one with U+0085 has a control
    # character; every other text passes
    dup = r.quarantined[r.quarantined["rule"] == "duplicate"]["text"].tolist()
    assert dup == [PINNED[i][0] for i in (1, 3, 9, 12)]
    assert len(got) == n - 5


def test_the_scan_reads_the_committed_table_not_the_installed_libraries():
    lower, fold = charset.folds()
    table = charset.fold_table()
    assert len(lower) > 1000 and len(fold) > 1000
    assert all(int(table[c]) & 0x1FFFFF == low for c, low in lower.items())
    ascii_rule = np.arange(0x80, dtype=np.uint32)
    ascii_rule[0x41:0x5B] += 32
    assert (table[:0x80] == ascii_rule).all()
    marked = {c for c in range(charset.FOLD_LIMIT) if table[c] & charset.FOLDS_OTHERWISE}
    # marked: where the case folding is not the lower case (then the text is keyed again by charset.casefold)
    assert marked == {c for c in set(lower) | set(fold) if fold.get(c, chr(c)) != chr(lower.get(c, c))}
    assert {"ß", "ς", "ﬁ"} <= {chr(c) for c in marked}

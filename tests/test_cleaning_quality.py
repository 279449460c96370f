import pandas as pd
import pytest

from bigmodel_core.config import CleanParams, Rule, ValidateParams
from bigmodel_core.data import demo
from bigmodel_core.data.cleaning import clean_text
from bigmodel_core.data.quality import check


def test_clean_text_repairs_entities_tags_and_whitespace():
    p = CleanParams(max_chars=40)
    assert clean_text("<p>Tom&amp;Jerry&#39;s  <b>show</b></p>", p) == "Tom&Jerry's show"
    assert clean_text("Haiti #39;s straits quot;x quot;", p) == "Haiti 's straits \"x \""
    assert clean_text("&lt;b&gt;bold&lt;/b&gt; end", p) == "bold end"
    assert clean_text("  \t ", p) == ""
    assert clean_text(None, p) is None
    assert len(clean_text("word " * 100, p)) == 40
    assert clean_text("A<B and C>D", p) == "A D"  # tag-like span: stripped, documented behaviour


def _frame(rows):
    df = pd.DataFrame(rows, columns=["text", "label"])
    n = len(df)
    return pd.DataFrame({
        "row_id": [f"r{i}" for i in range(n)], "source": "t", "source_file": "f.csv",
        "source_row": pd.Series(range(1, n + 1), dtype="int64"),
        "text": pd.Series(df["text"], dtype="str"), "label": pd.Series(df["label"], dtype="str"),
        "fixed_split": pd.Series([None] * n, dtype="str"),
    })


LOOSE = ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0)


def test_each_rule_quarantines_with_reason_and_rows_balance():
    df = _frame([
        ("good a", "x"), ("good b", "y"), ("", "x"), ("no label", None), ("odd", "z"),
        ("Same text", "x"), ("same  TEXT", "y"), ("dup", "x"), ("dup", "x"), ("dup", "x"),
    ])
    r = check(df, LOOSE, ["x", "y"])
    by_rule = r.quarantined.groupby("rule")["row_id"].apply(list).to_dict()
    assert by_rule == {"empty_text": ["r2"], "missing_label": ["r3"], "unknown_label": ["r4"],
                       "conflicting_labels": ["r5", "r6"], "duplicate": ["r8", "r9"]}
    assert r.passed["row_id"].tolist() == ["r0", "r1", "r7"]
    assert r.report["rows_in"] == r.report["rows_out"] + r.report["rows_quarantined"] == 10
    assert "not one of ['x', 'y']" in r.quarantined.set_index("row_id").loc["r4", "reason"]
    assert r.ok


def test_thresholds_and_policies_close_the_gate():
    df = _frame([("a", "x"), ("b", "y"), ("c", "q"), ("d", "x")])
    p = ValidateParams(min_rows=1, min_rows_per_class=1, rules={"unknown_label": Rule(max_fraction=0.1)})
    r = check(df, p, ["x", "y"])
    assert not r.ok and any("rule unknown_label: 1 row(s) = 25.0% > max_fraction 10.0%" in f and "f.csv row 3" in f for f in r.failures)
    r = check(df, ValidateParams(min_rows=1, min_rows_per_class=1, rules={"unknown_label": Rule(policy="fail")}), ["x", "y"])
    assert not r.ok and "policy fail" in r.failures[0]
    r = check(df, ValidateParams(min_rows=1, min_rows_per_class=1, rules={"unknown_label": Rule(policy="warn")}), ["x", "y"])
    assert r.ok and len(r.passed) == 4 and r.report["rules"]["unknown_label"]["rows"] == 1
    r = check(df, ValidateParams(min_rows=1, min_rows_per_class=2, max_quarantine_fraction=1), ["x", "y"])
    assert any("class 'y' has 1 passing row(s)" in f for f in r.failures)


def test_demo_corpus_dirt_is_found_at_known_rates():
    raw = demo.generate(rows=3000, seed=7)
    df = _frame(list(zip(raw["text"], raw["label"])))
    from bigmodel_core.data.cleaning import clean_text
    df["text"] = pd.Series([clean_text(t, CleanParams()) for t in df["text"]], dtype="str")
    r = check(df, LOOSE, list(demo.LABELS))
    injected = raw["dirt"].value_counts()
    rules = r.report["rules"]
    assert rules["empty_text"]["rows"] == injected["empty_text"]
    assert rules["missing_label"]["rows"] == injected["missing_label"]
    assert rules["unknown_label"]["rows"] == injected["unknown_label"]
    # each injected conflict quarantines itself and at least the original it contradicts
    assert rules["conflicting_labels"]["rows"] >= 2 * injected["conflicting_labels"] - 2
    assert rules["duplicate"]["rows"] >= injected["duplicate"] - injected["conflicting_labels"]
    assert rules["too_short"]["rows"] == injected["short"]
    assert rules["control_chars"]["rows"] == injected["control_chars"]
    assert rules["html_left"]["rows"] == 0  # clean removed every injected tag and entity
    assert r.report["rows_in"] == 3000 == r.report["rows_out"] + r.report["rows_quarantined"]
    assert set(r.passed["label"]) == set(demo.LABELS)
    assert len(raw) == 3000


def test_duplicate_keeps_the_fixed_test_copy():
    df = _frame([("same text", "x"), ("other", "y"), ("Same  text", "x")])
    df["fixed_split"] = pd.Series(["train", "train", "test"], dtype="str")
    r = check(df, LOOSE, ["x", "y"])
    assert r.quarantined["row_id"].tolist() == ["r0"]
    assert r.passed["row_id"].tolist() == ["r1", "r2"]


def test_text_rules_name_the_row_and_the_limit_broken():
    rows = [("fine text about the match", "x"), ("?", "x"), ("bell\x07 inside", "y"), ("left <b>bold</b> here", "y"),
            ("esc \x1b[0m code", "x"), ("one two three four five six", "y"), ("ok then", "x"), ("a fine row", "y")]
    p = ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0, rules={
        "too_short": {"policy": "quarantine", "min_chars": 2}, "too_long": {"policy": "quarantine", "max_words": 5},
        "control_chars": {"policy": "quarantine"}, "html_left": {"policy": "quarantine"}})
    r = check(_frame(rows), p, ["x", "y"])
    reasons = dict(zip(r.quarantined["text"], zip(r.quarantined["rule"], r.quarantined["reason"])))
    assert reasons == {
        "?": ("too_short", "text has 1 character(s) and 1 word(s), under min_chars 2"),
        "bell\x07 inside": ("control_chars", "control character U+0007 at character 5"),
        "esc \x1b[0m code": ("control_chars", "control character U+001B at character 5"),
        "left <b>bold</b> here": ("html_left", "HTML left after cleaning: '<b>'"),
        "one two three four five six": ("too_long", "text has 27 character(s) and 6 word(s), over max_words 5"),
    }
    assert r.report["rows_in"] == 8 == len(r.passed) + len(r.quarantined)
    assert set(r.quarantined["source_file"]) == {"f.csv"} and r.quarantined["source_row"].tolist() == [2, 3, 4, 5, 6]
    # warn keeps the rows and counts them
    r = check(_frame(rows), ValidateParams(min_rows=1, min_rows_per_class=1, rules={"html_left": {"policy": "warn"}}), ["x", "y"])
    assert r.report["rules"]["html_left"]["rows"] == 1 and "left <b>bold</b> here" in set(r.passed["text"])


def test_dataset_rules_fail_or_warn_with_the_figures():
    rows = [(f"sports text number {i}", "x") for i in range(30)] + [("a science text", "y"), ("another science one", "y")]
    strict = ValidateParams(min_rows=1, min_rows_per_class=3, rules={"class_imbalance": {"policy": "fail", "max_ratio": 10}})
    r = check(_frame(rows), strict, ["x", "y"])
    assert r.failures == ["rule class_imbalance (fail): largest class 'x' has 30 rows, 15.0x the smallest 'y' (2); "
                          "max_ratio is 10",
                          "rule too_few_rows_per_class (fail): class 'y' has 2 passing row(s), min_rows_per_class is 3"]
    assert r.report["dataset_rules"]["class_imbalance"]["value"] == 15.0
    lenient = ValidateParams(min_rows=1, min_rows_per_class=3, rules={"class_imbalance": {"policy": "warn", "max_ratio": 10},
                                                                       "too_few_rows_per_class": {"policy": "warn"}})
    r = check(_frame(rows), lenient, ["x", "y"])
    assert r.ok and len(r.report["warnings"]) == 2 and r.report["warnings"][0].startswith("rule class_imbalance (warn)")


def test_truncated_rule_counts_rows_longer_than_the_token_budget():
    rows = [(" ".join(["w"] * n) + f" t{i}", "x" if i % 2 else "y") for i, n in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])]
    p = ValidateParams(min_rows=1, min_rows_per_class=1, rules={"truncated": {"policy": "fail", "max_fraction": 0.3}})
    r = check(_frame(rows), p, ["x", "y"], max_tokens=6)  # words: 2..11, so 5 rows have more than 6
    t = r.report["dataset_rules"]["truncated"]
    assert (t["rows"], t["value"], t["max_tokens"], t["passed"]) == (5, 0.5, 6, False)
    assert r.failures == ["rule truncated (fail): 5 of 10 passing rows (50.0%) have more than tokenizer.max_length 6 "
                          "words, so the model sees only part of them; max_fraction is 30.0% (raise "
                          "tokenizer.max_length or choose tokenizer.truncation)"]
    assert len(r.passed) == 10  # a dataset rule judges, it moves no row
    assert check(_frame(rows), p, ["x", "y"], max_tokens=9).ok  # 2 of 10 = 20% <= 30%
    r = check(_frame(rows), p, ["x", "y"])  # no token budget given: not checked
    assert r.ok and r.report["dataset_rules"]["truncated"]["value"] is None


def test_demo_near_duplicates_are_found_and_kept_in_one_split():
    from bigmodel_core.config import load_params
    from bigmodel_core.data.split import assign_frame
    from tests.conftest import REPO

    raw = demo.generate(rows=3000, seed=7)
    df = _frame(list(zip(raw["text"], raw["label"])))
    from bigmodel_core.data.cleaning import clean_text
    df["text"] = pd.Series([clean_text(t, CleanParams()) for t in df["text"]], dtype="str")
    p = load_params(REPO / "params.yaml")
    r = check(df, p.validate, list(demo.LABELS))
    rule = r.report["rules"]["near_duplicate"]
    assert rule["policy"] == "warn" and rule["rows"] == rule["clusters"] >= 27
    key_of = dict(zip(r.passed["text"], r.passed["group_key"]))
    injected = raw[raw["dirt"] == "near_duplicate"]["text"].tolist()
    # every injected copy whose original passed the earlier rules shares its original's group key
    checked = [t for t in injected if t[: -len(" indeed")] in key_of and t in key_of]
    assert len(checked) >= 25 and all(key_of[t] == key_of[t[: -len(" indeed")]] for t in checked)
    # so the split never puts a near-copy of a test row in train
    split = dict(zip(r.passed["text"], assign_frame(r.passed, p.split)))
    assert all(split[t] == split[t[: -len(" indeed")]] for t in checked)
    pair = rule["pairs"][0]
    assert pair["jaccard"] >= 0.7 and {"source_file", "source_row", "text", "label"} <= set(pair["a"])


def test_near_duplicate_policies_and_a_fixed_test_twin():
    base = "the striker scored twice in the cup final on sunday evening"
    rows = [(base, "x"), (base + " again", "x"), ("a completely different text about markets and banks", "y"),
            ("researchers found a new species of frog in the forest", "y"), (base + " too", "x")]
    frame = _frame(rows)
    frame.loc[4, "fixed_split"] = "test"  # the third copy belongs to a fixed test set
    frame.loc[1, "fixed_split"] = "train"  # this one cannot move to test
    rules = {"near_duplicate": {"policy": "quarantine", "min_jaccard": 0.7}}
    r = check(frame, ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0, rules=rules), ["x", "y"])
    q = dict(zip(r.quarantined["source_row"], r.quarantined["reason"]))
    assert set(q) == {1, 2} and set(r.quarantined["rule"]) == {"near_duplicate"}
    assert q[2].startswith("near-duplicate (Jaccard ") and q[2].endswith("of f.csv row 5, a fixed test row it cannot follow into test")
    assert q[1].endswith("of f.csv row 5, which is kept")  # the fixed test copy is the one kept
    # warn: the copies stay and go to test with their fixed twin; the fixed train copy still cannot
    rules["near_duplicate"]["policy"] = "warn"
    r = check(frame, ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0, rules=rules), ["x", "y"])
    assert r.quarantined["source_row"].tolist() == [2]
    kept = r.passed.set_index("source_row")
    assert kept.loc[1, "fixed_split"] == "test" and kept.loc[1, "group_key"] == kept.loc[5, "group_key"]
    assert r.report["rules"]["near_duplicate"]["rows"] == 2 and r.report["rows_in"] == 5 == len(r.passed) + len(r.quarantined)
    # fail closes the gate
    rules["near_duplicate"]["policy"] = "fail"
    r = check(frame, ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0, rules=rules), ["x", "y"])
    assert any(f.startswith("rule near_duplicate (policy fail): 2 row(s)") for f in r.failures)


def test_a_row_outside_any_near_duplicate_cluster_keeps_its_own_group_key():
    """A passing row's group key is its text's (group_key) unless it is in a near-duplicate cluster, whose
    members share their cluster's: with no pair found at all, and with one pair among unrelated rows."""
    from bigmodel_core.data.quality import group_key

    rows = [(f"unrelated text number {i} " + " ".join(str(i * j + 7) for j in range(12)), "ab"[i % 2])
            for i in range(60)]
    for extra in ([], [(rows[3][0] + " indeed", "b")]):
        r = check(_frame(rows + extra), LOOSE, ["a", "b"])
        assert r.report["rules"]["near_duplicate"]["clusters"] == len(extra)
        own = r.passed["text"].map(group_key)
        in_cluster = r.passed["text"].isin([rows[3][0]] + [t for t, _ in extra])
        assert (r.passed["group_key"] == own)[~in_cluster].all() and len(r.passed) == 60 + len(extra)
        assert r.passed.loc[in_cluster, "group_key"].nunique() == 1


def test_near_duplicate_threshold_is_bounded_and_the_bounds_work():
    import pydantic

    for bad in (1.0, 0.05):
        with pytest.raises(pydantic.ValidationError, match="min_jaccard"):
            ValidateParams(rules={"near_duplicate": {"min_jaccard": bad}})
    rows = [("the striker scored twice in the cup final on sunday evening", "x"),
            ("the striker scored twice in the cup final on sunday evening again", "x"), ("markets fell on monday", "y")]
    for edge in (0.1, 0.99):
        p = ValidateParams(min_rows=1, min_rows_per_class=1, rules={"near_duplicate": {"min_jaccard": edge}})
        found = check(_frame(rows), p, ["x", "y"]).report["rules"]["near_duplicate"]["clusters"]
        assert found == (1 if edge == 0.1 else 0)


def test_validate_profile_equals_a_profile_of_the_passing_rows():
    """validate counts words during its near-duplicate search (every usable row) and takes the quarantined
    rows' words away afterwards; rows that pass under a warn policy are counted then. The result must equal a
    fresh profile of the rows that passed."""
    from bigmodel_core.data.profile import profile
    from bigmodel_core.data.quality import Checker

    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    df = _frame([
        (base, "x"), (base, "x"), (base + " again", "x"),  # a duplicate, a near-duplicate
        ("Other Words Entirely here", "y"), ("unique zebra text", "y"), ("Zebra unique TEXT", "y"),
        ("labelled outside the set", "z"),  # unknown label, passing under warn: counted in write()
        ("   ", "x"), ("tiny", "y"), ("ÉTÉ été Été words", "x"),
    ])
    p = ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0,
                       rules={"unknown_label": Rule(policy="warn"), "too_short": Rule(min_words=2),
                              "near_duplicate": Rule(policy="quarantine", min_jaccard=0.7, shingle_words=3)})
    passed, aside = [], []
    checker = Checker(p, ["x", "y"])
    checker.scan(lambda: iter([df.iloc[:4], df.iloc[4:]]))
    checker.write(passed.append, aside.append)
    passed, aside = pd.concat(passed), pd.concat(aside)
    assert set(aside["rule"]) >= {"duplicate", "near_duplicate", "empty_text", "too_short"}
    assert "labelled outside the set" in set(passed["text"])
    got, want = checker.profiler.result(), profile(passed["text"], passed["label"])
    assert got == want
    # "the": three times in the one kept copy of the base text, once in "labelled outside the set"
    assert got["vocab"]["the"] == 4 and "again" not in got["vocab"] and got["vocab"]["été"] == 3


def test_entity_repair_patterns_equal_their_readable_form():
    """cleaning's repair patterns put the look-behind after the first character (for speed); they must
    replace exactly what the readable form does, on strings built from the characters that matter."""
    import random
    import re

    from bigmodel_core.data import cleaning

    readable = [(re.compile(r"(?<![&\w])#(\d{1,5});"), cleaning._BROKEN_NUMERIC, r"&#\1;"),
                (re.compile(r"(?<![&\w])(quot|amp|lt|gt|nbsp|apos);"), cleaning._BROKEN_NAMED, r"&\1;")]
    rng = random.Random(4)
    parts = ["#", "&", ";", "quot", "amp", "lt", "gt", "nbsp", "apos", "1", "٣", "x", " ", "é", "_", "#39", "123456", "q"]
    samples = ["".join(rng.choice(parts) for _ in range(rng.randint(1, 12))) for _ in range(30000)]
    for plain, fast, repl in readable:
        assert [fast.sub(repl, t) for t in samples] == [plain.sub(repl, t) for t in samples]
        assert sum(plain.sub(repl, t) != t for t in samples) > 100  # the samples exercise the pattern


def test_clean_counts_texts_longer_than_max_chars_in_characters_not_bytes():
    import pyarrow as pa

    from bigmodel_core.stages.clean import _longer_than

    texts = pa.array(["é" * 5, "é" * 6, "abcdef", "abcde", "", None, "😀" * 2], type=pa.large_string())
    assert _longer_than(texts, 5) == 2  # "éééééé" and "abcdef"; "ééééé" is 10 bytes but 5 characters
    assert _longer_than(texts, 1) == 5
    assert _longer_than(texts, 6) == 0
    assert _longer_than(texts.slice(2, 2), 5) == 1  # a slice reads its own offsets


# --------------------------------------------------------------------------- a served model refuses what training refuses
#: texts that one rule or another judges on their own (tests/test_serving.py sends them to a served model too)
ADVERSARIAL = [
    "", "   ", "\t\n \r\n", "\u00a0\u2003",                  # empty, spaces, every kind of whitespace
    "a", "é", "ok", "\u200b",                               # one character (two bytes), two, a zero-width space
    "bad\x01byte in the text", "del\x7f char", "next\x85line c1",   # control characters, C0, DEL and C1
    "caf\ufffd au lait",                                    # U+FFFD: bytes that were not text
    "<p></p>", "<b> </b>", "&amp;",                         # nothing but markup, one character once unescaped
    "<b>bold</b> and plain", "&amp;lt;b&amp;gt; escaped twice", "a <br/> b <i>c",   # HTML that cleaning takes away
    "an &zzz; entity no one knows",                         # markup left after cleaning
    "x" * 3000, "word " * 800, "two words",                 # long: cut by clean.max_chars; many words; short
    "The striker scored twice in the derby",
]


def validate_verdicts(texts: list[str], p: ValidateParams, clean_p: CleanParams) -> list[str | None]:
    """The rule validate sets each row aside by (quarantine) or stops at (fail), after the clean stage's cleaning
    (clean_array); one text per check (beside a plain row that passes), so that no rule about copies comes in."""
    import re

    import pyarrow as pa

    from bigmodel_core.data.cleaning import clean_array

    out = []
    for text in texts:
        cleaned = clean_array(pa.array([text], type=pa.large_string()), clean_p).to_pylist()[0]
        r = check(_frame([(cleaned, "sports"), ("Shares rose as the markets opened", "travel")]), p, ["sports", "travel"])
        assert set(r.quarantined["row_id"]) <= {"r0"}
        if len(r.quarantined):
            out.append(r.quarantined["rule"].iloc[0])
            continue
        failed = [m.group(1) for f in r.failures for m in [re.match(r"rule (\w+) \(policy fail\)", f)] if m]
        out.append(failed[0] if failed else None)
    return out


@pytest.mark.parametrize("policies", [
    {"empty_text": "quarantine", "undecodable": "quarantine", "too_short": "quarantine", "too_long": "quarantine",
     "control_chars": "quarantine", "html_left": "quarantine"},
    {"empty_text": "quarantine", "undecodable": "warn", "too_short": "quarantine", "too_long": "warn",
     "control_chars": "quarantine", "html_left": "warn"},
    {"empty_text": "fail", "undecodable": "fail", "too_short": "warn", "too_long": "fail",
     "control_chars": "warn", "html_left": "quarantine"},
], ids=["all-quarantine", "repo-like", "fail-and-warn"])
def test_text_verdicts_are_validates_on_adversarial_texts(policies):
    """quality.text_verdicts (what a served model refuses, after the model's cleaning: clean_text) gives each text
    the rule validate gives its row (after the clean stage: clean_array), warn rules passing."""
    from bigmodel_core.config import TEXT_ROW_RULES
    from bigmodel_core.data.quality import text_verdicts

    settings = {"too_short": {"min_chars": 3, "min_words": 2}, "too_long": {"max_chars": 1000, "max_words": 300}}
    p = ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0, rules={
        **{r: {"policy": policy, **settings.get(r, {})} for r, policy in policies.items()},
        "label_noise": {"policy": "warn", "sample_rows": 0}})
    clean_p = CleanParams(max_chars=2000)
    served = [v[0] if v else None for v in text_verdicts([clean_text(t, clean_p) or "" for t in ADVERSARIAL], p)]
    expected = validate_verdicts(ADVERSARIAL, p, clean_p)
    assert served == expected
    if "fail" not in policies.values():  # the whole frame at once: each row's quarantine rule is the same
        import pyarrow as pa

        from bigmodel_core.data.cleaning import clean_array

        cleaned = clean_array(pa.array(ADVERSARIAL, type=pa.large_string()), clean_p).to_pylist()
        r = check(_frame([(t, "sports") for t in cleaned]), p, ["sports", "travel"])
        rule_of = dict(zip(r.quarantined["row_id"], r.quarantined["rule"]))
        assert [rule_of.get(f"r{i}") for i in range(len(ADVERSARIAL))] == served
    # every rule that refuses here refuses some text, and a text breaking only warn rules passes
    assert {r for r in TEXT_ROW_RULES if policies[r] != "warn"} <= set(served)
    assert served[ADVERSARIAL.index("The striker scored twice in the derby")] is None

import pandas as pd
import pytest

from bigmodel_core.config import AugmentParams, SplitParams
from bigmodel_core.data.augment import augment
from bigmodel_core.data.quality import group_key
from bigmodel_core.data.split import assign, assign_frame, check_split
from bigmodel_core.errors import GateFailed


def frame(n, start=0, fixed=None, labels=("a", "b", "c")):
    texts = [f"text number {i}" for i in range(start, start + n)]
    return pd.DataFrame({
        "row_id": [f"r{i}" for i in range(start, start + n)], "source": "s", "source_file": "f",
        "source_row": pd.Series(range(start, start + n), dtype="int64"),
        "text": pd.Series(texts, dtype="str"), "label": pd.Series([labels[i % len(labels)] for i in range(start, start + n)], dtype="str"),
        "fixed_split": pd.Series([fixed] * n, dtype="str"), "group_key": pd.Series([group_key(t) for t in texts], dtype="str"),
    })


P = SplitParams(val_fraction=0.1, test_fraction=0.2)


def test_split_is_stable_when_new_rows_arrive():
    old = frame(2000)
    both = pd.concat([old, frame(3000, start=2000)], ignore_index=True)
    a, b = assign_frame(old, P), assign_frame(both, P)
    assert (a.to_numpy() == b.iloc[:2000].to_numpy()).all()


def test_split_fractions_are_close_per_class():
    df = frame(6000)
    s = assign_frame(df, P)
    for lab, grp in s.groupby(df["label"]):
        share = grp.value_counts(normalize=True)
        assert abs(share["test"] - 0.2) < 0.03
        assert abs(share["val"] - 0.08) < 0.03  # 10% of the 80% that is not test


def test_fixed_splits_are_kept_and_same_text_shares_split():
    t = assign_frame(frame(300, fixed="test"), P)
    assert set(t) == {"test"}
    tr = assign_frame(frame(300, fixed="train"), P)
    assert set(tr) == {"train", "val"}
    dup = frame(2)
    dup["group_key"] = group_key("Same Text")
    s = assign_frame(dup, P)
    assert s.iloc[0] == s.iloc[1]


@pytest.mark.parametrize("params", [P, SplitParams(val_fraction=0.5, test_fraction=0.01, salt="other"),
                                    SplitParams(val_fraction=0.01, test_fraction=0.4)])
def test_assign_frame_is_assign_row_by_row(params):
    df = frame(3000)
    df["fixed_split"] = pd.Series(["test", "train", None, "val"] * 750, dtype="str")
    expected = [assign(k, None if pd.isna(f) else f, params) for k, f in zip(df["group_key"], df["fixed_split"])]
    got = assign_frame(df, params)
    assert got.tolist() == expected and list(got.index) == list(df.index)
    assert set(expected) == {"train", "val", "test"}


def test_augmented_row_ids_name_parent_and_copy():
    df = frame(50)
    out, _ = augment(df, AugmentParams(copies=3, word_dropout=0.2, swap_prob=0.2), P)
    variants = out[out["is_augmented"]]
    assert variants["row_id"].tolist() == [f"{r}-aug{k}" for r in variants["parent_id"].iloc[::3] for k in range(3)]


def test_augment_makes_train_only_variants_deterministically():
    df = frame(400)
    p = AugmentParams(copies=2, word_dropout=0.3, swap_prob=0.3)
    out, rep = augment(df, p, P)
    out2, _ = augment(df, p, P)
    pd.testing.assert_frame_equal(out, out2)
    variants = out[out["is_augmented"]]
    parents = set(df.loc[assign_frame(df, P) == "train", "row_id"])
    assert set(variants["parent_id"]) == parents and len(variants) == 2 * len(parents) == rep["variants"]
    out["split"] = assign_frame(out, P)
    assert set(out.loc[out["is_augmented"], "split"]) == {"train"}
    counts = check_split(out)
    assert counts["test"]["a"] > 0


def test_check_split_refuses_leaks():
    df = frame(60)
    df["parent_id"], df["is_augmented"] = df["row_id"], False
    df["split"] = assign_frame(df, P)
    bad = df.copy()
    bad.loc[bad.index[0], "is_augmented"] = True
    bad.loc[bad.index[0], "split"] = "test"
    with pytest.raises(GateFailed, match="augmented row"):
        check_split(bad)
    leak = pd.concat([df, df.head(1).assign(row_id="copy", split="test" if df["split"].iloc[0] != "test" else "train")], ignore_index=True)
    with pytest.raises(GateFailed, match="more than one split"):
        check_split(leak)


@pytest.mark.parametrize("dropout,swap", [(0.3, 0.3), (0.9, 0.9), (0.0, 0.5), (0.5, 0.0)])
def test_column_variants_equal_the_word_by_word_definition(dropout, swap):
    """augment makes variants for a whole column with array operations; each must equal `variant`, the
    word-by-word definition (dropout, keep one word when all are dropped, left-to-right swaps)."""
    import random

    import pyarrow as pa

    from bigmodel_core.data.augment import variant, variant_seeds, variants

    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(40)]
    texts = ["", "one", "a b", "a  b", " lead", "trail ", "x y z w v u t s r q", "é ü 漢字"] + [
        " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 30))) for _ in range(1500)]
    p = AugmentParams(copies=1, word_dropout=dropout, swap_prob=swap, seed=7)
    seeds = variant_seeds(pa.array([f"r{i}" for i in range(len(texts))], type=pa.large_string()), 0, p.seed)
    got = variants(pa.array(texts, type=pa.large_string()), seeds, p).to_pylist()
    assert got == [variant(t, int(s), p) for t, s in zip(texts, seeds)]
    changed = sum(g != t for g, t in zip(got, texts))
    assert changed > 0.8 * len(texts)  # the variants differ from their parents
    # every variant keeps the parent's words (dropout removes, swaps reorder: nothing new appears)
    assert all(set(g.split(" ")) <= set(t.split(" ")) for g, t in zip(got, texts))
    # a seed gives its variant: a different copy number gives other seeds
    assert not (variant_seeds(pa.array(["r0"], type=pa.large_string()), 1, p.seed) == seeds[:1]).any()

import gzip
import io
import json
import tarfile

import pandas as pd
import pytest

from bigmodel_core.config import Source
from bigmodel_core.data import schemas
from bigmodel_core.data.formats import read_source
from bigmodel_core.errors import DataError


def src(**kw):
    base = {"name": "s", "path": "x.csv", "format": "csv"}
    base.update(kw)
    return Source(**base)


def test_csv_with_header_and_several_text_columns(tmp_path):
    (tmp_path / "a.csv").write_text('title,body,y\n"Hi, there",World,1\nB,,2\n,,\n')
    df = read_source(src(path="a.csv", text=["title", "body"], label="y", label_map={"1": "pos", "2": "neg"}), tmp_path)
    schemas.RAW.validate(df)
    assert df["text"].tolist()[:2] == ["Hi, there World", "B"]
    assert df["label"].tolist()[:2] == ["pos", "neg"]
    assert pd.isna(df["text"].iloc[2]) and pd.isna(df["label"].iloc[2])
    assert df["source_row"].tolist() == [1, 2, 3]
    assert df["row_id"].is_unique


def test_csv_without_header_and_glob(tmp_path):
    (tmp_path / "p1.csv").write_text('"3","T1","D1"\n')
    (tmp_path / "p2.csv").write_text('"1","T2","D2"\n')
    df = read_source(src(path="p*.csv", columns=["c", "t", "d"], text=["t", "d"], label="c", split="test"), tmp_path)
    assert df["text"].tolist() == ["T1 D1", "T2 D2"]
    assert df["label"].tolist() == ["3", "1"]
    assert set(df["fixed_split"]) == {"test"}
    assert df["source_file"].str.endswith(("p1.csv", "p2.csv")).all()


def test_tsv_reads_quotes_literally(tmp_path):
    (tmp_path / "sms").write_text('ham\t"Quoted start\nspam\tFree "prize" now\n')
    df = read_source(src(path="sms", format="tsv", columns=["label", "text"]), tmp_path)
    assert df["text"].tolist() == ['"Quoted start', 'Free "prize" now']
    assert df["label"].tolist() == ["ham", "spam"]


def test_jsonl_and_parquet(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "x y", "label": 1}) + "\n\n" + json.dumps({"text": "z", "label": 0}) + "\n")
    df = read_source(src(path="a.jsonl", format="jsonl"), tmp_path)
    assert df["label"].tolist() == ["1", "0"]
    pd.DataFrame({"text": ["p", "q"], "label": ["a", "b"]}).to_parquet(tmp_path / "a.parquet")
    df = read_source(src(path="a.parquet", format="parquet"), tmp_path)
    assert df["text"].tolist() == ["p", "q"]


def _write_tree(root):
    for split in ("train", "test"):
        for lab in ("pos", "neg"):
            d = root / "corpus" / split / lab
            d.mkdir(parents=True)
            (d / f"1_{lab}.txt").write_text(f"{split} {lab} text")
    (root / "corpus" / "train" / "urls_pos.txt").write_text("not a row")
    (root / "corpus" / "README").write_text("not a row")


def test_folder_per_label_keeps_train_test_split(tmp_path):
    _write_tree(tmp_path)
    df = read_source(src(path="corpus", format="folder", label_map={"pos": "positive", "neg": "negative"}), tmp_path)
    assert len(df) == 4
    assert sorted(zip(df["fixed_split"], df["label"])) == [("test", "negative"), ("test", "positive"), ("train", "negative"), ("train", "positive")]
    assert all(t.split()[0] == s for t, s in zip(df["text"], df["fixed_split"]))


def test_folder_from_tar_gz(tmp_path):
    _write_tree(tmp_path)
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "corpus", arcname="corpus")
    df = read_source(src(path="c.tar.gz", format="folder"), tmp_path)
    assert len(df) == 4  # urls_pos.txt sits in a split folder, not a label folder
    assert set(df["label"]) == {"pos", "neg"}
    assert df["source_file"].str.contains("c.tar.gz:corpus/").all()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"data.sources\[s\].path: no file matches 'nope.csv'"):
        read_source(src(path="nope.csv"), tmp_path)


def test_missing_column_is_named(tmp_path):
    (tmp_path / "a.csv").write_text("body,label\nx,1\n")
    with pytest.raises(DataError, match=r"a.csv: column 'text' not found .*columns are body, label"):
        read_source(src(path="a.csv"), tmp_path)


def test_empty_file_is_named(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match=r"e.csv: file is empty"):
        read_source(src(path="e.csv"), tmp_path)
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(DataError, match=r"h.csv: file has no data rows"):
        read_source(src(path="h.csv"), tmp_path)


def test_demo_source_is_deterministic(tmp_path):
    s = src(path="builtin:demo", format="demo", rows=500)
    a, b = read_source(s, tmp_path), read_source(s, tmp_path)
    assert len(a) == 500
    pd.testing.assert_frame_equal(a, b)


def test_fsspec_url_with_glob(tmp_path):
    for i in range(2):
        (tmp_path / f"part{i}.csv").write_text(f"text,label\nrow {i},x\n")
    df = read_source(src(path=f"file://{tmp_path}/part*.csv"), tmp_path / "elsewhere")
    assert df["text"].tolist() == ["row 0", "row 1"]
    assert df["source_file"].str.startswith("file://").all()
    with pytest.raises(DataError, match="no file matches"):
        read_source(src(path=f"file://{tmp_path}/none*.csv"), tmp_path)


def test_row_ids_do_not_depend_on_where_the_workspace_is(tmp_path):
    for ws in ("a", "b"):
        (tmp_path / ws).mkdir()
        (tmp_path / ws / "d.csv").write_text("text,label\nx,1\n")
    a = read_source(src(path="d.csv"), tmp_path / "a")
    b = read_source(src(path="d.csv"), tmp_path / "b")
    assert a["row_id"].tolist() == b["row_id"].tolist() and a["source_file"].tolist() == ["d.csv"]


def test_jsonl_edge_cases(tmp_path):
    (tmp_path / "u.jsonl").write_text(json.dumps({"text": "a\u2028b", "label": 1}, ensure_ascii=False) + "\r\n")
    df = read_source(src(path="u.jsonl", format="jsonl"), tmp_path)
    assert df["text"].tolist() == ["a\u2028b"]
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "\xff", "label": 1}\n')
    with pytest.raises(DataError, match="bad.jsonl: not UTF-8"):
        read_source(src(path="bad.jsonl", format="jsonl"), tmp_path)
    (tmp_path / "gap.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": null}\n')
    df = read_source(src(path="gap.jsonl", format="jsonl", label_map={"1": "World"}), tmp_path)
    assert df["label"].iloc[0] == "World" and pd.isna(df["label"].iloc[1])


def test_a_parquet_source_is_read_in_batches_with_continuous_row_numbers(tmp_path, monkeypatch):
    from bigmodel_core.config import Source
    from bigmodel_core.data import formats

    texts = [f"text {i}" for i in range(10)]
    pd.DataFrame({"text": texts, "label": ["a", "b"] * 5}).to_parquet(tmp_path / "big.parquet")
    src = Source(name="p", path="big.parquet", format="parquet")
    whole = formats.read_source(src, tmp_path)
    monkeypatch.setattr(formats.parquet, "PARQUET_BATCH_ROWS", 3)
    parts = list(formats.iter_source(src, tmp_path))
    assert [len(p) for p in parts] == [3, 3, 3, 1]
    batched = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(batched, whole)
    assert batched["source_row"].tolist() == list(range(1, 11)) and batched["text"].tolist() == texts

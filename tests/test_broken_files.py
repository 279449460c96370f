"""Every kind of broken input file: one `error:` line naming the file (and the line or byte), exit 2, and no
output from ingest. Each case runs the real `bigmodel stage ingest` (what `dvc repro` and the flow run)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bigmodel_core.config import Source
from bigmodel_core.data.formats import read_source
from tests.conftest import BIN, run_cmd, tiny_params_dict

BIGMODEL = str(Path(BIN) / "bigmodel")
ENCODING_HINT = ("if the file has another encoding, set encoding: on the source (latin-1, cp1252, utf-16, ...); or "
                 "set undecodable: quarantine to set those rows aside")


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf)
    return buf.getvalue()


def _tar_without_label_folders() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"a review at the top level"
        info = tarfile.TarInfo("review.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


GOOD_PARQUET = _parquet(pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}))

# id: (file name, bytes, source fields, the error after "error: ")
CASES = {
    "csv-unbalanced-quote-swallowing-rows": (
        "bad.csv", b'text,label\nab,a\n"open,b\nc,d\n"close",e\nz,f\n', {},
        "data/sources/bad.csv: line 3: a quoted field opened here closes inside a field at line 5 (',' expected "
        "after '\"'): an unbalanced quote swallowed the lines between (source 'bad')"),
    "csv-quote-never-closed": (
        "bad.csv", b'text,label\nfine,a\n"never closed,b\nmore,c\n', {},
        "data/sources/bad.csv: line 3: a quoted field opened here is never closed: an unbalanced quote (source 'bad')"),
    "csv-ragged-row-too-long": (
        "bad.csv", b"text,label\na,b\nc,d,e\n", {},
        "data/sources/bad.csv: line 3 has 3 field(s) where the first row has 2: an unquoted delimiter inside the "
        "text? (source 'bad')"),
    "csv-ragged-row-too-short": (
        "bad.csv", b"text,label\na,b\nc\nd,\n", {},
        "data/sources/bad.csv: line 3 has 1 field(s) where the first row has 2: a line cut short? (source 'bad')"),
    "tsv-ragged-row": (
        "bad.tsv", b"ham\tfine\nspam\ttoo\tmany\n", {"format": "tsv", "columns": ["label", "text"]},
        "data/sources/bad.tsv: line 2 has 3 field(s) where the first row has 2: an unquoted delimiter inside the "
        "text? (source 'bad')"),
    "wrong-delimiter": (
        "bad.csv", b"text;label\nhello;a\n", {},
        "data/sources/bad.csv: the header is one column, 'text;label': the file looks ';'-separated; set "
        "delimiter: ';' on source 'bad'"),
    "wrong-encoding": (
        "bad.csv", "text,label\ncafé,a\n".encode("latin-1"), {},
        f"data/sources/bad.csv: not UTF-8 text at byte 14 (line 2; source 'bad'); {ENCODING_HINT}"),
    "utf-16": (
        "bad.csv", "text,label\nhi,a\n".encode("utf-16"), {},
        "data/sources/bad.csv: the file is UTF-16, not UTF-8; set encoding: utf-16 on source 'bad' (or save it as "
        "UTF-8)"),
    "nul-byte": (
        "bad.csv", b"text,label\nhel\x00lo,t1\nok,t1\n", {},
        "data/sources/bad.csv: NUL byte at byte 14 (line 2): a binary or damaged file (source 'bad')"),
    "gzip-that-is-not-gzip": (
        "bad.csv.gz", b"text,label\na,b\n", {},
        "data/sources/bad.csv.gz: not gzip data (the name ends in .gz, but the file does not start with gzip's "
        "signature; source 'bad')"),
    "truncated-gzip": (
        "bad.csv.gz", gzip.compress(b"text,label\n" + b"a row,b\n" * 200)[:40], {},
        "data/sources/bad.csv.gz: damaged or truncated gzip data (Compressed file ended before the end-of-stream "
        "marker was reached; source 'bad')"),
    "truncated-parquet": (
        "bad.parquet", GOOD_PARQUET[: len(GOOD_PARQUET) // 2], {"format": "parquet"},
        "data/sources/bad.parquet: cannot read as Parquet: Parquet magic bytes not found in footer. Either the "
        "file is corrupted or this is not a parquet file."),
    "parquet-text-column-not-text": (
        "bad.parquet", _parquet(pd.DataFrame({"text": [1, 2], "label": ["x", "y"]})), {"format": "parquet"},
        "data/sources/bad.parquet: column 'text' is int64, not text (source 'bad'); cast it to string"),
    "jsonl-broken-line": (
        "bad.jsonl", b'{"text": "a", "label": "x"}\n{"text": "a", "label": }\n', {"format": "jsonl"},
        "data/sources/bad.jsonl: line 2 is not valid JSON: Expecting value (column 24)"),
    "jsonl-line-not-an-object": (
        "bad.jsonl", b'{"text": "a", "label": "x"}\n[1, 2]\n', {"format": "jsonl"},
        "data/sources/bad.jsonl: line 2 is not a JSON object (it is list; one object per line)"),
    "jsonl-text-not-text": (
        "bad.jsonl", b'{"text": "a", "label": "x"}\n{"text": 5, "label": "x"}\n', {"format": "jsonl"},
        "data/sources/bad.jsonl: line 2: column 'text' holds number 5, not text (source 'bad')"),
    "label-column-of-mixed-types": (
        "bad.jsonl", b'{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n{"text": "c", "label": "pos"}\n',
        {"format": "jsonl"},
        "data/sources/bad.jsonl: label column 'label' mixes types: number (line 1) and text (line 3); use one "
        "type for every label (source 'bad')"),
    "duplicated-header-name": (
        "bad.csv", b"text,label,label\na,b,c\n", {},
        "data/sources/bad.csv: the header names column 'label' twice (columns 2 and 3; source 'bad')"),
    "header-repeated-inside-the-data": (
        "bad.csv", b"text,label\na,b\ntext,label\nc,d\n", {},
        "data/sources/bad.csv: line 3 repeats the header row (were files concatenated?; source 'bad')"),
    "folder-with-no-label-folders": (
        "bad.tar.gz", _tar_without_label_folders(), {"format": "folder"},
        "data/sources/bad.tar.gz: no '*.txt' files inside label folders (source 'bad')"),
    "corrupt-tar-gz": (
        "bad.tar.gz", b"\x1f\x8b\x08\x00garbage-garbage-garbage", {"format": "folder"},
        "data/sources/bad.tar.gz: cannot read archive: file could not be opened successfully (a damaged or "
        "truncated .tar.gz?; source 'bad')"),
    "glob-that-matches-nothing": (
        None, None, {"path": "data/sources/nothing-*.csv"},
        "data.sources[bad].path: no file matches 'data/sources/nothing-*.csv' (looked for {root}/data/sources/"
        "nothing-*.csv)"),
    "single-20-MB-line": (
        "bad.csv", b"text,label\n" + b"x" * 20_000_000 + b",a\n", {},
        "data/sources/bad.csv: line 2 is 20,000,002 bytes long, more than max_line_bytes (10,000,000) of source "
        "'bad': a file without line breaks, or a quote left open? (raise max_line_bytes if the line is real)"),
}


def _workspace(root: Path, name: str | None, data: bytes | None, fields: dict) -> Path:
    (root / "data/sources").mkdir(parents=True)
    if name is not None:
        (root / "data/sources" / name).write_bytes(data)
    raw = tiny_params_dict()
    raw["data"]["sources"] = [{"name": "bad", "path": f"data/sources/{name}", "format": "csv", **fields}]
    raw["data"]["labels"] = None
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_broken_file_gives_one_line_exit_2_and_no_output(tmp_path, case):
    name, data, fields, expected = CASES[case]
    root = _workspace(tmp_path / "ws", name, data, fields)
    proc = run_cmd([BIGMODEL, "stage", "ingest"], root, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert [l for l in proc.stderr.splitlines() if l.strip()] == ["error: " + expected.format(root=root)]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (root / "data/raw").exists()  # no partial output


def src(**kw) -> Source:
    return Source(**{"name": "s", "path": "x.csv", "format": "csv", **kw})


def test_what_the_errors_suggest_works(tmp_path):
    """The fix each message names reads the file: encoding, delimiter; and gzip is read when it is gzip."""
    (tmp_path / "latin.csv").write_bytes("text,label\ncafé crème,a\n".encode("latin-1"))
    assert read_source(src(path="latin.csv", encoding="latin-1"), tmp_path)["text"].tolist() == ["café crème"]
    (tmp_path / "wide.csv").write_bytes("text,label\nhi,a\n".encode("utf-16"))
    assert read_source(src(path="wide.csv", encoding="utf-16"), tmp_path)["label"].tolist() == ["a"]
    (tmp_path / "semi.csv").write_text("text;label\nhello, world;a\n")
    assert read_source(src(path="semi.csv", delimiter=";"), tmp_path)["text"].tolist() == ["hello, world"]
    (tmp_path / "z.csv.gz").write_bytes(gzip.compress(b"text,label\nzipped,a\n"))
    assert read_source(src(path="z.csv.gz"), tmp_path)["text"].tolist() == ["zipped"]
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbftext,label\nwith a bom,a\n")
    assert read_source(src(path="bom.csv"), tmp_path)["text"].tolist() == ["with a bom"]
    (tmp_path / "z.jsonl.gz").write_bytes(gzip.compress(json.dumps({"text": "j", "label": 1}).encode() + b"\n"))
    assert read_source(src(path="z.jsonl.gz", format="jsonl"), tmp_path)["label"].tolist() == ["1"]


def test_legitimate_files_that_look_odd_are_read(tmp_path):
    """An empty field is not a short row; quoted multi-line text is not an unbalanced quote; numeric labels of
    one type are fine."""
    (tmp_path / "ok.csv").write_text('text,label\n"line one\nline two, with a comma",a\nno label,\n"say ""hi""",b\n')
    df = read_source(src(path="ok.csv"), tmp_path)
    assert df["text"].tolist() == ["line one\nline two, with a comma", "no label", 'say "hi"']
    assert df["label"].isna().tolist() == [False, True, False]  # the empty label goes on to validate's rules
    (tmp_path / "n.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 2.0}\n{"text": null, "label": 1}\n')
    assert read_source(src(path="n.jsonl", format="jsonl"), tmp_path)["label"].tolist() == ["1", "2", "1"]


def test_undecodable_bytes_can_go_to_quarantine_instead(tmp_path):
    """undecodable: quarantine replaces the bad bytes, names them at ingest, and validate sets the rows aside."""
    from bigmodel_core.config import ValidateParams
    from bigmodel_core.data.quality import check

    (tmp_path / "mixed.csv").write_bytes(b"text,label\ngood row,a\ncaf\xe9 row,b\nanother good one,a\n")
    raw = read_source(src(path="mixed.csv", undecodable="quarantine"), tmp_path)
    assert raw["text"].tolist() == ["good row", "caf\ufffd row", "another good one"]
    r = check(raw, ValidateParams(min_rows=1, min_rows_per_class=1, max_quarantine_fraction=1.0), ["a", "b"])
    q = r.quarantined
    assert q["rule"].tolist() == ["undecodable"] and q["source_row"].tolist() == [2]
    assert q["reason"].iloc[0].startswith("text has U+FFFD at character 4: bytes that were not valid text")
    assert r.report["rows_in"] == 3 == len(r.passed) + len(q)


def test_undecodable_quarantine_names_byte_and_line_at_ingest(tmp_path):
    root = _workspace(tmp_path / "ws", "mixed.csv", b"text,label\ngood row,a\ncaf\xe9 row,b\n",
                      {"undecodable": "quarantine"})
    proc = run_cmd([BIGMODEL, "stage", "ingest"], root)
    assert ("warning: data/sources/mixed.csv: 1 byte sequence(s) that are not UTF-8, the first at byte 25 (line 3); "
            "replaced by U+FFFD, their rows go to quarantine (rule undecodable)") in proc.stdout
    assert (root / "data/raw/rows.parquet").exists()

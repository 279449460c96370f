import os

import pandas as pd
import pytest

from bigmodel_core.data import schemas
from bigmodel_core.errors import DataError
from bigmodel_core.io import atomic_dir, atomic_path, read_table, write_table


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "good" and os.listdir(tmp_path) == ["out.json"]


def test_atomic_dir_replaces_whole_dir_or_nothing(tmp_path):
    target = tmp_path / "stage"
    target.mkdir()
    (target / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b").write_text("new")
            raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(os.listdir(tmp_path)) == ["stage"]


def test_atomic_dir_recovers_from_crash_between_renames(tmp_path):
    target = tmp_path / "stage"
    old = tmp_path / ".stage.old"
    old.mkdir()
    (old / "a").write_text("last good")
    with pytest.raises(RuntimeError):
        with atomic_dir(target):
            raise RuntimeError("crash")
    assert (target / "a").read_text() == "last good"


def test_table_breaking_its_schema_is_not_written(tmp_path):
    bad = pd.DataFrame({"row_id": ["x"], "text": ["t"]})
    with pytest.raises(DataError, match=r"output .*rows.parquet breaks schema raw"):
        write_table(bad, tmp_path / "rows.parquet", schemas.RAW)
    assert not (tmp_path / "rows.parquet").exists()
    with pytest.raises(DataError, match="input table not found"):
        read_table(tmp_path / "rows.parquet", schemas.RAW)

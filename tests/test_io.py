import os
import stat

import pandas as pd
import pytest

from bigmodel_core.data import schemas
from bigmodel_core.errors import DataError
from bigmodel_core.io import atomic_dir, atomic_path, read_table, write_json, write_table


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


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_outputs_get_the_umasks_modes(tmp_path, umask):
    """Not mkstemp's 0600 and mkdtemp's 0700: a shared workspace or a service account must read them."""
    with atomic_path(tmp_path / "out.json") as tmp:
        assert mode(tmp) == 0o666 & ~umask  # already while it is written
        tmp.write_text("{}")
    write_json({"a": 1}, tmp_path / "metrics" / "m.json")
    write_table(pd.DataFrame({"x": [1]}), tmp_path / "t.parquet")
    with atomic_dir(tmp_path / "stage") as out:
        assert mode(out) == 0o777 & ~umask
        (out / "rows.txt").write_text("rows")
        (out / "sub").mkdir()
        write_json([], out / "sub" / "inner.json")
    for f in ("out.json", "metrics/m.json", "t.parquet", "stage/rows.txt", "stage/sub/inner.json"):
        assert mode(tmp_path / f) == 0o666 & ~umask, f
    for d in ("stage", "stage/sub", "metrics"):
        assert mode(tmp_path / d) == 0o777 & ~umask, d
    assert sorted(os.listdir(tmp_path)) == ["metrics", "out.json", "stage", "t.parquet"]  # no temporaries left


@pytest.mark.parametrize("kept", [0o640, 0o600, 0o444, 0o664])
def test_an_edited_file_keeps_its_mode(tmp_path, umask, kept):
    target = tmp_path / "params.yaml"
    target.write_text("train:\n  epochs: 5  # comment\n")
    target.chmod(kept)
    with atomic_path(target, keep_mode=True) as tmp:
        tmp.write_text("edited")
    assert target.read_text() == "edited" and mode(target) == kept
    from bigmodel_core.pipeline.params_file import persist_overrides

    target.write_text("train:\n  epochs: 5  # comment\n")
    persist_overrides(target, ["train.epochs=1"])
    assert "epochs: 1  # comment" in target.read_text() and mode(target) == kept
    assert os.listdir(tmp_path) == ["params.yaml"]


def test_a_remade_output_gets_the_umasks_mode_whatever_the_old_one_had(tmp_path, umask):
    """Outputs an earlier version left at 0600/0700 become readable again when a stage remakes them."""
    (tmp_path / "metrics.json").write_text("old")
    (tmp_path / "metrics.json").chmod(0o600)
    write_json({}, tmp_path / "metrics.json")
    target = tmp_path / "stage"
    target.mkdir()
    target.chmod(0o700)
    with atomic_dir(target) as out:
        (out / "a").write_text("new")
    assert mode(tmp_path / "metrics.json") == 0o666 & ~umask and mode(target / "a") == 0o666 & ~umask
    assert mode(target) == 0o777 & ~umask


def test_table_breaking_its_schema_is_not_written(tmp_path):
    bad = pd.DataFrame({"row_id": ["x"], "text": ["t"]})
    with pytest.raises(DataError, match=r"output .*rows.parquet breaks schema raw"):
        write_table(bad, tmp_path / "rows.parquet", schemas.RAW)
    assert not (tmp_path / "rows.parquet").exists()
    with pytest.raises(DataError, match="input table not found"):
        read_table(tmp_path / "rows.parquet", schemas.RAW)

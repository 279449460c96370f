"""The migrated Prefect database a server on a new PREFECT_HOME starts from (bigmodel_core/pipeline/prefect_db.py):
kept once per Prefect version and migration set, copied whole into a home without a database, never over one, and
never used for a database of the user's choosing. A real server starting on a copied database is what every e2e
test that starts a temporary server after the first does."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from bigmodel_core.pipeline import prefect_db


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    for name in prefect_db.URL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BIGMODEL_PREFECT_DB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _migrated_db(home: Path, revision: str = "abc123") -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / prefect_db.DB_NAME
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")  # as Prefect's server keeps it
    con.execute("CREATE TABLE alembic_version (version_num TEXT)")
    con.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    con.execute("CREATE TABLE block_type (name TEXT)")
    con.execute("INSERT INTO block_type VALUES ('secret')")
    con.commit()
    con.close()
    return path


def _rows(path: Path) -> list:
    with sqlite3.connect(path) as con:
        return con.execute("SELECT version_num FROM alembic_version").fetchall() + con.execute(
            "SELECT name FROM block_type"
        ).fetchall()


def test_the_template_is_named_by_prefect_version_and_migrations(cache):
    import importlib.metadata as md

    path = prefect_db.template_path()
    assert path is not None and path.parent == cache
    assert path.name.startswith(f"prefect-{md.version('prefect')}-") and path.suffix == ".db"
    assert prefect_db.template_path() == path  # the same key every time


def test_a_new_home_gets_the_kept_database_and_an_existing_one_is_never_replaced(cache, tmp_path):
    first = tmp_path / "first"
    _migrated_db(first)
    assert not prefect_db.seed(tmp_path / "nothing-kept-yet")
    prefect_db.keep(first)
    template = prefect_db.template_path()
    assert template is not None and template.is_file() and _rows(template) == [("abc123",), ("secret",)]

    new = tmp_path / "new"
    new.mkdir()
    assert prefect_db.seed(new)
    assert [p.name for p in new.iterdir()] == [prefect_db.DB_NAME]  # no temporary file left
    assert _rows(new / prefect_db.DB_NAME) == [("abc123",), ("secret",)]
    mode = stat.S_IMODE((new / prefect_db.DB_NAME).stat().st_mode)
    assert mode & stat.S_IRUSR and mode & stat.S_IWUSR

    mine = tmp_path / "mine"
    _migrated_db(mine, revision="mine")
    assert not prefect_db.seed(mine)
    assert _rows(mine / prefect_db.DB_NAME)[0] == ("mine",)

    # a template once kept is not replaced by a later server's database
    other = tmp_path / "other"
    _migrated_db(other, revision="other")
    prefect_db.keep(other)
    assert _rows(template)[0] == ("abc123",)


def test_a_database_without_a_migration_record_is_not_kept(cache, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / prefect_db.DB_NAME) as con:
        con.execute("CREATE TABLE alembic_version (version_num TEXT)")
    prefect_db.keep(home)
    template = prefect_db.template_path()
    assert template is not None and not template.exists()
    assert not cache.exists() or [p.name for p in cache.iterdir()] == []


@pytest.mark.parametrize("setting", [*prefect_db.URL_SETTINGS, "BIGMODEL_PREFECT_DB_CACHE"])
def test_a_database_of_the_users_choosing_or_the_cache_turned_off_is_left_alone(cache, tmp_path, monkeypatch, setting):
    _migrated_db(tmp_path / "first")
    prefect_db.keep(tmp_path / "first")
    value = "off" if setting == "BIGMODEL_PREFECT_DB_CACHE" else "postgresql+asyncpg://db/prefect"
    monkeypatch.setenv(setting, value)
    assert prefect_db.template_path() is None
    new = tmp_path / "new"
    new.mkdir()
    assert not prefect_db.seed(new) and not (new / prefect_db.DB_NAME).exists()

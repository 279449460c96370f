"""A migrated Prefect database to start from, so that a server on a new PREFECT_HOME need not migrate one.

Prefect's server creates its SQLite database on first start by running every migration it ships (116 for
SQLite in Prefect 3.9): about 10 CPU seconds, most of a temporary server's start in a new workspace. The
outcome is the same file for every workspace on one Prefect version, so the first server that migrates a new
database leaves a copy of it in a cache (`template_path`), and a server about to start on a home without a
database gets that copy (`seed`). Prefect still checks the copy on start ("migrate on start"), which on a
database already at its head revision is a no-op.

The copy is keyed by Prefect's version and its SQLite migrations (their file names hashed), so another Prefect
never gets a database of a different revision. It is written to a temporary file and renamed into place, and
copied the same way into a home, so a server starting at the same time as another one writes its template sees
either a whole copy or none. Only Prefect's default database (PREFECT_HOME/prefect.db) is seeded: with a
connection URL of the user's (PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL) or
BIGMODEL_PREFECT_DB_CACHE=off nothing here runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from contextlib import suppress
from pathlib import Path

#: the settings that point Prefect's server at another database than PREFECT_HOME/prefect.db
URL_SETTINGS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")
DB_NAME = "prefect.db"


def cache_dir() -> Path | None:
    """Where migrated databases are kept: $BIGMODEL_PREFECT_DB_CACHE, else $XDG_CACHE_HOME (~/.cache)/bigmodel/
    prefect-db; None when that variable says `off` (or Prefect's database is not the default one)."""
    env = os.environ
    if any(env.get(name) for name in URL_SETTINGS):
        return None
    chosen = env.get("BIGMODEL_PREFECT_DB_CACHE", "").strip()
    if chosen.lower() in ("off", "0", "false", "no"):
        return None
    if chosen:
        return Path(chosen)
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bigmodel" / "prefect-db"


def template_path() -> Path | None:
    """The cached database for the installed Prefect: prefect-<version>-<hash of its SQLite migrations>.db."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        import importlib.metadata as md

        version = md.version("prefect")
        dist = md.distribution("prefect")
        migrations = sorted(
            str(f) for f in (dist.files or []) if "_migrations/versions/sqlite/" in str(f) and str(f).endswith(".py")
        )
    except Exception:
        return None
    if not migrations:  # a Prefect laid out otherwise: no key to trust
        return None
    digest = hashlib.sha256("\n".join(migrations).encode()).hexdigest()[:12]
    return folder / f"prefect-{version}-{digest}.db"


def seed(home: Path) -> bool:
    """Give `home` the cached migrated database when it has none; True when it did."""
    target = Path(home) / DB_NAME
    if target.exists():
        return False
    template = template_path()
    if template is None or not template.is_file():
        return False
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=home, prefix=".prefect.db.", suffix=".tmp")
        os.close(fd)
        shutil.copyfile(template, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the modes Prefect's own new database gets
        if target.exists():  # a server started meanwhile made its own: keep that one
            return False
        os.replace(tmp, target)
        tmp = None
        return True
    except OSError:
        return False
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)


def keep(home: Path) -> None:
    """After a server migrated a new database in `home` (it answers its health check, so the migrations are
    done), keep a consistent copy of it as the template, unless one is there; any trouble only skips this."""
    template = template_path()
    source = Path(home) / DB_NAME
    if template is None or template.exists() or not source.is_file():
        return
    tmp = None
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=template.parent, prefix=".template.", suffix=".tmp")
        os.close(fd)
        # SQLite's backup API: a consistent copy of a database another process is writing (the server, in WAL mode)
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=10)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            if not dst.execute("SELECT version_num FROM alembic_version").fetchall():
                raise sqlite3.DatabaseError("no alembic revision recorded")
        finally:
            dst.close()
            src.close()
        os.replace(tmp, template)
        tmp = None
    except (OSError, sqlite3.Error):
        pass
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)

"""One way to name a stage database everywhere (library, CLI, server): a SQLite file, ``sqlite:///path``
or ``postgresql://user:password@host/db``. A URL is never taken for a file path, so no directory is ever
created from one."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .base import StageStore

SERVER_EXTRA = 'pip install "stageguard[server]"'
POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def redacted(db: str) -> str:
    """``db`` with its password masked, for messages."""
    parts = urlsplit(db)
    if parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
    return db


def check_db(db: str) -> str:
    """``db`` if it names a database stageguard can open, else a one-line :class:`ValueError`."""
    if db.startswith(POSTGRES_SCHEMES):
        return db
    if db.startswith("sqlite:///"):
        path = db[len("sqlite:///") :]
    elif "://" in db or db.startswith(("sqlite:", "postgresql:", "postgres:")):
        raise ValueError(
            f"unsupported database URL {redacted(db)!r}: "
            "use a SQLite file path, sqlite:///path or postgresql://user:password@host/db"
        )
    else:
        path = db
    if path and path != ":memory:" and Path(path).expanduser().is_dir():
        raise ValueError(
            f"database {path} is a directory: give a SQLite file in it, e.g. {Path(path) / 'stages.db'}"
        )
    return db


def open_store(db: str) -> StageStore:
    """The stage store of ``db``: PostgreSQL for a postgresql:// URL, else the embedded SQLite store."""
    db = check_db(db)
    if db.startswith(POSTGRES_SCHEMES):
        try:
            from .postgres import PostgresStageStore
        except ImportError as exc:
            raise ImportError(f"PostgreSQL needs the server extra: {SERVER_EXTRA}", name=exc.name) from None
        return PostgresStageStore(db)
    from .sqlite import SQLiteStageStore

    return SQLiteStageStore(Path(db.removeprefix("sqlite:///")).expanduser())

"""Open the stage store and the key store of a database URL (PostgreSQL or a SQLite file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine

from ..store.base import StageStore
from ..store.postgres import PostgresStageStore, is_postgres_url
from ..store.sqlite import SQLiteStageStore
from ._keys import KeyStore

if TYPE_CHECKING:
    from ._decision_log import DecisionLog


def sqlite_path(db: str) -> str:
    """The file of a ``sqlite:///path`` URL or a bare path."""
    if db.startswith("sqlite:///"):
        return db[len("sqlite:///") :]
    if "://" in db:
        raise ValueError(f"unsupported database URL {db!r}: use postgresql://... or a SQLite file")
    return db


@dataclass
class Databases:
    stages: StageStore
    keys: KeyStore
    sql: Engine | None = None  # the SQLAlchemy engine of the keys (and of the decision log)
    decisions: DecisionLog | None = None  # set by the app when the decision log is on

    def close(self) -> None:
        if self.decisions is not None:
            self.decisions.close()
        self.keys.close()
        self.stages.close()


def open_databases(db: str, *, poll_interval: float = 0.25, busy_timeout: float = 5.0) -> Databases:
    """Stages and keys in one database. SQLite uses the embedded store (one file per deployment);
    ``busy_timeout`` bounds how long a SQLite write waits for another process's lock."""
    if is_postgres_url(db):
        stages = PostgresStageStore(db, poll_interval=poll_interval)
        return Databases(stages, KeyStore(stages.engine), stages.engine)
    path = sqlite_path(db)
    if path == ":memory:":
        raise ValueError("the server needs a SQLite file or PostgreSQL, not ':memory:'")
    sqlite_stages = SQLiteStageStore(path, busy_timeout=busy_timeout)  # creates the directory, enables WAL
    engine = create_engine(f"sqlite:///{Path(path)}", connect_args={"timeout": busy_timeout})
    return Databases(sqlite_stages, KeyStore(engine), engine)

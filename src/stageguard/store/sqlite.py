"""The embedded stage store: one SQLite file (or memory), safe across threads and processes.

Writes run in ``BEGIN IMMEDIATE`` transactions, so concurrent updates from several threads or processes
queue on SQLite's lock instead of racing: each gets the next version number, none is lost or
duplicated, and a failed write rolls back whole.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import StageConflictError, StageNotFoundError
from ..rules import Ruleset, parse_rulesets
from ..stages import Project, Stage, StageType
from ..status import FailPolicy
from .base import StageStore, check_new_stage, check_version

_INSERT_VERSION = "INSERT INTO stage_versions (stage_id, version, rulesets, created_at) VALUES (?, ?, ?, ?)"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    type TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    fail_policy TEXT NOT NULL DEFAULT 'fail_open',
    latest_version INTEGER,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE IF NOT EXISTS stage_versions (
    stage_id TEXT NOT NULL REFERENCES stages(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    rulesets TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (stage_id, version)
);
"""


def default_db_path() -> Path:
    """``$STAGEGUARD_DB`` or ``stages.db`` in the user's data directory."""
    env = os.environ.get("STAGEGUARD_DB")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "stageguard" / "stages.db"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class SQLiteStageStore(StageStore):
    """Stages in SQLite. ``path=":memory:"`` keeps them in memory (tests, demos)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = 30.0) -> None:
        target = str(default_db_path() if path is None else path)
        self.path = target
        if target != ":memory:":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        # One connection per store, serialised by a lock: SQLite connections are not thread-safe, and
        # the store's work per call is microseconds.
        self._conn = sqlite3.connect(
            target, isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._writes = 0
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if target != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
            with self._transaction() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)

    # -- plumbing

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._writes += 1

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def generation(self) -> object:
        # data_version changes when another connection commits; _writes counts our own commits. An
        # in-memory database has no other connection: our own commits are all there is.
        if self.path == ":memory:":
            return self._writes
        with self._lock:
            return (self._conn.execute("PRAGMA data_version").fetchone()[0], self._writes)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- projects

    def create_project(self, name: str) -> Project:
        if not name or not name.strip():
            raise ValueError("a project needs a non-empty name")
        project = Project(id=str(uuid.uuid4()), name=name, created_at=dt.datetime.now(dt.UTC))
        try:
            with self._transaction() as conn:
                conn.execute(
                    "INSERT INTO projects (id, name, created_at) VALUES (?, ?, ?)",
                    (project.id, project.name, project.created_at.isoformat()),  # type: ignore[union-attr]
                )
        except sqlite3.IntegrityError:
            raise StageConflictError(f"project {name!r} already exists") from None
        return project

    def get_project(self, *, project_id: str | None = None, name: str | None = None) -> Project | None:
        if project_id is not None:
            rows = self._query("SELECT * FROM projects WHERE id = ?", (str(project_id),))
        elif name is not None:
            rows = self._query("SELECT * FROM projects WHERE name = ?", (name,))
        else:
            raise ValueError("give a project id or name")
        return Project(**dict(rows[0])) if rows else None

    def list_projects(self) -> list[Project]:
        return [Project(**dict(row)) for row in self._query("SELECT * FROM projects ORDER BY name")]

    # -- stages

    def create_stage(
        self,
        project_id: str,
        name: str,
        *,
        stage_type: StageType = StageType.local,
        prioritized_rulesets: Sequence[Ruleset] | None = None,
        description: str | None = None,
        paused: bool = False,
        fail_policy: FailPolicy = FailPolicy.fail_open,
    ) -> Stage:
        stage_type = check_new_stage(name, stage_type, prioritized_rulesets)
        stage_id, now = str(uuid.uuid4()), _now()
        version = 1 if stage_type is StageType.central else None
        try:
            with self._transaction() as conn:
                if not conn.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone():
                    raise StageNotFoundError(f"project {project_id} does not exist")
                conn.execute(
                    "INSERT INTO stages (id, project_id, name, description, type, paused, fail_policy,"
                    " latest_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        stage_id,
                        project_id,
                        name,
                        description,
                        stage_type.value,
                        int(paused),
                        FailPolicy(fail_policy).value,
                        version,
                        now,
                    ),
                )
                if version is not None:
                    conn.execute(_INSERT_VERSION, (stage_id, version, _dump(prioritized_rulesets or []), now))
        except sqlite3.IntegrityError:
            raise StageConflictError(f"a stage named {name!r} already exists in this project") from None
        stage = self.get_stage(project_id, stage_id=stage_id)
        assert stage is not None
        return stage

    def get_stage(
        self,
        project_id: str | None,
        *,
        stage_id: str | None = None,
        name: str | None = None,
        version: int | None = None,
    ) -> Stage | None:
        check_version(version)
        if stage_id is not None:
            sql, params = "SELECT * FROM stages WHERE id = ?", [str(stage_id)]
            if project_id is not None:
                sql, params = sql + " AND project_id = ?", [*params, str(project_id)]
        elif name is not None and project_id is not None:
            sql, params = "SELECT * FROM stages WHERE project_id = ? AND name = ?", [str(project_id), name]
        else:
            raise ValueError("give a stage id, or a project and a stage name")
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
            if not rows:
                return None
            row = rows[0]
            wanted = version if version is not None else row["latest_version"]
            rulesets: list[Ruleset] = []
            if wanted is not None:
                found = self._conn.execute(
                    "SELECT rulesets FROM stage_versions WHERE stage_id = ? AND version = ?",
                    (row["id"], wanted),
                ).fetchone()
                if found is None:
                    if version is not None:
                        return None
                else:
                    rulesets = parse_rulesets(json.loads(found["rulesets"]), lenient=True)
        return _stage(row, wanted, rulesets)

    def list_stages(self, project_id: str) -> list[Stage]:
        rows = self._query("SELECT id FROM stages WHERE project_id = ? ORDER BY name", (str(project_id),))
        stages = [self.get_stage(project_id, stage_id=row["id"]) for row in rows]
        return [stage for stage in stages if stage is not None]

    def list_versions(self, stage_id: str) -> list[int]:
        rows = self._query(
            "SELECT version FROM stage_versions WHERE stage_id = ? ORDER BY version", (stage_id,)
        )
        return [row["version"] for row in rows]

    def update_stage(self, stage_id: str, prioritized_rulesets: Sequence[Ruleset]) -> Stage:
        body = _dump(prioritized_rulesets)
        with self._transaction() as conn:
            row = conn.execute("SELECT type, name FROM stages WHERE id = ?", (stage_id,)).fetchone()
            if row is None:
                raise StageNotFoundError(f"stage {stage_id} does not exist")
            if row["type"] != StageType.central.value:
                raise StageConflictError(
                    f"stage {row['name']!r} is local: its rulesets are supplied at invoke time, not stored"
                )
            (latest,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM stage_versions WHERE stage_id = ?", (stage_id,)
            ).fetchone()
            conn.execute(_INSERT_VERSION, (stage_id, latest + 1, body, _now()))
            conn.execute("UPDATE stages SET latest_version = ? WHERE id = ?", (latest + 1, stage_id))
        # The version this call wrote, even if another writer has added a newer one since.
        stage = self.get_stage(None, stage_id=stage_id, version=latest + 1)
        if stage is None:
            raise StageNotFoundError(f"stage {stage_id} was deleted during the update")
        return stage

    def set_paused(self, stage_id: str, paused: bool) -> Stage:
        return self._set(stage_id, "paused", int(paused))

    def set_fail_policy(self, stage_id: str, fail_policy: FailPolicy) -> Stage:
        return self._set(stage_id, "fail_policy", FailPolicy(fail_policy).value)

    def delete_stage(self, stage_id: str) -> bool:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM stages WHERE id = ?", (stage_id,)).rowcount > 0

    def _set(self, stage_id: str, column: str, value: Any) -> Stage:
        with self._transaction() as conn:
            if conn.execute(f"UPDATE stages SET {column} = ? WHERE id = ?", (value, stage_id)).rowcount == 0:
                raise StageNotFoundError(f"stage {stage_id} does not exist")
        return self._require(stage_id)

    def _require(self, stage_id: str) -> Stage:
        stage = self.get_stage(None, stage_id=stage_id)
        if stage is None:
            raise StageNotFoundError(f"stage {stage_id} does not exist")
        return stage


def _dump(rulesets: Sequence[Ruleset]) -> str:
    return json.dumps([r.model_dump(mode="json") for r in rulesets])


def _stage(row: sqlite3.Row, version: int | None, rulesets: list[Ruleset]) -> Stage:
    return Stage(
        id=row["id"],
        name=row["name"],
        project_id=row["project_id"],
        description=row["description"],
        type=StageType(row["type"]),
        paused=bool(row["paused"]),
        version=version,
        prioritized_rulesets=rulesets,
        fail_policy=FailPolicy(row["fail_policy"]),
        created_at=dt.datetime.fromisoformat(row["created_at"]),
    )

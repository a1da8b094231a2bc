"""The PostgreSQL stage store, for servers: several processes (or hosts) share one database.

Needs the ``server`` extra (SQLAlchemy Core on psycopg 3). Writes run in transactions that lock the
stage row (``SELECT ... FOR UPDATE``), so concurrent updates from any number of processes each get the
next version number. Every write also bumps one generation counter in the same transaction; readers poll
it (at most every ``poll_interval`` seconds) to know when cached stages are stale, so a pause or a new
version made through one process is obeyed by all others within that interval.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ..errors import StageConflictError, StageNotFoundError, StoreUnavailableError
from ..rules import Ruleset, parse_rulesets
from ..stages import Project, Stage, StageType
from ..status import FailPolicy
from .base import StageStore, check_new_stage, check_version

logger = logging.getLogger("stageguard")

# Tables are prefixed: the database is often shared with other applications.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sg_projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS sg_stages (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES sg_projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    type TEXT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    fail_policy TEXT NOT NULL DEFAULT 'fail_open',
    latest_version INTEGER,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE IF NOT EXISTS sg_stage_versions (
    stage_id TEXT NOT NULL REFERENCES sg_stages(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    rulesets JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (stage_id, version)
);
CREATE TABLE IF NOT EXISTS sg_generation (
    id INTEGER PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO sg_generation (id, value) VALUES (1, 0) ON CONFLICT (id) DO NOTHING
"""
# Serialises schema creation when several server processes start at once.
_SCHEMA_LOCK = 0x5347_0001

_STAGE_COLUMNS = (
    "s.id, s.project_id, s.name, s.description, s.type, s.paused, s.fail_policy, s.latest_version, "
    "s.created_at, v.version AS found_version, v.rulesets"
)
_BUMP = "UPDATE sg_generation SET value = value + 1 WHERE id = 1"


def postgres_url(url: str) -> str:
    """A SQLAlchemy URL on the psycopg 3 driver for ``postgresql://``/``postgres://`` URLs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://user:password@host/db)")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+"))


def create_postgres_engine(url: str, *, pool_size: int = 5, connect_timeout: float = 3.0) -> Engine:
    """A pooled engine; ``pool_pre_ping`` replaces connections the server dropped (restarts, failover)."""
    return create_engine(
        postgres_url(url),
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_timeout=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": max(1, round(connect_timeout))},
    )


class PostgresStageStore(StageStore):
    """Stages in PostgreSQL. ``url`` is ``postgresql://user:password@host:port/db`` (or an Engine)."""

    def __init__(
        self,
        url: str | Engine,
        *,
        poll_interval: float = 0.25,
        pool_size: int = 5,
        outage_backoff: float = 2.0,
    ) -> None:
        self._engine = url if isinstance(url, Engine) else create_postgres_engine(url, pool_size=pool_size)
        self.poll_interval = poll_interval
        self.outage_backoff = outage_backoff
        self._down_until = -float("inf")
        self._down_reason = ""
        self._writes = 0
        self._polled_at = -float("inf")
        self._db_generation: int | None = None
        self._lock = threading.Lock()
        with self._transaction() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(text(statement))

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- plumbing

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction; database outages surface as :class:`StoreUnavailableError`.

        After a connection failure, calls fail fast for ``outage_backoff`` seconds instead of each waiting
        for a connect time-out (invokes run on the server's event loop)."""
        if time.monotonic() < self._down_until:
            raise StoreUnavailableError(f"PostgreSQL unavailable (retrying shortly): {self._down_reason}")
        try:
            with self._engine.begin() as conn:
                yield conn
        except (OperationalError, PoolTimeoutError) as exc:
            raise self._outage(f"PostgreSQL unavailable: {_short(exc)}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise self._outage(f"PostgreSQL connection lost: {_short(exc)}") from exc
            raise

    def _outage(self, reason: str) -> StoreUnavailableError:
        self._down_until = time.monotonic() + self.outage_backoff
        self._down_reason = reason
        return StoreUnavailableError(reason)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._transaction() as conn:
            yield conn
            conn.execute(text(_BUMP))
        with self._lock:
            self._writes += 1

    def _rows(self, sql: str, params: Mapping[str, Any]) -> list[RowMapping]:
        with self._transaction() as conn:
            return list(conn.execute(text(sql), params).mappings())

    def generation(self) -> object:
        """Polled at most every ``poll_interval`` s. While the database is unreachable the last value is
        kept, so stages already cached keep being served (and only cache misses fail)."""
        now = time.monotonic()
        with self._lock:
            if now - self._polled_at < self.poll_interval:
                return (self._db_generation, self._writes)
        try:
            rows = self._rows("SELECT value FROM sg_generation WHERE id = 1", {})
        except StoreUnavailableError as exc:
            with self._lock:
                if self._db_generation is None:
                    raise
                self._polled_at = now
                generation = (self._db_generation, self._writes)
            logger.warning("stage database unavailable, serving cached stages: %s", exc)
            return generation
        with self._lock:
            self._db_generation = int(rows[0]["value"]) if rows else 0
            self._polled_at = now
            return (self._db_generation, self._writes)

    def close(self) -> None:
        self._engine.dispose()

    # -- projects

    def create_project(self, name: str) -> Project:
        if not name or not name.strip():
            raise ValueError("a project needs a non-empty name")
        project = Project(id=str(uuid.uuid4()), name=name, created_at=dt.datetime.now(dt.UTC))
        try:
            with self._write() as conn:
                conn.execute(
                    text("INSERT INTO sg_projects (id, name, created_at) VALUES (:id, :name, :created_at)"),
                    project.model_dump(),
                )
        except IntegrityError:
            raise StageConflictError(f"project {name!r} already exists") from None
        return project

    def get_project(self, *, project_id: str | None = None, name: str | None = None) -> Project | None:
        if project_id is not None:
            rows = self._rows("SELECT * FROM sg_projects WHERE id = :v", {"v": str(project_id)})
        elif name is not None:
            rows = self._rows("SELECT * FROM sg_projects WHERE name = :v", {"v": name})
        else:
            raise ValueError("give a project id or name")
        return Project(**rows[0]) if rows else None

    def list_projects(self) -> list[Project]:
        return [Project(**row) for row in self._rows("SELECT * FROM sg_projects ORDER BY name", {})]

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
        stage_id, now = str(uuid.uuid4()), dt.datetime.now(dt.UTC)
        version = 1 if stage_type is StageType.central else None
        try:
            with self._write() as conn:
                found = conn.execute(text("SELECT 1 FROM sg_projects WHERE id = :id"), {"id": project_id})
                if found.first() is None:
                    raise StageNotFoundError(f"project {project_id} does not exist")
                conn.execute(
                    text(
                        "INSERT INTO sg_stages (id, project_id, name, description, type, paused, fail_policy,"
                        " latest_version, created_at) VALUES (:id, :project_id, :name, :description, :type,"
                        " :paused, :fail_policy, :version, :now)"
                    ),
                    {
                        "id": stage_id,
                        "project_id": project_id,
                        "name": name,
                        "description": description,
                        "type": stage_type.value,
                        "paused": paused,
                        "fail_policy": FailPolicy(fail_policy).value,
                        "version": version,
                        "now": now,
                    },
                )
                if version is not None:
                    self._insert_version(conn, stage_id, version, prioritized_rulesets or [], now)
        except IntegrityError:
            raise StageConflictError(f"a stage named {name!r} already exists in this project") from None
        return self._require(stage_id)

    def get_stage(
        self,
        project_id: str | None,
        *,
        stage_id: str | None = None,
        name: str | None = None,
        version: int | None = None,
    ) -> Stage | None:
        check_version(version)
        params: dict[str, Any] = {"version": version}
        if stage_id is not None:
            where, params["id"] = "s.id = :id", str(stage_id)
            if project_id is not None:
                where, params["project_id"] = where + " AND s.project_id = :project_id", str(project_id)
        elif name is not None and project_id is not None:
            where = "s.project_id = :project_id AND s.name = :name"
            params.update(project_id=str(project_id), name=name)
        else:
            raise ValueError("give a stage id, or a project and a stage name")
        rows = self._rows(
            f"SELECT {_STAGE_COLUMNS} FROM sg_stages s LEFT JOIN sg_stage_versions v"
            " ON v.stage_id = s.id AND v.version = COALESCE(CAST(:version AS INTEGER), s.latest_version)"
            f" WHERE {where}",
            params,
        )
        if not rows or (version is not None and rows[0]["found_version"] is None):
            return None
        return _stage(rows[0])

    def list_stages(self, project_id: str) -> list[Stage]:
        rows = self._rows(
            f"SELECT {_STAGE_COLUMNS} FROM sg_stages s LEFT JOIN sg_stage_versions v"
            " ON v.stage_id = s.id AND v.version = s.latest_version"
            " WHERE s.project_id = :project_id ORDER BY s.name",
            {"project_id": str(project_id)},
        )
        return [_stage(row) for row in rows]

    def list_versions(self, stage_id: str) -> list[int]:
        rows = self._rows(
            "SELECT version FROM sg_stage_versions WHERE stage_id = :id ORDER BY version", {"id": stage_id}
        )
        return [int(row["version"]) for row in rows]

    def update_stage(self, stage_id: str, prioritized_rulesets: Sequence[Ruleset]) -> Stage:
        with self._write() as conn:
            row = (
                conn.execute(
                    text("SELECT type, name FROM sg_stages WHERE id = :id FOR UPDATE"), {"id": stage_id}
                )
                .mappings()
                .first()
            )
            if row is None:
                raise StageNotFoundError(f"stage {stage_id} does not exist")
            if row["type"] != StageType.central.value:
                raise StageConflictError(
                    f"stage {row['name']!r} is local: its rulesets are supplied at invoke time, not stored"
                )
            latest = conn.execute(
                text("SELECT COALESCE(MAX(version), 0) FROM sg_stage_versions WHERE stage_id = :id"),
                {"id": stage_id},
            ).scalar_one()
            self._insert_version(conn, stage_id, latest + 1, prioritized_rulesets, dt.datetime.now(dt.UTC))
            conn.execute(
                text("UPDATE sg_stages SET latest_version = :v WHERE id = :id"),
                {"v": latest + 1, "id": stage_id},
            )
        # the version written here, even if another writer has added one since
        stage = self.get_stage(None, stage_id=stage_id, version=latest + 1)
        if stage is None:
            raise StageNotFoundError(f"stage {stage_id} was deleted while it was being updated")
        return stage

    def set_paused(self, stage_id: str, paused: bool) -> Stage:
        return self._set(stage_id, "paused", bool(paused))

    def set_fail_policy(self, stage_id: str, fail_policy: FailPolicy) -> Stage:
        return self._set(stage_id, "fail_policy", FailPolicy(fail_policy).value)

    def delete_stage(self, stage_id: str) -> bool:
        with self._write() as conn:
            return conn.execute(text("DELETE FROM sg_stages WHERE id = :id"), {"id": stage_id}).rowcount > 0

    # -- helpers

    @staticmethod
    def _insert_version(
        conn: Connection, stage_id: str, version: int, rulesets: Sequence[Ruleset], now: dt.datetime
    ) -> None:
        conn.execute(
            text(
                "INSERT INTO sg_stage_versions (stage_id, version, rulesets, created_at)"
                " VALUES (:id, :version, CAST(:rulesets AS JSONB), :now)"
            ),
            {"id": stage_id, "version": version, "rulesets": _dump(rulesets), "now": now},
        )

    def _set(self, stage_id: str, column: str, value: Any) -> Stage:
        with self._write() as conn:
            sql = f"UPDATE sg_stages SET {column} = :value WHERE id = :id"  # column is ours, not user input
            if conn.execute(text(sql), {"value": value, "id": stage_id}).rowcount == 0:
                raise StageNotFoundError(f"stage {stage_id} does not exist")
        return self._require(stage_id)

    def _require(self, stage_id: str) -> Stage:
        stage = self.get_stage(None, stage_id=stage_id)
        if stage is None:
            raise StageNotFoundError(f"stage {stage_id} does not exist")
        return stage


def _short(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _dump(rulesets: Sequence[Ruleset]) -> str:
    return json.dumps([r.model_dump(mode="json") for r in rulesets])


def _stage(row: RowMapping) -> Stage:
    stored = row["rulesets"]
    if isinstance(stored, str):
        stored = json.loads(stored)
    rulesets = parse_rulesets(stored, lenient=True) if stored is not None else []
    return Stage(
        id=row["id"],
        name=row["name"],
        project_id=row["project_id"],
        description=row["description"],
        type=StageType(row["type"]),
        paused=bool(row["paused"]),
        version=row["found_version"],
        prioritized_rulesets=rulesets,
        fail_policy=FailPolicy(row["fail_policy"]),
        created_at=row["created_at"],
    )

"""API keys: random secrets shown once, stored as SHA-256 hashes, each bound to one project and a role.

Keys are high-entropy random tokens, so a plain SHA-256 is the right hash (a slow password hash would
only add latency to every authenticated call). The table lives in the stage database (SQLite file or
PostgreSQL), so every server process sharing the database sees the same keys and revocations.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreUnavailableError

logger = logging.getLogger("stageguard.server")

KEY_PREFIX = "sgk_"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sg_api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT,
    project_id TEXT NOT NULL,
    project_name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS sg_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
"""
_SCHEMA_LOCK = 0x5347_0002


class Role(str, Enum):
    """``admin`` manages its project's stages; ``app`` reads stages and invokes."""

    admin = "admin"
    app = "app"


@dataclass(frozen=True)
class ApiKey:
    id: str
    prefix: str
    name: str | None
    project_id: str
    project_name: str
    role: Role
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prefix": self.prefix,
            "name": self.name,
            "project_id": self.project_id,
            "project_name": self.project_name,
            "role": self.role.value,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _key(row: RowMapping) -> ApiKey:
    created = _time(row["created_at"])
    assert created is not None
    return ApiKey(
        id=row["id"],
        prefix=row["prefix"],
        name=row["name"],
        project_id=row["project_id"],
        project_name=row["project_name"],
        role=Role(row["role"]),
        created_at=created,
        revoked_at=_time(row["revoked_at"]),
    )


def _short(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__


class KeyStore:
    """API keys in the stage database (any SQLAlchemy engine: SQLite or PostgreSQL).

    Database failures surface as :class:`StoreUnavailableError` (the server answers 503); after one,
    calls fail at once for ``outage_backoff`` seconds instead of each waiting for a connect time-out."""

    def __init__(self, engine: Engine, *, outage_backoff: float = 2.0) -> None:
        self._engine = engine
        self.outage_backoff = outage_backoff
        self._down_until = -float("inf")
        self._down_reason = ""
        with self._begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(text(statement))
            # Older versions kept the JWT signing secret here in plain text: it is never used again.
            removed = conn.execute(text("DELETE FROM sg_secrets WHERE name = 'jwt'")).rowcount
        if removed:
            logger.warning(
                "removed the JWT signing secret stored in plain text in the database: the secret now comes "
                "from STAGEGUARD_JWT_SECRET or a file (STAGEGUARD_JWT_SECRET_FILE); tokens issued before "
                "are no longer valid (clients log in again)"
            )

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        if time.monotonic() < self._down_until:
            raise StoreUnavailableError(f"key database unavailable (retrying shortly): {self._down_reason}")
        try:
            with self._engine.begin() if write else self._engine.connect() as conn:
                yield conn
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            if getattr(exc, "connection_invalidated", False) or not _is_integrity(exc):
                self._down_reason = _short(exc)
                self._down_until = time.monotonic() + self.outage_backoff
                raise StoreUnavailableError(f"key database unavailable: {self._down_reason}") from exc
            raise

    def _begin(self) -> Any:
        return self._connect(write=True)

    def close(self) -> None:
        self._engine.dispose()

    def create(
        self, project_id: str, project_name: str, role: Role | str, name: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new key for the project; returns the record and the secret (shown once, never stored)."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=str(uuid.uuid4()),
            prefix=secret[:12],
            name=name,
            project_id=project_id,
            project_name=project_name,
            role=Role(role),
            created_at=dt.datetime.now(dt.UTC),
        )
        with self._begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO sg_api_keys (id, key_hash, prefix, name, project_id, project_name, role,"
                    " created_at) VALUES (:id, :hash, :prefix, :name, :project_id, :project_name, :role,"
                    " :created_at)"
                ),
                {**key.as_json(), "hash": hash_key(secret)},
            )
        return key, secret

    def _one(self, where: str, params: dict[str, Any]) -> ApiKey | None:
        with self._connect(write=False) as conn:
            row = conn.execute(text(f"SELECT * FROM sg_api_keys WHERE {where}"), params).mappings().first()
        return _key(row) if row is not None else None

    def get(self, key_id: str) -> ApiKey | None:
        return self._one("id = :id", {"id": key_id})

    def find(self, secret: str) -> ApiKey | None:
        """The key whose secret this is (revoked keys included: callers check ``active``)."""
        return self._one("key_hash = :hash", {"hash": hash_key(secret)})

    def list(self, project_name: str | None = None) -> list[ApiKey]:
        sql, params = "SELECT * FROM sg_api_keys", {}
        if project_name is not None:
            sql, params = sql + " WHERE project_name = :project", {"project": project_name}
        with self._connect(write=False) as conn:
            rows = conn.execute(text(sql + " ORDER BY project_name, created_at"), params).mappings().all()
        return [_key(row) for row in rows]

    def revoke(self, id_or_prefix: str) -> ApiKey:
        """Revoke a key by id or displayed prefix; raises ``LookupError`` unless exactly one matches."""
        matches = [k for k in self.list() if id_or_prefix in (k.id, k.prefix)]
        if len(matches) != 1:
            found = "no key" if not matches else f"{len(matches)} keys"
            raise LookupError(f"{found} with id or prefix {id_or_prefix!r}")
        now = dt.datetime.now(dt.UTC).isoformat()
        with self._begin() as conn:
            conn.execute(
                text("UPDATE sg_api_keys SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL"),
                {"now": now, "id": matches[0].id},
            )
        key = self.get(matches[0].id)
        assert key is not None
        return key


def _is_integrity(exc: BaseException) -> bool:
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, (IntegrityError, sqlite3.IntegrityError))

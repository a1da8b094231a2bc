"""Server fixtures: every server test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``STAGEGUARD_TEST_POSTGRES_URL`` (``.ci/run`` starts one and sets it); without the
variable a local server at the ``.ci/run`` address is tried. Its tests are skipped only when no server is
reachable and the variable is unset; a set variable that doesn't connect is an error. Each test gets its
own PostgreSQL schema, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")
pytest.importorskip("psycopg")

import psycopg
from _server_support import Harness, LiveServer, make_harness, postgres_base_url, start_live


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections use a fresh schema (dropped after the test)."""
    base = postgres_base_url()
    schema = f"sg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "stages.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def harness(db_url: str) -> Iterator[Harness]:
    server = make_harness(db_url)
    with server.client:
        yield server
    server.databases.close()


@pytest.fixture
def logged(db_url: str) -> Iterator[Harness]:
    """A server with the decision log on."""
    server = make_harness(db_url, decision_log=True)
    with server.client:
        yield server
    server.databases.close()


@pytest.fixture
def live(harness: Harness) -> Iterator[LiveServer]:
    server = start_live(harness)
    yield server
    server.stop()

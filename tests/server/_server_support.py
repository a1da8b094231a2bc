"""Helpers of the server tests: the PostgreSQL test database, a server harness, live servers."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from stageguard.server import Databases, ServerSettings, create_app, open_databases

POSTGRES_ENV = "STAGEGUARD_TEST_POSTGRES_URL"
_LOCAL_POSTGRES = "postgresql://stageguard:stageguard@127.0.0.1:5432/stageguard_test"
_postgres: dict[str, str | None] = {}

PII_RULESET = {
    "rules": [{"metric": "input_pii", "operator": "contains", "target_value": "email"}],
    "action": {"type": "OVERRIDE", "choices": ["blocked"]},
    "description": "no emails",
}
EMAIL_TEXT = "write to me at jane.doe@example.com"


def postgres_base_url() -> str:
    """The PostgreSQL URL to test against, or skip (only when none is configured nor reachable)."""
    if "url" not in _postgres:
        configured = os.environ.get(POSTGRES_ENV)
        url = configured or _LOCAL_POSTGRES
        _postgres["url"] = None
        try:
            psycopg.connect(url, connect_timeout=3).close()
            _postgres["url"] = url
        except psycopg.OperationalError as exc:
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if configured:
                _postgres["error"] = f"{POSTGRES_ENV} is set but PostgreSQL is unreachable: {problem}"
            else:
                _postgres["skip"] = f"no PostgreSQL reachable (set {POSTGRES_ENV}): {problem}"
    if _postgres.get("error"):
        pytest.fail(str(_postgres["error"]))
    if _postgres["url"] is None:
        pytest.skip(str(_postgres["skip"]))
    return str(_postgres["url"])


@dataclass
class Harness:
    """A server app with its databases, plus helpers to make projects, keys and stages."""

    app: FastAPI
    databases: Databases
    settings: ServerSettings
    client: TestClient
    keys: dict[tuple[str, str], str] = field(default_factory=dict)

    def project_id(self, name: str) -> str:
        project = self.databases.stages.get_project(name=name) or self.databases.stages.create_project(name)
        return project.id

    def key(self, project: str = "acme", role: str = "admin") -> str:
        """An API key (one per project and role)."""
        if (project, role) not in self.keys:
            _, secret = self.databases.keys.create(
                self.project_id(project), project, role, f"{project}-{role}"
            )
            self.keys[(project, role)] = secret
        return self.keys[(project, role)]

    def headers(self, project: str = "acme", role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(project, role)}"}

    def create_stage(self, name: str = "guard", project: str = "acme", **body: Any) -> dict[str, Any]:
        body = {"name": name, "type": "central", "prioritized_rulesets": [PII_RULESET], **body}
        response = self.client.post(
            f"/projects/{self.project_id(project)}/stages", json=body, headers=self.headers(project)
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


def console_login(client: TestClient, key: str) -> None:
    """Log ``client`` in to the web console with ``key`` (sets the session cookie)."""
    response = client.post("/console/login", data={"api_key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text


def csrf_of(html: str) -> str:
    """The CSRF token of a console page (every form carries it)."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def make_harness(db: str, **settings: Any) -> Harness:
    config = ServerSettings(db=db, **{"warm_up": False, "invoke_processes": 0, **settings})
    databases = open_databases(db, poll_interval=0.0, busy_timeout=config.db_busy_timeout)
    app = create_app(config, databases=databases)
    return Harness(app=app, databases=databases, settings=config, client=TestClient(app))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    harness: Harness
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_live(harness: Harness, port: int | None = None) -> LiveServer:
    """uvicorn serving ``harness.app`` on loopback, in a thread."""
    port = port or free_port()
    config = uvicorn.Config(harness.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return LiveServer(f"http://127.0.0.1:{port}", harness, server, thread)


_GALILEO_ENV = (
    "GALILEO_PROJECT",
    "GALILEO_PROJECT_NAME",
    "GALILEO_PROJECT_ID",
    "GALILEO_JWT_TOKEN",
    "GALILEO_STAGE_NAME",
    "GALILEO_STAGE_ID",
    "GALILEO_STAGE_VERSION",
)


def reset_galileo_login() -> None:
    """Forget the official SDK's cached configuration and login (it is a process-wide singleton)."""
    from galileo.config import GalileoPythonConfig

    GalileoPythonConfig._instance = None


@contextmanager
def galileo_sdk_env(
    monkeypatch: pytest.MonkeyPatch, url: str, key: str, home: Path, project: str | None = None
) -> Iterator[None]:
    """Point the official ``galileo`` SDK at a stageguard server at ``url`` with API key ``key``; no other
    Galileo variable set except ``GALILEO_PROJECT`` when ``project`` is given."""
    for name in _GALILEO_ENV:
        monkeypatch.delenv(name, raising=False)
    if project is not None:
        monkeypatch.setenv("GALILEO_PROJECT", project)
    monkeypatch.setenv("GALILEO_CONSOLE_URL", url)
    monkeypatch.setenv("GALILEO_API_URL", url)
    monkeypatch.setenv("GALILEO_HOME_DIR", str(home))
    monkeypatch.setenv("GALILEO_API_KEY", key)
    reset_galileo_login()
    try:
        yield
    finally:
        reset_galileo_login()

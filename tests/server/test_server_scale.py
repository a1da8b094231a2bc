"""Several server processes on one database, and the PostgreSQL store under concurrent writers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from _server_support import EMAIL_TEXT, PII_RULESET, free_port, make_harness

from stageguard import ExecutionStatus, Rule, Ruleset, StageConflictError, StageNotFoundError, StageType
from stageguard.client import ProtectClient
from stageguard.errors import StoreUnavailableError
from stageguard.server import open_databases
from stageguard.store.postgres import PostgresStageStore


def _rulesets(threshold: float) -> list[Ruleset]:
    return [Ruleset(rules=[Rule(metric="input_toxicity", operator="gt", target_value=threshold)])]


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[PostgresStageStore]:
    store = PostgresStageStore(postgres_url, poll_interval=0.0)
    yield store
    store.close()


def test_postgres_store_contract(pg_store: PostgresStageStore) -> None:
    store = pg_store
    a, b = store.create_project("a"), store.create_project("b")
    with pytest.raises(StageConflictError):
        store.create_project("a")
    assert store.get_project(name="a") == a and store.get_project(project_id=b.id) == b
    assert [p.name for p in store.list_projects()] == ["a", "b"]
    stage = store.create_stage(a.id, "s", stage_type=StageType.central, prioritized_rulesets=_rulesets(0.1))
    assert stage.version == 1 and stage.prioritized_rulesets == _rulesets(0.1)
    assert store.update_stage(stage.id, _rulesets(0.2)).version == 2
    assert store.update_stage(stage.id, []).prioritized_rulesets == []
    assert store.list_versions(stage.id) == [1, 2, 3]
    pinned = store.get_stage(a.id, name="s", version=2)
    assert pinned is not None and pinned.prioritized_rulesets == _rulesets(0.2)
    assert store.get_stage(a.id, name="s", version=9) is None
    assert store.get_stage(b.id, stage_id=stage.id) is None  # scoped to its project
    with pytest.raises(StageConflictError, match="already exists"):
        store.create_stage(a.id, "s")
    with pytest.raises(StageConflictError, match="local stages are created without rulesets"):
        store.create_stage(a.id, "l", prioritized_rulesets=_rulesets(0.1))
    local = store.create_stage(a.id, "l", description="d", paused=True)
    assert local.version is None and local.paused and local.description == "d"
    with pytest.raises(StageConflictError, match="is local"):
        store.update_stage(local.id, _rulesets(0.1))
    assert not store.set_paused(local.id, False).paused
    assert store.set_fail_policy(stage.id, "fail_closed").fail_policy.value == "fail_closed"  # type: ignore[arg-type]
    assert [s.name for s in store.list_stages(a.id)] == ["l", "s"]
    with pytest.raises(StageNotFoundError):
        store.set_paused("00000000-0000-4000-8000-000000000000", True)
    with pytest.raises(StageNotFoundError):
        store.create_stage("no-such-project", "x")
    assert store.delete_stage(stage.id) and not store.delete_stage(stage.id)
    assert store.list_versions(stage.id) == []


def test_postgres_versions_under_concurrent_writers(postgres_url: str) -> None:
    """Two stores (as two processes would) and eight threads: every update gets its own version."""
    stores = [PostgresStageStore(postgres_url, poll_interval=0.0) for _ in range(2)]
    project = stores[0].create_project("p")
    stage = stores[0].create_stage(project.id, "s", stage_type=StageType.central)
    seen: list[int] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        for step in range(5):
            version = stores[index % 2].update_stage(stage.id, _rulesets((index * 5 + step) / 100)).version
            with lock:
                seen.append(version or 0)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(2, 42))
    assert stores[1].list_versions(stage.id) == list(range(1, 42))
    before = stores[1].generation()
    stores[0].set_paused(stage.id, True)
    assert stores[1].generation() != before  # another process's write is noticed
    for store in stores:
        store.close()


def test_postgres_outage_is_store_unavailable() -> None:
    store_url = f"postgresql://nobody:nothing@127.0.0.1:{free_port()}/none"
    with pytest.raises(StoreUnavailableError, match="PostgreSQL unavailable"):
        PostgresStageStore(store_url)


def _serve(db: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STAGEGUARD_POLL_INTERVAL": "0.1", "STAGEGUARD_KEY_CACHE_TTL": "0.1"}
    command = [
        sys.executable,
        "-m",
        "stageguard",
        "serve",
        "--db",
        db,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"{url}/healthcheck", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")


def test_two_server_processes_share_one_database(db_url: str, tmp_path: Path) -> None:
    databases = open_databases(db_url)
    project = databases.stages.create_project("acme")
    admin = databases.keys.create(project.id, "acme", "admin")[1]
    app = databases.keys.create(project.id, "acme", "app")[1]
    databases.close()
    ports = [free_port(), free_port()]
    processes = [_serve(db_url, port) for port in ports]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            _wait_healthy(url, process)
        one, two = ProtectClient(urls[0], admin), ProtectClient(urls[1], app)
        stage = one.create_stage("guard", stage_type="central", prioritized_rulesets=[PII_RULESET])
        assert two.invoke(EMAIL_TEXT, stage_name="guard").text == "blocked"

        one.pause_stage("guard")
        deadline = time.monotonic() + 5
        while two.invoke(EMAIL_TEXT, stage_name="guard").status is not ExecutionStatus.paused:
            assert time.monotonic() < deadline, "the second server did not obey the pause"
            time.sleep(0.05)
        one.resume_stage("guard")
        one.update_stage("guard", prioritized_rulesets=[])
        assert (two.get_stage(stage_id=stage.id) or stage).version == 2  # reads go to the database

        def version_used() -> int | None:
            metadata = two.invoke(EMAIL_TEXT, stage_name="guard").stage_metadata
            return metadata.stage_version if metadata else None

        deadline = time.monotonic() + 5  # invokes use a cache refreshed every STAGEGUARD_POLL_INTERVAL
        while version_used() != 2:
            assert time.monotonic() < deadline, "the second server did not use the new version"
            time.sleep(0.05)

        # a token signed by one process is accepted by the other (the secret lives in the database)
        token = httpx.post(f"{urls[0]}/login/api_key", json={"api_key": app}).json()["access_token"]
        me = httpx.get(f"{urls[1]}/current_user", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["project_name"] == "acme"
        one.close()
        two.close()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


class _Proxy:
    """A TCP proxy to PostgreSQL that a test can cut, to simulate a database outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open = False
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_server_keeps_answering_while_postgres_is_down(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    proxy = _Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    proxied = urlunsplit(
        parts._replace(
            netloc=parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
        )
    )
    harness = make_harness(proxied)
    with harness.client as c:
        stage = harness.create_stage()
        app, admin = harness.headers("acme", "app"), harness.headers()
        body = {"payload": {"input": EMAIL_TEXT}, "stage_name": "guard"}
        assert c.post("/protect/invoke", json=body, headers=app).json()["text"] == "blocked"
        proxy.cut()
        time.sleep(0.05)
        # cached stage: still enforced
        cached = c.post("/protect/invoke", json=body, headers=app)
        assert cached.status_code == 200 and cached.json()["text"] == "blocked"
        # a stage not cached yet: the fail policy answers (fail-open), still HTTP 200
        other = c.post("/protect/invoke", json={**body, "stage_name": "other"}, headers=app)
        assert other.status_code == 200 and other.json()["status"] == "ERROR"
        assert "unavailable" in other.json()["failure"]["reason"]
        # management needs the database: a clear 503
        down = c.put(f"/stages/{stage['id']}", params={"pause": "true"}, headers=admin)
        assert down.status_code == 503 and down.json()["error"] == "store_unavailable"
        assert down.headers["retry-after"] == "1"
    harness.databases.close()

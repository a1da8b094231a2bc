"""The database goes away for real (PostgreSQL behind a TCP proxy, in its own process, that is killed and
restarted): management calls and unknown keys get 503 (never 500), invokes of
cached stages keep being enforced with the keys seen before, uncached stages answer under the fail
policy, and everything recovers by itself."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from _server_support import EMAIL_TEXT, Harness, free_port, make_harness


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        script = Path(__file__).with_name("_tcp_proxy.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(self.port), str(self.target_port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == b"ready"

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def proxy_url(postgres_url: str) -> Iterator[tuple[str, Proxy]]:
    parts = urlsplit(postgres_url)
    proxy = Proxy(parts.port or 5432)
    proxy.start()
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    proxied = urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
    yield proxied, proxy
    proxy.kill()


def _until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def _scenario(harness: Harness, fault: Callable[[], None], repair: Callable[[], None]) -> None:
    c, admin, pid = harness.client, harness.headers(), harness.project_id("acme")
    app_key = harness.headers(role="app")
    fresh_key = harness.headers(project="acme", role="app") | {}
    stage = harness.create_stage(fail_policy="fail_closed")
    other = harness.create_stage(name="uncached", fail_policy="fail_closed")
    _, unused_secret = harness.databases.keys.create(pid, "acme", "app", "never-used")
    never_seen = {"Authorization": f"Bearer {unused_secret}"}
    invoke = {"payload": {"input": EMAIL_TEXT}, "stage_id": stage["id"]}
    assert c.post("/protect/invoke", json=invoke, headers=app_key).json()["text"] == "blocked"
    assert c.get(f"/stages/{stage['id']}", headers=admin).status_code == 200

    fault()
    time.sleep(harness.settings.key_cache_ttl + 0.1)  # the key cache has expired
    for _ in range(3):
        managed = c.get(f"/stages/{stage['id']}", headers=admin)
        assert managed.status_code == 503, managed.text
        assert managed.json()["error"] == "store_unavailable" and managed.headers["retry-after"] == "1"
        # a key never seen can't be checked: 503, not 401 and not 500
        assert c.get("/current_user", headers=never_seen).status_code == 503
        # invokes of a cached stage are still enforced, with a key seen before
        cached = c.post("/protect/invoke", json=invoke, headers=fresh_key)
        assert cached.status_code == 200 and cached.json()["text"] == "blocked", cached.text
        # an uncached stage answers under the fail policy (fail-closed here: the call asks for it)
        uncached = c.post(
            "/protect/invoke",
            json={"payload": {"input": "hello"}, "stage_id": other["id"], "fail_policy": "fail_closed"},
            headers=fresh_key,
        )
        assert uncached.status_code == 200, uncached.text
        body = uncached.json()
        assert body["status"] == "TRIGGERED" and "unavailable" in body["failure"]["reason"]
        created = c.post(f"/projects/{pid}/stages", json={"name": "new"}, headers=admin)
        assert created.status_code == 503, created.text

    repair()
    assert _until(lambda: c.get(f"/stages/{stage['id']}", headers=admin).status_code == 200, 20)
    assert c.get("/current_user", headers=never_seen).status_code == 200
    assert c.post(f"/projects/{pid}/stages", json={"name": "new"}, headers=admin).status_code == 200


def test_postgres_outage_and_recovery(proxy_url: tuple[str, Proxy]) -> None:
    url, proxy = proxy_url
    harness = make_harness(url, key_cache_ttl=0.3)
    with harness.client:
        _scenario(harness, proxy.kill, proxy.start)
    harness.databases.close()


_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
"""


def test_sqlite_locked_by_another_process(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock (a backup, a second server, a forgotten ``sqlite3`` shell):
    writes answer 503 within the busy timeout instead of holding the request for 30 s; reads, keys seen
    before and invokes keep working; when that process dies everything recovers by itself."""
    db = str(tmp_path / "stageguard.db")
    harness = make_harness(db, key_cache_ttl=0.3, db_busy_timeout=0.5)
    c, admin, pid = harness.client, harness.headers(), harness.project_id("acme")
    app_key = harness.headers(role="app")
    stage = harness.create_stage(fail_policy="fail_closed")
    invoke = {"payload": {"input": EMAIL_TEXT}, "stage_id": stage["id"]}
    assert c.post("/protect/invoke", json=invoke, headers=app_key).json()["text"] == "blocked"

    locker = subprocess.Popen([sys.executable, "-c", _LOCKER, db], stdout=subprocess.PIPE)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == b"locked"
        for _ in range(2):
            start = time.monotonic()
            created = c.post(f"/projects/{pid}/stages", json={"name": "new"}, headers=admin)
            assert created.status_code == 503, created.text
            assert created.headers["retry-after"] == "1" and "locked" in created.text
            assert time.monotonic() - start < 5  # the busy timeout, not 30 s
            assert c.get(f"/stages/{stage['id']}", headers=admin).status_code == 200  # WAL: reads go on
            time.sleep(0.4)  # the key cache expires: keys are re-read from the locked database
            cached = c.post("/protect/invoke", json=invoke, headers=app_key)
            assert cached.status_code == 200 and cached.json()["text"] == "blocked", cached.text
        names = [s["name"] for s in c.get(f"/projects/{pid}/stages/all", headers=admin).json()]
        assert "new" not in names  # nothing was half-written
    finally:
        locker.kill()
        locker.wait(timeout=10)
    assert _until(
        lambda: c.post(f"/projects/{pid}/stages", json={"name": "new"}, headers=admin).status_code == 200, 10
    )
    harness.databases.close()

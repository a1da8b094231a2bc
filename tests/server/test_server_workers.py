"""``stageguard serve --workers N``: each worker binds the port with ``SO_REUSEPORT`` so the kernel spreads
connections between them (one shared socket let a keep-alive burst land on a single worker); a worker that
dies is restarted; SIGTERM stops them all. Real processes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from _server_support import free_port

from stageguard.server import open_databases

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_healthy(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthcheck", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not come up")


def _workers(server: subprocess.Popen[bytes]) -> list[int]:
    # the serve process's children: the workers, plus multiprocessing's resource tracker
    return [
        p for p in _children(server.pid) if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text()
    ]


def test_workers_share_connections_restart_and_stop(tmp_path: Path) -> None:
    db = str(tmp_path / "stages.db")
    databases = open_databases(db)
    project = databases.stages.create_project("acme")
    _, key = databases.keys.create(project.id, project.name, "admin", "test")
    databases.close()
    port = free_port()
    env = {**os.environ, "STAGEGUARD_WARM_UP": "0", "STAGEGUARD_INVOKE_PROCESSES": "0"}
    command = [sys.executable, "-m", "stageguard", "serve", "--db", db, "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url)
        workers = _workers(server)
        assert len(workers) == 2
        assert 'id="login-form"' in httpx.get(f"{url}/console/login").text  # the console, served by workers
        before = {p: _cpu(p) for p in workers}
        body = {
            "payload": {"input": "my email is jane@example.com " * 200},
            "prioritized_rulesets": [
                {"rules": [{"metric": "input_pii", "operator": "not_empty"}], "action": {"type": "REDACT"}}
            ],
        }
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(40):  # new connections: the kernel hashes each to one of the two sockets
            with httpx.Client(base_url=url, headers=headers) as client:
                for _ in range(5):
                    assert client.post("/protect/invoke", json=body).status_code == 200
        used = [_cpu(p) - before[p] for p in workers]
        assert min(used) > 0.15 * sum(used), used  # both workers took a real share

        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(set(_workers(server)) - {workers[0]}) < 2:
            time.sleep(0.2)
        assert len(set(_workers(server)) - {workers[0]}) == 2  # replaced
        _wait_healthy(url)
        for _ in range(10):
            assert (
                httpx.post(f"{url}/protect/invoke", json=body, headers=headers, timeout=10).status_code == 200
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=40)
    assert server.returncode == 0
    assert server.stderr is not None
    assert f"web console: http://127.0.0.1:{port}/console/" in server.stderr.read().decode()
    for pid in workers[1:]:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()

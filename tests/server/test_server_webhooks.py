"""Subscriptions delivered by the server, and the webhook allowlist (at write time and after DNS)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from _server_support import EMAIL_TEXT, Harness, make_harness

from stageguard.server import Allowlist, AllowlistTransport, WebhookNotAllowedError


class Receiver:
    """A webhook receiver on loopback that records what it gets."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received
        self.event = threading.Event()
        event = self.event

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append({"path": self.path, "host": self.headers["host"], "body": json.loads(body)})
                self.send_response(204)
                self.end_headers()
                event.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _ruleset(url: str) -> dict[str, Any]:
    return {
        "rules": [{"metric": "input_pii", "operator": "contains", "target_value": "email"}],
        "action": {"type": "OVERRIDE", "choices": ["blocked"], "subscriptions": [{"url": url}]},
    }


@pytest.mark.parametrize(
    ("entries", "url"),
    [
        (["*"], "https://hooks.example.com/x"),
        (["*"], "http://93.184.216.34:8080/x"),
        (["hooks.example.com"], "https://hooks.example.com/x"),
        (["*.example.com"], "https://a.b.example.com/x"),
        (["127.0.0.1"], "http://127.0.0.1:9000/x"),
        (["10.0.0.0/8"], "http://10.1.2.3/x"),
        (["localhost"], "http://localhost:8000/x"),
        (["hooks.internal"], "http://hooks.internal/x"),
        (["::1"], "http://[::1]:9000/x"),
    ],
)
def test_allowed_urls(entries: list[str], url: str) -> None:
    Allowlist(entries).check_url(url)


@pytest.mark.parametrize(
    ("entries", "url", "reason"),
    [
        (["*"], "http://127.0.0.1/x", "loopback"),
        (["*"], "http://10.0.0.5/x", "private"),
        (["*"], "http://169.254.169.254/latest/meta-data", "private"),
        (["*"], "http://[::1]/x", "private"),
        (["*"], "http://[::ffff:127.0.0.1]/x", "private"),
        (["*"], "http://2130706433/x", "private"),  # 127.0.0.1 as one number
        (["*"], "http://0x7f.1/x", "private"),
        (["*"], "http://0.0.0.0/x", "private"),
        (["*"], "http://localhost/x", "internal name"),
        (["*"], "http://db.internal/x", "internal name"),
        (["*"], "http://intranet/x", "internal name"),
        (["*"], "ftp://hooks.example.com/x", "http or https"),
        (["hooks.example.com"], "https://evil.example.net/x", "not in the webhook allowlist"),
        (["*.example.com"], "https://example.com/x", "not in the webhook allowlist"),
        (["10.0.0.0/8"], "http://192.168.1.1/x", "private"),
        ([], "https://hooks.example.com/x", "not in the webhook allowlist"),
    ],
)
def test_refused_urls(entries: list[str], url: str, reason: str) -> None:
    with pytest.raises(WebhookNotAllowedError, match=reason):
        Allowlist(entries).check_url(url)


def test_bad_allowlist_entries() -> None:
    with pytest.raises(ValueError, match="invalid webhook allowlist entry"):
        Allowlist(["hooks.*.com"])


def test_refused_at_create_update_and_invoke(harness: Harness) -> None:
    pid, h, c = harness.project_id("acme"), harness.headers(), harness.client
    url = "http://127.0.0.1:1/hook"
    body = {"name": "s", "type": "central", "prioritized_rulesets": [_ruleset(url)]}
    created = c.post(f"/projects/{pid}/stages", json=body, headers=h)
    assert created.status_code == 422
    error = created.json()["detail"][0]
    assert error["type"] == "webhook_not_allowed" and "127.0.0.1" in error["msg"]
    assert error["loc"] == ["body", "prioritized_rulesets", 0, "action", "subscriptions", 0, "url"]
    stage = harness.create_stage()
    updated = c.post(f"/stages/{stage['id']}", json={"prioritized_rulesets": [_ruleset(url)]}, headers=h)
    assert updated.status_code == 422 and c.get(f"/stages/{stage['id']}", headers=h).json()["version"] == 1
    invoked = c.post(
        "/protect/invoke",
        json={"payload": {"input": "x"}, "prioritized_rulesets": [_ruleset(url)]},
        headers=h,
    )
    assert invoked.status_code == 422


def test_delivered_to_allowed_hosts(tmp_path: Any, receiver: Receiver) -> None:
    harness = make_harness(str(tmp_path / "s.db"), webhook_allowlist=("127.0.0.1",), webhook_retries=0)
    with harness.client:
        url = f"http://127.0.0.1:{receiver.port}/protect"
        harness.create_stage(prioritized_rulesets=[_ruleset(url)])
        response = harness.client.post(
            "/protect/invoke",
            json={"payload": {"input": EMAIL_TEXT}, "stage_name": "guard", "metadata": {"k": "v"}},
            headers=harness.headers("acme", "app"),
        )
        assert response.json()["text"] == "blocked"
        assert receiver.event.wait(10)
    harness.databases.close()
    delivered = receiver.received[0]
    assert delivered["path"] == "/protect" and delivered["host"] == f"127.0.0.1:{receiver.port}"
    assert delivered["body"]["status"] == "TRIGGERED" and delivered["body"]["metadata"] == {"k": "v"}


def _transport(entries: list[str], answers: dict[str, list[str]], receiver: Receiver) -> AllowlistTransport:
    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]

    return AllowlistTransport(Allowlist(entries), resolver=resolve)


def test_delivery_rechecks_after_dns(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """A public-looking name that resolves to a private address is refused at delivery time; an allowed
    one is delivered to the address that was checked (no second lookup to rebind)."""
    port = receiver.port
    transport = _transport(
        ["*", "hooks.test"],
        {"rebind.example.com": ["93.184.216.34", "127.0.0.1"], "hooks.test": ["127.0.0.1"]},
        receiver,
    )

    async def post(url: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post(url, json={"x": 1})

    Allowlist(["*"]).check_url("http://rebind.example.com/x")  # passes the write-time check
    blocked = asyncio.run(post(f"http://rebind.example.com:{port}/x"))
    assert blocked.status_code == 403 and blocked.headers["x-stageguard-blocked"] == "allowlist"
    assert "127.0.0.1" in blocked.text and "blocked by the webhook allowlist" in caplog.text
    assert receiver.received == []

    delivered = asyncio.run(post(f"http://hooks.test:{port}/ok"))  # explicitly allowed name
    assert delivered.status_code == 204
    assert receiver.received[0]["host"] == f"hooks.test:{port}"  # Host header kept, address pinned


def test_server_delivery_blocked_after_dns(
    tmp_path: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """End to end: the server's own delivery goes through the allowlist transport."""
    harness = make_harness(str(tmp_path / "s.db"), webhook_allowlist=("*",), webhook_retries=0)
    state = harness.app.state.stageguard
    delivery = state.protect.engine.subscriptions
    assert isinstance(delivery._transport, AllowlistTransport)

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    delivery._transport._resolve = resolve
    with harness.client:
        harness.create_stage(prioritized_rulesets=[_ruleset(f"http://hooks.example.com:{receiver.port}/x")])
        harness.client.post(
            "/protect/invoke",
            json={"payload": {"input": EMAIL_TEXT}, "stage_name": "guard"},
            headers=harness.headers(),
        ).raise_for_status()
        assert delivery.flush(timeout=10)
    harness.databases.close()
    assert receiver.received == [] and "blocked by the webhook allowlist" in caplog.text

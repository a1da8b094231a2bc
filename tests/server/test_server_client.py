"""The HTTP client: ProtectClient (server-side invokes, stage management) and its failure behaviour."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from _server_support import EMAIL_TEXT, PII_RULESET, LiveServer, free_port

from stageguard import ExecutionStatus, InvalidRequestError, StageConflictError, StageNotFoundError
from stageguard.client import (
    AuthenticationError,
    HttpClient,
    PermissionDeniedError,
    ProtectClient,
    ServerUnavailableError,
)
from stageguard.client._http import Call


@pytest.fixture
def client(live: LiveServer) -> Iterator[ProtectClient]:
    with ProtectClient(live.url, live.harness.key("acme", "admin")) as protect_client:
        yield protect_client


def test_manage_and_invoke_sync(client: ProtectClient, live: LiveServer) -> None:
    stage = client.create_stage("guard", stage_type="central", prioritized_rulesets=[PII_RULESET])
    assert stage.version == 1 and stage.project_id == live.harness.project_id("acme")  # the key's project
    assert client.get_stage("guard", project_name="acme").id == stage.id
    assert client.get_stage(stage_id=stage.id).name == "guard"
    assert client.get_stage("missing") is None
    assert client.update_stage("guard", prioritized_rulesets=[]).version == 2
    assert client.get_stage("guard", version=1).prioritized_rulesets[0].description == "no emails"
    assert client.list_versions("guard") == [1, 2]
    assert [s.name for s in client.list_stages()] == ["guard"]

    hit = client.invoke({"input": EMAIL_TEXT}, stage_name="guard", stage_version=1, metadata={"k": "v"})
    assert hit.triggered and hit.text == "blocked" and hit.metadata == {"k": "v"}
    assert hit.stage_metadata is not None and hit.stage_metadata.stage_version == 1
    assert client.pause_stage("guard").paused
    assert client.invoke(EMAIL_TEXT, stage_id=stage.id).status is ExecutionStatus.paused
    assert not client.resume_stage(stage_id=stage.id).paused
    assert client.set_fail_policy("guard", fail_policy="fail_closed").fail_policy.value == "fail_closed"
    local = client.invoke({"input": EMAIL_TEXT}, prioritized_rulesets=[PII_RULESET])  # inline rulesets
    assert local.text == "blocked"
    assert client.delete_stage("guard") is True
    assert client.get_stage("guard") is None


def test_manage_and_invoke_async(client: ProtectClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "acme")

    async def scenario() -> None:
        stage = await client.acreate_stage("guard", stage_type="central", prioritized_rulesets=[PII_RULESET])
        responses = await asyncio.gather(
            *(client.ainvoke({"input": EMAIL_TEXT}, stage_name="guard") for _ in range(8))
        )
        assert {r.text for r in responses} == {"blocked"}
        assert (await client.aupdate_stage("guard", prioritized_rulesets=[])).version == 2
        assert await client.alist_versions(stage_id=stage.id) == [1, 2]
        assert [s.name for s in await client.alist_stages()] == ["guard"]
        assert (await client.apause_stage("guard")).paused
        assert (await client.ainvoke(EMAIL_TEXT, stage_name="guard")).status is ExecutionStatus.paused
        assert not (await client.aresume_stage("guard")).paused
        assert (
            await client.aset_fail_policy("guard", fail_policy="fail_closed")
        ).fail_policy.value == "fail_closed"
        assert (await client.aget_stage("guard")) is not None
        assert await client.adelete_stage("guard")
        await client.aclose()

    asyncio.run(scenario())
    asyncio.run(
        client.ainvoke(EMAIL_TEXT, prioritized_rulesets=[PII_RULESET])
    )  # a second loop gets its own pool


def test_client_errors_are_typed(client: ProtectClient, live: LiveServer) -> None:
    client.create_stage("guard", stage_type="central")
    with pytest.raises(StageConflictError, match="already exists"):
        client.create_stage("guard", stage_type="central")
    with pytest.raises(StageNotFoundError, match="nope"):
        client.invoke("x", stage_name="nope")
    with pytest.raises(StageNotFoundError):
        client.pause_stage("nope")
    with pytest.raises(InvalidRequestError, match="not allowed"):
        ruleset = {
            **PII_RULESET,
            "action": {"type": "OVERRIDE", "choices": ["x"], "subscriptions": [{"url": "http://10.0.0.1/"}]},
        }
        client.update_stage("guard", prioritized_rulesets=[ruleset])
    with ProtectClient(live.url, live.harness.key("acme", "app")) as app:
        assert app.get_stage("guard") is not None
        with pytest.raises(PermissionDeniedError, match="role 'app'"):
            app.pause_stage("guard")
    with ProtectClient(live.url, live.harness.key("globex", "admin")) as other:
        with pytest.raises(PermissionDeniedError, match="globex"):
            other.get_stage("guard", project_id=live.harness.project_id("acme"))
        assert other.get_stage("guard") is None
    with (
        ProtectClient(live.url, "sgk_wrong") as wrong,
        pytest.raises(AuthenticationError, match="STAGEGUARD_API_KEY"),
    ):
        wrong.invoke("x", stage_name="guard")
    with pytest.raises(ValueError, match="STAGEGUARD_URL"):
        ProtectClient(api_key="k")


def test_invoke_fails_open_when_the_server_is_down(caplog: pytest.LogCaptureFixture) -> None:
    client = ProtectClient(f"http://127.0.0.1:{free_port()}", "sgk_x", retries=0)
    start = time.monotonic()
    response = client.invoke({"input": "hello"}, stage_name="guard", metadata={"k": "v"})
    assert response.status is ExecutionStatus.error and response.text == "hello" and not response.applied
    assert response.failure is not None and response.failure.policy.value == "fail_open"
    assert "unavailable" in response.failure.reason and response.metadata == {"k": "v"}
    assert "answering fail_open" in caplog.text
    closed = asyncio.run(client.ainvoke("hello", stage_name="guard", fail_policy="fail_closed"))
    assert closed.status is ExecutionStatus.triggered and closed.text != "hello"
    assert closed.failure is not None and closed.failure.policy.value == "fail_closed"
    assert time.monotonic() - start < 5
    strict = ProtectClient(f"http://127.0.0.1:{free_port()}", "sgk_x", fail_policy="fail_closed", retries=0)
    assert strict.invoke("hello", stage_name="guard").status is ExecutionStatus.triggered
    with pytest.raises(ServerUnavailableError):  # management calls do raise
        client.get_stage("guard")


class _Slow(BaseHTTPRequestHandler):
    delay = 2.0

    def do_POST(self) -> None:
        time.sleep(self.delay)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_invoke_time_out_stays_inside_the_budget(slow_server: str) -> None:
    client = ProtectClient(slow_server, "sgk_x")
    start = time.monotonic()
    response = client.invoke("hello", stage_name="guard", timeout=0.3)
    elapsed = time.monotonic() - start
    assert response.status is ExecutionStatus.timeout and response.text == "hello"
    assert 0.25 < elapsed < 1.0
    start = time.monotonic()
    response = asyncio.run(client.ainvoke("hello", stage_name="guard", timeout=0.3))
    assert response.status is ExecutionStatus.timeout and time.monotonic() - start < 1.0


def _counting(status: int) -> tuple[httpx.MockTransport, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(status, json={"detail": "boom", "error": "x"})

    return httpx.MockTransport(handler), seen


@pytest.mark.parametrize("status", [500, 503])
def test_only_idempotent_calls_are_retried(status: int) -> None:
    transport, seen = _counting(status)
    http = HttpClient("http://server", "k", retries=2, backoff=0.001, transport=transport)
    with pytest.raises(ServerUnavailableError, match=f"HTTP {status}: boom"):
        http.send(Call("GET", "/stages/x"))
    assert seen == ["GET"] * 3
    seen.clear()
    with pytest.raises(ServerUnavailableError):
        http.send(Call("POST", "/protect/invoke", json={}))
    assert seen == ["POST"]
    seen.clear()
    client = ProtectClient(http=http)
    response = client.invoke("hi", stage_name="s")  # a 5xx invoke answers under the fail policy
    assert response.status is ExecutionStatus.error and seen == ["POST"]


def test_posts_are_retried_only_when_nothing_was_sent() -> None:
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.method)
        raise httpx.ConnectError("refused", request=request)

    http = HttpClient("http://server", "k", retries=2, backoff=0.001, transport=httpx.MockTransport(refuse))
    with pytest.raises(ServerUnavailableError, match="ConnectError"):
        http.send(Call("POST", "/protect/invoke", json={}))
    assert attempts == ["POST"] * 3

    def reset(request: httpx.Request) -> httpx.Response:
        attempts.append(request.method)
        raise httpx.ReadError("connection reset", request=request)

    attempts.clear()
    http = HttpClient("http://server", "k", retries=2, backoff=0.001, transport=httpx.MockTransport(reset))
    with pytest.raises(ServerUnavailableError):
        http.send(Call("POST", "/protect/invoke", json={}))
    assert attempts == ["POST"]  # the request may have been processed: not retried


def test_retries_stop_at_the_call_budget() -> None:
    transport, seen = _counting(503)
    http = HttpClient("http://server", "k", retries=50, backoff=0.05, transport=transport)
    start = time.monotonic()
    with pytest.raises(ServerUnavailableError):
        http.send(Call("GET", "/x", timeout=0.3))
    assert time.monotonic() - start < 0.5 and 2 <= len(seen) < 10

"""The client (``ProtectClient``, ``RemoteStageStore``) against servers that misbehave: real processes on
loopback that answer garbage, hang, drop the connection or are gone. A ``fail_closed`` app always gets a
block with the reason, never ``JSONDecodeError``/``ValidationError``/``KeyError`` or a misleading
``StageNotFoundError``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _server_support import EMAIL_TEXT, LiveServer, free_port

from stageguard import ExecutionStatus, Protect
from stageguard.client import ProtectClient, RemoteStageStore, ServerUnavailableError

GARBAGE = [
    "html",
    "null",
    "empty",
    "list",
    "shape",
    "string",
    "truncated",
    "redirect",
    "error500",
    "error503",
    "html404",
    "html401",
    "die",
]


@pytest.fixture(scope="module")
def garbage_url() -> Iterator[str]:
    port = free_port()
    script = Path(__file__).with_name("_garbage_server.py")
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    yield f"http://127.0.0.1:{port}"
    process.kill()
    process.wait(timeout=10)


def _blocked(response: object, *words: str) -> None:
    from stageguard.response import Response

    assert isinstance(response, Response)
    assert response.status is ExecutionStatus.triggered and response.text != EMAIL_TEXT
    assert response.failure is not None and response.failure.policy.value == "fail_closed"
    for word in words:
        assert word in response.failure.reason


@pytest.mark.parametrize("mode", GARBAGE)
def test_protect_client_fails_closed_on_garbage(garbage_url: str, mode: str) -> None:
    client = ProtectClient(f"{garbage_url}/{mode}", "sgk_test", fail_policy="fail_closed", retries=0)
    _blocked(client.invoke({"input": EMAIL_TEXT}, stage_name="guard", timeout=3), "stageguard server")
    _blocked(asyncio.run(client.ainvoke({"input": EMAIL_TEXT}, stage_name="guard", timeout=3)))
    opened = client.invoke({"input": EMAIL_TEXT}, stage_name="guard", timeout=3, fail_policy="fail_open")
    assert opened.status in (ExecutionStatus.error, ExecutionStatus.timeout) and opened.text == EMAIL_TEXT
    # management calls raise the client's outage error, not a parsing error or StageNotFoundError
    with pytest.raises(ServerUnavailableError):
        client.get_stage("guard", project_id="p")
    client.close()


@pytest.mark.parametrize("mode", ["html", "null", "empty", "shape", "redirect", "html404", "die"])
def test_remote_store_fails_closed_on_garbage(garbage_url: str, mode: str) -> None:
    protect = Protect(RemoteStageStore(f"{garbage_url}/{mode}", "sgk_test", timeout=3, outage_backoff=0.0))
    _blocked(protect.invoke({"input": EMAIL_TEXT}, stage_name="guard", fail_policy="fail_closed"))
    opened = protect.invoke({"input": EMAIL_TEXT}, stage_name="guard")
    assert opened.status is ExecutionStatus.error and opened.text == EMAIL_TEXT
    assert opened.failure is not None and "unavailable" in opened.failure.reason
    protect.close()


def test_reason_says_what_was_wrong(garbage_url: str) -> None:
    client = ProtectClient(f"{garbage_url}/html", "sgk_test", fail_policy="fail_closed", retries=0)
    html = client.invoke({"input": EMAIL_TEXT}, stage_name="guard").failure
    assert html is not None and "not JSON" in html.reason and "text/html" in html.reason
    client = ProtectClient(f"{garbage_url}/redirect", "sgk_test", fail_policy="fail_closed", retries=0)
    moved = client.invoke({"input": EMAIL_TEXT}, stage_name="guard").failure
    assert moved is not None and "redirect" in moved.reason and "login.example.com" in moved.reason
    client = ProtectClient(f"{garbage_url}/shape", "sgk_test", fail_policy="fail_closed", retries=0)
    shape = client.invoke({"input": EMAIL_TEXT}, stage_name="guard").failure
    assert shape is not None and "unexpected answer" in shape.reason


def test_hanging_server_is_bounded_by_the_timeout(garbage_url: str) -> None:
    client = ProtectClient(f"{garbage_url}/hang", "sgk_test", fail_policy="fail_closed", retries=0)
    start = time.monotonic()
    response = client.invoke({"input": EMAIL_TEXT}, stage_name="guard", timeout=0.5)
    assert time.monotonic() - start < 2
    _blocked(response, "timed out")
    assert response.failure is not None
    start = time.monotonic()
    store = RemoteStageStore(f"{garbage_url}/hang", "sgk_test", timeout=0.5)
    _blocked(Protect(store).invoke({"input": EMAIL_TEXT}, stage_name="guard", fail_policy="fail_closed"))
    assert time.monotonic() - start < 2


def test_server_process_that_dies(live: LiveServer) -> None:
    """A real stageguard server that goes away: connection refused is an outage, not an exception."""
    harness = live.harness
    harness.create_stage(fail_policy="fail_closed")
    client = ProtectClient(live.url, harness.key("acme", "app"), fail_policy="fail_closed", retries=0)
    assert client.invoke({"input": EMAIL_TEXT}, stage_name="guard").text == "blocked"
    live.stop()
    _blocked(client.invoke({"input": EMAIL_TEXT}, stage_name="guard", timeout=2), "unavailable")
    refused = ProtectClient(f"http://127.0.0.1:{free_port()}", "sgk_x", fail_policy="fail_closed", retries=0)
    _blocked(refused.invoke({"input": EMAIL_TEXT}, stage_name="guard"), "unavailable")

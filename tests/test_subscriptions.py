"""Subscriptions POST the response to a real HTTP receiver, never blocking or failing the invoke."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from stageguard import Engine, OverrideAction, Payload, Rule, Ruleset, Subscription
from stageguard._subscriptions import SubscriptionDelivery


class Receiver:
    """A real HTTP server on loopback that records POST bodies (optionally slow or failing)."""

    def __init__(self, delay: float = 0.0, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.attempts += 1
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(delay)
                if receiver.attempts <= fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def slow_receiver() -> Iterator[Callable[[float], Receiver]]:
    """Makes receivers that take ``delay`` seconds per answer; all are closed after the test."""
    made: list[Receiver] = []

    def make(delay: float) -> Receiver:
        made.append(Receiver(delay=delay))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _ruleset(metric: str, url: str, statuses: list[str] | None = None) -> Ruleset:
    sub = Subscription(url=url, statuses=statuses) if statuses else Subscription(url=url)
    return Ruleset(
        rules=[Rule(metric=metric, operator="gt", target_value=0.5)],
        action=OverrideAction(choices=["blocked"], subscriptions=[sub]),
    )


def test_triggered_response_is_posted(metric: Callable[..., str], receiver: Receiver) -> None:
    name = metric("sub_high", lambda _p: 0.9)
    engine = Engine()
    response = engine.evaluate(Payload(input="x"), [_ruleset(name, receiver.url)], metadata={"req": "1"})
    assert engine.subscriptions.flush(5)
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["status"] == "TRIGGERED" and body["text"] == "blocked" and body["metadata"] == {"req": "1"}
    assert body["trace_metadata"]["id"] == response.trace_metadata.id


def test_status_filter(metric: Callable[..., str], receiver: Receiver) -> None:
    name = metric("sub_low", lambda _p: 0.1)
    engine = Engine()
    engine.evaluate(Payload(input="x"), [_ruleset(name, receiver.url)])  # default: triggered only
    engine.evaluate(Payload(input="x"), [_ruleset(name, receiver.url, ["not_triggered"])])
    assert engine.subscriptions.flush(5)
    assert [b["status"] for b in receiver.bodies] == ["NOT_TRIGGERED"]


def test_receiver_down_does_not_fail_or_slow_the_invoke(
    metric: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    name = metric("sub_high2", lambda _p: 0.9)
    delivery = SubscriptionDelivery(timeout=0.5, retries=1, backoff=0.05)
    engine = Engine(subscriptions=delivery)
    start = time.perf_counter()
    response = engine.evaluate(Payload(input="x"), [_ruleset(name, "http://127.0.0.1:9/nothing-listens")])
    assert time.perf_counter() - start < 0.1
    assert response.text == "blocked"
    with caplog.at_level("WARNING", logger="stageguard.subscriptions"):
        assert delivery.flush(5)
    assert "failed after 2 attempts" in caplog.text


def test_slow_receiver_does_not_block_the_invoke(
    metric: Callable[..., str], slow_receiver: Callable[[float], Receiver]
) -> None:
    slow = slow_receiver(1.0)
    name = metric("sub_high3", lambda _p: 0.9)
    engine = Engine()
    start = time.perf_counter()
    engine.evaluate(Payload(input="x"), [_ruleset(name, slow.url)])
    assert time.perf_counter() - start < 0.2
    assert not slow.bodies
    assert engine.subscriptions.flush(5)
    assert len(slow.bodies) == 1


def test_slow_receiver_times_out_and_is_logged(
    metric: Callable[..., str], caplog: pytest.LogCaptureFixture, slow_receiver: Callable[[float], Receiver]
) -> None:
    slow = slow_receiver(1.0)
    name = metric("sub_high4", lambda _p: 0.9)
    delivery = SubscriptionDelivery(timeout=0.2, retries=0)
    Engine(subscriptions=delivery).evaluate(Payload(input="x"), [_ruleset(name, slow.url)])
    with caplog.at_level("WARNING", logger="stageguard.subscriptions"):
        assert delivery.flush(5)
    assert "ReadTimeout" in caplog.text


def test_retries_with_backoff_until_delivered(metric: Callable[..., str]) -> None:
    flaky = Receiver(fail_first=2)
    try:
        name = metric("sub_high5", lambda _p: 0.9)
        delivery = SubscriptionDelivery(timeout=1, retries=2, backoff=0.05)
        Engine(subscriptions=delivery).evaluate(Payload(input="x"), [_ruleset(name, flaky.url)])
        assert delivery.flush(5)
        assert flaky.attempts == 3 and len(flaky.bodies) == 1
    finally:
        flaky.close()


async def test_async_invoke_delivers_too(metric: Callable[..., str], receiver: Receiver) -> None:
    name = metric("sub_high6", lambda _p: 0.9)
    engine = Engine()
    await engine.aevaluate(Payload(input="x"), [_ruleset(name, receiver.url)])
    assert engine.subscriptions.flush(5)
    assert len(receiver.bodies) == 1


def test_closing_the_engine_delivers_what_is_in_flight(
    metric: Callable[..., str], receiver: Receiver
) -> None:
    # close() used to stop the background loop at once: a delivery not yet sent was dropped without a
    # word (and Python warned that its coroutine was never awaited).
    name = metric("sub_close", lambda _p: 0.9)
    engine = Engine()
    engine.evaluate(Payload(input="x"), [_ruleset(name, receiver.url)])
    engine.close()
    assert [b["status"] for b in receiver.bodies] == ["TRIGGERED"]


def test_closing_drops_only_after_the_delivery_timeout_and_says_so(
    metric: Callable[..., str], caplog: pytest.LogCaptureFixture, slow_receiver: Callable[[float], Receiver]
) -> None:
    slow = slow_receiver(3.0)
    name = metric("sub_close_slow", lambda _p: 0.9)
    engine = Engine(subscriptions=SubscriptionDelivery(timeout=0.5, retries=2))
    engine.evaluate(Payload(input="x"), [_ruleset(name, slow.url)])
    start = time.perf_counter()
    with caplog.at_level("WARNING", logger="stageguard.subscriptions"):
        engine.close()
    assert 0.4 < time.perf_counter() - start < 2.0  # one attempt's time-out, not all three
    assert "dropped 1 subscription delivery still in flight" in caplog.text

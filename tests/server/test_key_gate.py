"""The server's rate limiter (``KeyGate``) on a fake clock: sweeping out expired counters, which the gate
does at most once a second instead of after every count, never changes a decision. An expired counter is
dropped when it is read, so a gate that sweeps after every count and one that never sweeps must answer
every request alike, 429s and their ``Retry-After`` included."""

from __future__ import annotations

import asyncio
import math
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stageguard.server._errors import ApiError
from stageguard.server._runtime import KeyGate

RATE, FAILURES = "3/second;5/minute", "2/minute"

operations = st.lists(
    st.one_of(
        st.tuples(st.just("hit"), st.integers(0, 2)),  # a request of key 0..2
        st.tuples(st.just("failed"), st.integers(0, 2)),  # a failed login from address 0..2
        st.tuples(st.just("check"), st.integers(0, 2)),  # may address 0..2 try to log in?
        st.tuples(st.just("wait"), st.floats(0.0, 130.0)),  # seconds pass
    ),
    max_size=60,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


async def _answer(gate: KeyGate, operation: str, who: int) -> str:
    try:
        if operation == "hit":
            await gate.hit(f"key-{who}")
        elif operation == "failed":
            await gate.failed(f"10.0.0.{who}")
        else:
            await gate.check_failures(f"10.0.0.{who}")
    except ApiError as exc:
        return f"{exc.status} {(exc.headers or {}).get('Retry-After')}"
    return "ok"


@settings(max_examples=150, deadline=None)
@given(operations)
def test_sweeping_expired_counters_never_changes_a_decision(steps: list[tuple[str, float]]) -> None:
    clock = Clock()
    fake_time = types.SimpleNamespace(time=clock.time, monotonic=clock.time)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("limits.aio.storage.memory.time", fake_time)
        patch.setattr("limits.aio.strategies.time", fake_time)
        patch.setattr("stageguard.server._runtime.time", fake_time)
        always, never = KeyGate(RATE, FAILURES, 10), KeyGate(RATE, FAILURES, 10)
        always._limiter.storage.sweep_every = 0.0  # type: ignore[attr-defined]
        never._limiter.storage.sweep_every = math.inf  # type: ignore[attr-defined]

        async def run() -> None:
            for operation, value in steps:
                if operation == "wait":
                    clock.now += value
                    continue
                answers = [await _answer(gate, operation, int(value)) for gate in (always, never)]
                await asyncio.sleep(0)  # a sweep, once scheduled, runs here
                assert answers[0] == answers[1], (operation, value, answers)
                if answers[0] != "ok":  # a 429 asks to retry within the window (a minute at most)
                    assert 1 <= int(answers[0].split()[1]) <= 60, answers

        asyncio.run(run())

"""Small timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``samples``."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def time_calls(fn: Callable[[], object], repeat: int, warmup: int = 50) -> list[float]:
    """Wall time of ``repeat`` calls of ``fn``, in seconds each."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def in_turns(
    calls: Sequence[Callable[[], Any]], n: int, timed: Callable[[Callable[[], Any]], T]
) -> tuple[list[T], ...]:
    """``n`` rounds in which ``timed`` measures each call once, each round starting with the next call,
    so load changes hit all the calls alike; the measurements per call, in the order of ``calls``."""
    runs: tuple[list[T], ...] = tuple([] for _ in calls)
    for i in range(n):
        for k in range(len(calls)):
            j = (i + k) % len(calls)
            runs[j].append(timed(calls[j]))
    return runs


async def ain_turns(
    calls: Sequence[Callable[[], Awaitable[Any]]],
    n: int,
    timed: Callable[[Callable[[], Awaitable[Any]]], Awaitable[T]],
) -> tuple[list[T], ...]:
    """Async :func:`in_turns`."""
    runs: tuple[list[T], ...] = tuple([] for _ in calls)
    for i in range(n):
        for k in range(len(calls)):
            j = (i + k) % len(calls)
            runs[j].append(await timed(calls[j]))
    return runs


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"


def print_verdict(rows: list[dict[str, Any]], key: str, target: float, beyond: str) -> None:
    """The worst row's ``key`` (seconds added per guard) against ``target``, then every row over it, for
    the adapter benchmarks: ``beyond`` says what the time is added beyond."""
    worst = max(rows, key=lambda r: r[key])
    verdict = "OK" if worst[key] <= target else "OVER"
    print(
        f"worst CPU time added per guard beyond {beyond}: {worst[key] * 1e6:.0f} µs ({worst['label']}); "
        f"target <= {target * 1e6:.0f} µs: {verdict}"
    )
    over = [f"{r['label']} ({r[key] * 1e6:.0f})" for r in rows if r[key] > target]
    print(f"over the target: {', '.join(over) or 'none'}")

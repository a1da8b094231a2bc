"""Small timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} µs"

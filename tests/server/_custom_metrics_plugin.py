"""A custom metrics module for ``stageguard serve --metrics _custom_metrics_plugin`` in the tests:
importing it registers its metrics (in the server process and in each invoke worker process)."""

from __future__ import annotations

import os

from stageguard import register_metric
from stageguard.payload import Payload

SHOUTING = "shouting"
MOOD = "mood"


def shouting(payload: Payload) -> float:
    """The share of the input's letters that are capitals."""
    letters = [c for c in payload.input or "" if c.isalpha()]
    return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0


def mood(payload: Payload) -> str:
    return "grumpy" if "grr" in (payload.output or "").lower() else "calm"


def worker_pid(payload: Payload) -> float:
    """The process that evaluated the metric (to tell threads from worker processes)."""
    return float(os.getpid())


register_metric(SHOUTING, shouting, kind="score", required_fields=["input"], description="ALL CAPS input")
register_metric(MOOD, mood, kind="category", labels=["calm", "grumpy"], required_fields=["output"])
register_metric("worker_pid", worker_pid, kind="number", required_fields=["input"])

"""Start-up work of a server process, so the first requests and the tail latency don't pay for it."""

from __future__ import annotations

import gc
import logging
import time

from ..engine import Engine
from ..metrics import list_metrics
from ..payload import Payload

logger = logging.getLogger("stageguard.server")

_TEXT_FIELDS = {("input",), ("output",)}


def warm_up(engine: Engine) -> None:
    """Load the built-in text scorers (models, lexicons) now instead of on the first invokes, then
    ``gc.freeze()`` what start-up allocated.

    Those long-lived objects would otherwise be traversed by every full garbage collection (~100 ms on the
    2-core development machine), which shows up as p99 spikes under load. Only inline (in-process, CPU)
    scorers of input/output text are touched: nothing here calls the network.
    """
    start = time.perf_counter()
    payload = Payload(input="Warming up the guardrails.", output="Warming up the guardrails.")
    loaded = []
    for spec in list_metrics():
        if spec.custom or spec.required_fields not in _TEXT_FIELDS:
            continue
        try:
            scorer = engine.registry.get(spec.name)
            if scorer is None or scorer.mode != "inline":
                continue
            scorer.score(payload)
            loaded.append(spec.name)
        except Exception as exc:  # a broken scorer fails its invokes (fail policy), not the server
            logger.warning("could not warm up the scorer of %s: %s: %s", spec.name, type(exc).__name__, exc)
    gc.collect()
    gc.freeze()
    logger.info("warmed up %s in %.2f s", ", ".join(loaded) or "no scorers", time.perf_counter() - start)

"""Start-up work of a server process, so the first requests and the tail latency don't pay for it."""

from __future__ import annotations

import gc
import logging
import time

from ..engine import Engine
from ..scorers.registry import warm_up as load_scorers

logger = logging.getLogger("stageguard.server")


def warm_up(engine: Engine) -> None:
    """Load the built-in scorers (models, word lists) now instead of on the first invokes, then
    ``gc.freeze()`` what start-up allocated.

    Those long-lived objects would otherwise be traversed by every full garbage collection (~100 ms on the
    2-core development machine), which shows up as p99 spikes under load. Only inline (in-process, CPU)
    scorers are touched (:func:`stageguard.scorers.registry.warm_up`): nothing here calls the network.
    """
    start = time.perf_counter()
    loaded = load_scorers(registry=engine.registry)
    gc.collect()
    gc.freeze()
    logger.info("warmed up %s in %.2f s", ", ".join(loaded) or "no scorers", time.perf_counter() - start)

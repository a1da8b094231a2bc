"""Faults inside an invoke worker process, for the tests (importable there: spawn copies ``sys.path``)."""

from __future__ import annotations

import concurrent.futures
import gc
import os
import struct
import threading
import time
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from typing import Any


def start_an_answer_and_hang(marker: str) -> None:
    """Write the first bytes of an answer to the pool's result pipe, touch ``marker``, then hang: the state
    of a worker killed while writing a large answer."""
    results: Any = next(o for o in gc.get_objects() if isinstance(o, SimpleQueue))  # its private ends
    with results._wlock:
        os.write(results._writer.fileno(), struct.pack("!i", 1_000_000) + b"x" * 100)
        Path(marker).touch()
        time.sleep(3600)


def hang_mid_answer(
    pool: concurrent.futures.ProcessPoolExecutor, tmp_path: Path
) -> concurrent.futures.Future[None]:
    """Leave a worker of ``pool`` half-way through writing an answer (:func:`start_an_answer_and_hang`),
    once it has started; the future of that call."""
    marker = tmp_path / "answer-started"
    future = pool.submit(start_an_answer_and_hang, str(marker))
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the worker did not start the answer"
        time.sleep(0.02)
    return future


def free_manager(manager: threading.Thread | None, results: Any) -> None:
    """Free a pool's manager thread still stuck on an answer cut short (what the code before the fix left),
    so the test process can exit."""
    if manager is not None and manager.is_alive():
        results._writer.close()
        manager.join(10)

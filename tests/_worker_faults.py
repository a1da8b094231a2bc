"""Faults inside an invoke worker process, for the tests (importable there: spawn copies ``sys.path``)."""

from __future__ import annotations

import gc
import os
import struct
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

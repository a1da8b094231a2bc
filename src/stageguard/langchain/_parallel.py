"""Parallel input checks: start the chain while the input stage runs, release nothing until it passed.

``protect(..., parallel_input=True)`` starts the wrapped chain on the *unchecked* input and runs the
input check at the same time. What the chain computed is used only when the check changed nothing; on an
override (or an error) the speculative call is cancelled and dropped, on a redaction it is dropped and
the chain runs again on the redacted input (its result came from text the model must not have seen).
The mechanics are the core's (``stageguard._parallel``, shared with LlamaIndex).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .._parallel import AsyncReadAhead, Speculation, cancel, start

__all__ = ["AsyncStreamSpeculation", "Speculation", "StreamSpeculation", "cancel", "start"]

AsyncStreamSpeculation = AsyncReadAhead
"""An async stream read ahead by a task (``await AsyncStreamSpeculation(stream).start()``)."""


class StreamSpeculation(Speculation[Iterator[Any]]):
    """A sync stream opened and read ahead in a worker thread; chunks wait until :meth:`chunks`.

    :meth:`abandon` makes the worker stop reading (and close the stream) at its next chunk.
    """

    def __init__(self, open_stream: Callable[[], Iterator[Any]]) -> None:
        super().__init__(open_stream, stream_of=lambda stream: stream)

"""Parallel input checks for LlamaIndex engines: start the engine call while the input stage runs.

``parallel_input=True`` (the name ``protect()`` uses in LangChain) starts the query or chat on the
*unchecked* input. Its result is used only when the input check changed nothing; on an override (or an
error) the call is dropped, on a redaction it is dropped and run again on the redacted text. The
mechanics are the core's (``stageguard._parallel``, shared with LangChain); here they hand over tokens.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TypeVar, cast

from .. import _parallel
from .._parallel import cancel, start

__all__ = ["AsyncReadAhead", "Speculation", "cancel", "start"]

T = TypeVar("T")


class Speculation(_parallel.Speculation[T]):
    """A sync engine call in a worker thread; with ``stream_of``, its token stream read ahead."""

    def tokens(self) -> Generator[str, None, None]:
        """The tokens read so far, then the rest as they come."""
        return cast(Generator[str, None, None], self.chunks())


class AsyncReadAhead(_parallel.AsyncReadAhead):
    """An async token stream read ahead by a task, until :meth:`tokens` takes over."""

    def tokens(self) -> AsyncGenerator[str, None]:
        return cast(AsyncGenerator[str, None], self.chunks())

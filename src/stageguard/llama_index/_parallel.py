"""Parallel input checks for LlamaIndex engines: start the engine call while the input stage runs.

``parallel_input=True`` (the name ``protect()`` uses in LangChain) starts the query or chat on the
*unchecked* input. Its result is used only when the input check changed nothing; on an override (or an
error) the call is dropped, on a redaction it is dropped and run again on the redacted text. Nothing of
the speculative call is released before the check passed:

- async: the call is an ``asyncio`` task, cancelled on a trigger (the model request is abandoned);
- sync: the call runs in a worker thread. A blocking request in flight cannot be interrupted: it runs to
  its end and its result is thrown away; a stream being read ahead stops at its next token.

The mechanics mirror ``stageguard.langchain._parallel`` (which can't be imported without LangChain).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from concurrent.futures import Future
from contextvars import copy_context
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()


class _Failed:
    """An exception raised while reading ahead, carried through the queue to the reader."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Speculation(Generic[T]):
    """A sync call run in a daemon worker thread (with the caller's context variables).

    With ``stream_of``, the worker then reads ahead the stream the result carries (``stream_of(result)``,
    ``None``: no stream) into a queue, so the model is already producing tokens when the check passes;
    :meth:`tokens` hands them over. :meth:`abandon` drops the call and stops the read-ahead.
    """

    def __init__(self, call: Callable[[], T], stream_of: Callable[[T], Iterator[str] | None] | None = None):
        self._future: Future[T] = Future()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self.done = threading.Event()
        thread = threading.Thread(
            target=copy_context().run,
            args=(self._run, call, stream_of),
            daemon=True,
            name="stageguard-speculative",
        )
        thread.start()

    def _run(self, call: Callable[[], T], stream_of: Callable[[T], Iterator[str] | None] | None) -> None:
        try:
            try:
                result = call()
            except BaseException as exc:  # handed to the caller (or dropped with the call)
                self._future.set_exception(exc)
                return
            self._future.set_result(result)
            stream = stream_of(result) if stream_of is not None else None
            if stream is not None:
                self._read(stream)
        finally:
            self.done.set()

    def _read(self, stream: Iterator[str]) -> None:
        try:
            for token in stream:
                if self._stop.is_set():
                    break
                self._queue.put(token)
        except BaseException as exc:
            self._queue.put(_Failed(exc))
        finally:
            with contextlib.suppress(Exception):
                getattr(stream, "close", lambda: None)()
            self._queue.put(_END)

    def result(self) -> T:
        return self._future.result()

    def tokens(self) -> Generator[str, None, None]:
        """The tokens read so far, then the rest as they come (errors of the stream re-raised)."""
        try:
            while (item := self._queue.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            self._stop.set()  # the reader stopped early: stop reading upstream

    def abandon(self, *, wait: bool = False) -> None:
        """Drop the call (its result or error is never read); ``wait``: until the worker is done."""
        self._stop.set()
        if wait:
            self.done.wait()


async def start(call: Awaitable[T]) -> asyncio.Task[T]:
    """Start ``call`` as a task and let it reach its first wait before the check runs (a check that never
    awaits, e.g. with sync scorers, would otherwise finish before the task starts)."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0)
    return task


async def cancel(task: asyncio.Future[Any]) -> None:
    """Cancel a speculative task and wait until it stopped; its result or error is dropped."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # finished before the cancel landed: mark its error (if any) as read


class AsyncReadAhead:
    """An async token stream read ahead by a task into a queue, until :meth:`tokens` takes over."""

    def __init__(self, stream: AsyncIterator[str]) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._stream = stream
        self.task: asyncio.Task[None] = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for token in self._stream:
                self._queue.put_nowait(token)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._queue.put_nowait(_Failed(exc))
        self._queue.put_nowait(_END)

    async def tokens(self) -> AsyncGenerator[str, None]:
        try:
            while (item := await self._queue.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            await self.abandon()  # done, or the reader stopped early

    async def abandon(self) -> None:
        if not self.task.done():
            await cancel(self.task)
        with contextlib.suppress(Exception):
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                await close()

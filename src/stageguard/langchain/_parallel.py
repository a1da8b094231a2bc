"""Parallel input checks: start the chain while the input stage runs, release nothing until it passed.

``protect(..., parallel_input=True)`` starts the wrapped chain on the *unchecked* input and runs the
input check at the same time. What the chain computed is used only when the check changed nothing; on an
override (or an error) the speculative call is cancelled and dropped, on a redaction it is dropped and
the chain runs again on the redacted input (its result came from text the model must not have seen).

- async: the call is an ``asyncio`` task, cancelled on a trigger (the model request is abandoned);
- sync: the call runs in a worker thread. A blocking request in flight cannot be interrupted, so it runs
  to its end and its result is thrown away; a stream stops at its next chunk;
- streams: chunks are queued while the check runs and flushed once it passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextvars import copy_context
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()


class _Failed:
    """An exception raised by the producer, carried through the queue to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Speculation(Generic[T]):
    """A sync call started in a daemon worker thread (with the caller's context variables)."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._future: Future[T] = Future()
        thread = threading.Thread(
            target=copy_context().run, args=(self._run, call), daemon=True, name="stageguard-speculative"
        )
        thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        if not self._future.set_running_or_notify_cancel():
            return
        try:
            result = call()
        except BaseException as exc:  # handed to the caller (or dropped with the call)
            self._future.set_exception(exc)
        else:
            self._future.set_result(result)

    def result(self) -> T:
        return self._future.result()

    def abandon(self) -> None:
        """Drop the call: its result or error is never read (a running request still finishes)."""
        self._future.cancel()


class StreamSpeculation:
    """A sync stream read ahead in a worker thread; chunks wait in a queue until :meth:`chunks`.

    :meth:`abandon` makes the worker stop reading (and close the stream) at its next chunk.
    """

    def __init__(self, open_stream: Callable[[], Iterator[Any]]) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        thread = threading.Thread(
            target=copy_context().run,
            args=(self._run, open_stream),
            daemon=True,
            name="stageguard-speculative",
        )
        thread.start()

    def _run(self, open_stream: Callable[[], Iterator[Any]]) -> None:
        stream = open_stream()
        try:
            for chunk in stream:
                if self._stop.is_set():
                    break
                self._queue.put(chunk)
        except BaseException as exc:
            self._queue.put(_Failed(exc))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            self._queue.put(_END)

    def chunks(self) -> Iterator[Any]:
        """The chunks received so far, then the rest as they come (the stream's errors re-raised)."""
        try:
            while (item := self._queue.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            self._stop.set()  # the consumer stopped early: stop reading upstream

    def abandon(self) -> None:
        self._stop.set()


async def start(call: Awaitable[T]) -> asyncio.Task[T]:
    """Start ``call`` as a task and let it reach its first wait (a request sent) before the check runs.

    Without the yield, a check that doesn't await (sync scorers) would run before the task starts."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0)
    return task


async def cancel(task: asyncio.Future[Any]) -> None:
    """Cancel a speculative task and wait until it stopped; its result or error is dropped."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # finished before the cancel landed: mark its error (if any) as read


class AsyncStreamSpeculation:
    """An async stream read ahead by a task; chunks wait in a queue until :meth:`chunks`."""

    def __init__(self, stream: AsyncIterator[Any]) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._stream = stream
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> AsyncStreamSpeculation:
        self.task = await start(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for chunk in self._stream:
                self._queue.put_nowait(chunk)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._queue.put_nowait(_Failed(exc))
        self._queue.put_nowait(_END)

    async def chunks(self) -> AsyncIterator[Any]:
        try:
            while (item := await self._queue.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            await self.abandon()  # done, or the consumer stopped early

    async def abandon(self) -> None:
        if self.task is not None and not self.task.done():
            await cancel(self.task)

"""Parallel input checks, the framework-neutral part: start the model call while the input stage runs.

An adapter with ``parallel_input=True`` starts its call on the *unchecked* input and runs the input check
at the same time. The call's result is used only when the check changed nothing; on an override (or an
error) it is cancelled and dropped, on a redaction it is dropped and the call runs again on the redacted
input. Nothing of a speculative call is released before the check passed:

- async: the call is an ``asyncio`` task (:func:`start`), cancelled on a trigger (:func:`cancel`);
- sync: the call runs in a worker thread (:class:`Speculation`). A blocking request in flight cannot be
  interrupted, so it runs to its end and its result is thrown away; a stream stops at its next chunk;
- streams: chunks are read ahead into a queue while the check runs and handed over once it passed
  (:class:`Speculation` with ``stream_of``, :class:`AsyncReadAhead`).

Used by ``stageguard.langchain`` and ``stageguard.llama_index``.
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
    """An exception raised while reading ahead, carried through the queue to the reader."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Speculation(Generic[T]):
    """A sync call run in a daemon worker thread (with the caller's context variables).

    With ``stream_of``, the worker then reads ahead the stream the result carries (``stream_of(result)``,
    ``None``: no stream) into a queue, so the model is already producing when the check passes;
    :meth:`chunks` hands them over. :meth:`abandon` drops the call and stops the read-ahead.
    """

    def __init__(
        self, call: Callable[[], T], stream_of: Callable[[T], Iterator[Any] | None] | None = None
    ) -> None:
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

    def _run(self, call: Callable[[], T], stream_of: Callable[[T], Iterator[Any] | None] | None) -> None:
        try:
            try:
                result = call()
            except BaseException as exc:  # handed to the caller (or dropped with the call)
                self._future.set_exception(exc)
                self._queue.put(_Failed(exc))  # a reader of chunks() gets it too, instead of waiting
                self._queue.put(_END)
                return
            self._future.set_result(result)
            stream = stream_of(result) if stream_of is not None else None
            if stream is not None:
                self._read(stream)
        finally:
            self.done.set()

    def _read(self, stream: Iterator[Any]) -> None:
        try:
            for chunk in stream:
                if self._stop.is_set():
                    break
                self._queue.put(chunk)
        except BaseException as exc:
            self._queue.put(_Failed(exc))
        finally:
            with contextlib.suppress(Exception):
                getattr(stream, "close", lambda: None)()
            self._queue.put(_END)

    def result(self) -> T:
        return self._future.result()

    def chunks(self) -> Iterator[Any]:
        """The chunks read so far, then the rest as they come (errors of the call or stream re-raised)."""
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
    """Start ``call`` as a task and let it reach its first wait (a request sent) before the check runs
    (a check that never awaits, e.g. with sync scorers, would otherwise finish before the task starts)."""
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
    """An async stream read ahead by a task into a queue, until :meth:`chunks` takes over.

    The task is scheduled on creation; ``await read_ahead.start()`` also lets it begin before the check.
    """

    def __init__(self, stream: AsyncIterator[Any]) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._stream = stream
        self.task: asyncio.Task[None] = asyncio.ensure_future(self._read())

    async def start(self) -> AsyncReadAhead:
        await asyncio.sleep(0)
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
            await self.abandon()  # done, or the reader stopped early

    async def abandon(self) -> None:
        if not self.task.done():
            await cancel(self.task)
        with contextlib.suppress(Exception):
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                await close()

"""Worker-process pools (``concurrent.futures.ProcessPoolExecutor``) that survive a worker's death.

A worker that dies while writing its answer (killed by the OOM killer, or terminated at shutdown) leaves
the pool's manager thread waiting for the rest of that answer for ever: CPython keeps the result pipe's
write end open in the parent too, so no end of file comes. The pool then never reports itself broken, its
futures never finish, and the interpreter, which joins that thread at exit, never exits.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import multiprocessing.connection
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

logger = logging.getLogger("stageguard")

T = TypeVar("T")
Pool = concurrent.futures.ProcessPoolExecutor


def pool_processes(pool: Pool) -> list[multiprocessing.Process]:
    return list((getattr(pool, "_processes", None) or {}).values())


def dead_worker(pool: Pool) -> multiprocessing.Process | None:
    """A worker of ``pool`` that has exited (a pool's workers only exit when it shuts down)."""
    return next((p for p in pool_processes(pool) if p.exitcode is not None), None)


def exit_note(process: multiprocessing.Process) -> str:
    """How errors and logs describe a worker that exited (a negative code is the signal that ended it)."""
    return f"worker process {process.pid} exited with code {process.exitcode}"


def wait_result(future: concurrent.futures.Future[T], pool: Pool, poll: float = 1.0) -> T:
    """``future.result()``, raising :class:`BrokenProcessPool` when a worker of ``pool`` died without the
    pool noticing, instead of waiting for ever."""
    while True:
        try:
            return future.result(timeout=poll)
        except concurrent.futures.TimeoutError:
            dead = dead_worker(pool)
            if dead is not None:
                raise BrokenProcessPool(f"{exit_note(dead)} without answering") from None


def running_after(processes: list[multiprocessing.Process], timeout: float) -> list[multiprocessing.Process]:
    """Those of ``processes`` that have not exited within ``timeout`` seconds.

    Watches each process's sentinel rather than calling ``join``: the pool's manager thread joins the same
    processes, and the ``join`` that loses that race (its ``waitpid`` finds the process already reaped)
    returns at once with the process still reported alive."""
    running = {process.sentinel: process for process in processes}
    deadline = time.monotonic() + timeout
    while running:
        ready = multiprocessing.connection.wait(list(running), max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        for sentinel in ready:
            del running[sentinel]  # type: ignore[arg-type]
    return list(running.values())


def stop_pool(pool: Pool, grace: float, label: str = "worker") -> None:
    """Shut ``pool`` down; workers still busy after ``grace`` seconds are terminated. Once they are gone,
    a manager thread stuck on an answer cut short is freed (the parent's end of the pipe is closed)."""
    processes = pool_processes(pool)
    manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
    results: Any = getattr(pool, "_result_queue", None)
    pool.shutdown(wait=False, cancel_futures=True)
    busy = running_after(processes, grace)
    for process in busy:
        logger.warning("terminating %s %s, still busy at shutdown", label, process.pid)
        process.terminate()
    for process in running_after(busy, 5.0):
        process.kill()
    if manager is None or running_after(busy, 5.0):
        return
    manager.join(1.0)  # with its workers gone, a manager thread that isn't stuck ends at once
    if manager.is_alive() and results is not None:
        # Its futures cancelled by a time-out: CPython 3.11 would fail setting their exception.
        pending = getattr(pool, "_pending_work_items", {})
        for work_id in [work_id for work_id, item in pending.items() if item.future.cancelled()]:
            del pending[work_id]
        results._writer.close()

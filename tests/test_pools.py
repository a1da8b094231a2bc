"""``stageguard._pools``: a worker process that dies while writing its answer neither blocks a caller
waiting for a result nor the interpreter's exit (real pools, real processes)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _worker_faults import free_manager, hang_mid_answer
from stageguard._pools import Pool, stop_pool, wait_result


@pytest.fixture
def pool() -> Iterator[Pool]:
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    yield pool
    stop_pool(pool, 0.0)


def test_waiting_for_a_result_ends_when_its_worker_died_mid_answer(pool: Pool, tmp_path: Path) -> None:
    future = hang_mid_answer(pool, tmp_path)
    for process in list(pool._processes.values()):
        process.kill()
    start = time.monotonic()
    with pytest.raises(concurrent.futures.process.BrokenProcessPool, match="exited with code -9"):
        wait_result(future, pool, poll=0.1)
    assert time.monotonic() - start < 10
    assert not future.done()  # the pool itself never noticed: without the poll this waits for ever


def test_stopping_frees_the_manager_thread_stuck_on_the_answer(pool: Pool, tmp_path: Path) -> None:
    hang_mid_answer(pool, tmp_path)
    manager, results = pool._executor_manager_thread, pool._result_queue
    assert manager is not None
    try:
        stop_pool(pool, 0.1)  # the worker is busy: terminated
        manager.join(10)
        assert not manager.is_alive()  # the interpreter joins it at exit: alive would hang the exit
    finally:
        free_manager(manager, results)


def _pid(_: int) -> int:
    return os.getpid()


def test_idle_workers_stop_without_being_called_busy(caplog: pytest.LogCaptureFixture) -> None:
    # The pool's own manager thread joins its workers as they exit; a second join from here used to lose
    # that race (its waitpid fails once the other has reaped the process), so idle workers were reported
    # "still busy" and sent SIGTERM at about every other shutdown.
    caplog.set_level("WARNING", logger="stageguard")
    for _ in range(6):
        pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        answered_by = set(pool.map(_pid, range(8)))
        processes = list(pool._processes.values())
        assert answered_by <= {p.pid for p in processes}  # the pool's own workers ran the jobs
        start = time.monotonic()
        stop_pool(pool, 5.0)
        assert time.monotonic() - start < 4.0
        assert [p.exitcode for p in processes] == [0] * len(processes)
    assert "still busy" not in caplog.text

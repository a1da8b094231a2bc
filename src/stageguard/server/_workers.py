"""Several server processes on one port, with the kernel spreading connections evenly between them.

uvicorn's ``--workers`` shares one listening socket: with keep-alive clients, whichever process is first in
``accept()`` can take every connection of a burst and the others sit idle (we measured 2 runs in 6 with all
load on one of two workers, halving throughput). Here each process binds its own socket with
``SO_REUSEPORT``, so the kernel hashes each new connection to one of them: the load is balanced without a
balancer of our own. Each process is a plain ``uvicorn.Server``; the parent only starts them, restarts one
that dies, and stops them all on SIGINT/SIGTERM. Where ``SO_REUSEPORT`` is missing (Windows), uvicorn's own
``workers`` are used.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import socket
import threading
import time
from typing import Any

logger = logging.getLogger("stageguard.server")

RESTART_PAUSE = 1.0  # seconds between restarts of a worker that keeps dying


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(options: dict[str, Any]) -> None:
    """One server process: its own ``SO_REUSEPORT`` socket, then uvicorn as usual."""
    import uvicorn

    sock = _listening_socket(options["host"], options["port"])
    config = uvicorn.Config(**options)
    uvicorn.Server(config).run(sockets=[sock])


def run(app: str, *, host: str, port: int, workers: int, **options: Any) -> None:
    """Serve the uvicorn factory ``app`` on ``workers`` processes (``options``: ``uvicorn.Config``'s)."""
    import uvicorn

    if workers <= 1 or not reuse_port_supported():
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, **options)
        return
    if port == 0:
        raise ValueError("--workers above 1 needs a fixed --port (each worker binds it)")
    # Fail here, in the parent, if the port is taken (a worker would only log it and exit).
    _listening_socket(host, port).close()
    config = {"app": app, "factory": True, "host": host, "port": port, **options}
    context = mp.get_context("spawn")
    stop = threading.Event()

    def start() -> Any:
        process = context.Process(target=_worker, args=(config,), name="stageguard-worker")
        process.start()
        return process

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(workers)]
    logger.info("started %d workers on %s:%d (SO_REUSEPORT)", workers, host, port)
    try:
        while not stop.wait(0.5):
            for i, process in enumerate(processes):
                if not process.is_alive():
                    logger.warning("worker %s exited with %s; restarting it", process.pid, process.exitcode)
                    time.sleep(RESTART_PAUSE)
                    processes[i] = start()
    finally:
        for process in processes:
            process.terminate()  # uvicorn shuts down gracefully on SIGTERM
        deadline = time.monotonic() + 30
        for process in processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

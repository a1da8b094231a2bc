"""Deliver invoke responses to subscription URLs: in the background, bounded, retried, never raising."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._loop import BackgroundLoop

if TYPE_CHECKING:  # httpx is imported on the first delivery: most processes never deliver one
    import httpx

logger = logging.getLogger("stageguard.subscriptions")


class SubscriptionDelivery:
    """POSTs JSON bodies to URLs on a background loop.

    Each delivery has ``timeout`` seconds per attempt and ``retries`` extra attempts with exponential
    backoff (``backoff``, doubled each time). Failures are logged, never raised: a subscriber that is
    down or slow must not block, slow or fail the invoke.
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.5,
        loop: BackgroundLoop | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._loop = loop or BackgroundLoop("stageguard-subscriptions")
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._pending: set[concurrent.futures.Future[bool]] = set()
        self._lock = threading.Lock()

    def deliver(self, urls: Iterable[str], body: bytes) -> list[concurrent.futures.Future[bool]]:
        """Start delivering ``body`` to each URL; returns futures resolving to success flags."""
        futures = []
        for url in urls:
            future = self._loop.submit(self._post(url, body))
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(self._forget)
            futures.append(future)
        return futures

    def _forget(self, future: concurrent.futures.Future[bool]) -> None:
        with self._lock:
            self._pending.discard(future)

    async def _post(self, url: str, body: bytes) -> bool:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, transport=self._transport)
        headers = {"content-type": "application/json", "user-agent": "stageguard-subscriptions"}
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = await self._client.post(url, content=body, headers=headers)
                if response.status_code < 500 and response.status_code != 429:
                    if response.is_error:
                        logger.warning(
                            "subscription %s refused the delivery: HTTP %s", url, response.status_code
                        )
                        return False
                    return True
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay *= 2
        logger.warning("subscription %s failed after %d attempts: %s", url, self.retries + 1, problem)
        return False

    def close(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (default: one attempt's time-out) for deliveries in flight, then
        cancel those left, with a warning: closing never drops a delivery silently."""
        left = self._wait(self.timeout if timeout is None else timeout)
        for future in left:
            future.cancel()
        if left:
            noun = "delivery" if len(left) == 1 else "deliveries"
            logger.warning("dropped %d subscription %s still in flight at close", len(left), noun)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for deliveries in flight; True when all finished within ``timeout``."""
        return not self._wait(timeout)

    def _wait(self, timeout: float | None) -> set[concurrent.futures.Future[bool]]:
        """Wait for the deliveries in flight now; those not done within ``timeout``."""
        with self._lock:
            pending = list(self._pending)
        return concurrent.futures.wait(pending, timeout=timeout).not_done

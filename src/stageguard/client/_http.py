"""The HTTP layer: pooled httpx clients (sync, and async per event loop), deadlines, retries, errors.

Every call has a budget (its time-out) that covers retries: no call outlives it. Idempotent calls (GET,
PUT, DELETE) are retried on network errors, time-outs, 429 and 5xx with exponential backoff. POSTs
(create, new version, invoke) are retried only when the connection could not be opened, i.e. when
nothing was sent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import httpx

from .._version import __version__
from ..errors import (
    InvalidRequestError,
    ProjectNotFoundError,
    StageConflictError,
    StageguardError,
    StageNotFoundError,
)
from ._errors import AuthenticationError, MalformedAnswerError, PermissionDeniedError, ServerUnavailableError

logger = logging.getLogger("stageguard.client")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_TRANSIENT = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Call:
    """One API call. ``timeout`` is its whole budget (default: the client's); ``missing_ok`` turns a 404
    into ``None``."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    timeout: float | None = None
    missing_ok: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def _stageguard_error(response: httpx.Response) -> bool:
    """Whether an error answer comes from a stageguard server (JSON with ``error`` and ``detail``), not
    from a proxy, a load balancer or another service at that address."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str) and "detail" in body


def _snippet(response: httpx.Response) -> str:
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    text = " ".join(response.text[:120].split())
    return f"{kind}, {len(response.content)} bytes" + (f": {text!r}" if text else "")


def _message(response: httpx.Response) -> tuple[str, str]:
    """(message, error code) from an error response of a stageguard server (or anything else)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text.strip()[:300] or response.reason_phrase, "")
    if not isinstance(body, dict):
        return (str(body)[:300], "")
    detail = body.get("message") or body.get("detail") or body
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        detail = f"{where}: {first.get('msg')}" if where else first.get("msg")
    return (str(detail), str(body.get("error", "")))


def _raise_for(response: httpx.Response, call: Call) -> None:
    """Map a 4xx answer to stageguard's exceptions."""
    message, code = _message(response)
    status = response.status_code
    what = f"{call.method} {call.path}: {message}"
    if status == 401:
        raise AuthenticationError(f"{what} (check STAGEGUARD_API_KEY)")
    if status == 403:
        raise PermissionDeniedError(what)
    if status == 404:
        raise (ProjectNotFoundError if code == "project_not_found" else StageNotFoundError)(message)
    if status == 409:
        raise StageConflictError(message)
    if status in (400, 422):
        raise InvalidRequestError(message)
    raise StageguardError(f"{what} (HTTP {status})")


class HttpClient:
    """Talks to one stageguard server with one API key. Thread-safe; safe to share."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.05,
        max_connections: int = 50,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the server URL must start with http:// or https://, got {url!r}")
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be positive and retries not negative")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff = backoff
        self._headers = {"user-agent": f"stageguard/{__version__}", "accept": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._transport = transport
        self._async_transport = async_transport
        self._sync: httpx.Client | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    # -- pooled clients

    def _sync_client(self) -> httpx.Client:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = httpx.Client(
                        base_url=self.url,
                        headers=self._headers,
                        limits=self._limits,
                        transport=self._transport,
                    )
                    weakref.finalize(self, self._sync.close)  # pooled sockets go with the client
        return self._sync

    def _async_client(self) -> httpx.AsyncClient:
        """One AsyncClient per event loop: a pool can't be shared across loops."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None or client.is_closed:
                client = httpx.AsyncClient(
                    base_url=self.url,
                    headers=self._headers,
                    limits=self._limits,
                    transport=self._async_transport,
                )
                self._async[loop] = client
        return client

    def close(self) -> None:
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.pop(loop, None)
        if client is not None:
            await client.aclose()

    # -- calls

    def send(self, call: Call) -> Any:
        budget = call.timeout or self.timeout
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            timeout = self._attempt_timeout(call, budget, deadline)
            try:
                response = self._sync_client().request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=timeout,
                )
            except httpx.HTTPError as exc:
                error, retry = self._failure(call, exc, budget)
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return self._result(response, call)
                error, retry = self._bad_status(call, response)
            delay = self._next_delay(error, retry, attempt, deadline)
            time.sleep(delay)
            attempt += 1

    async def asend(self, call: Call) -> Any:
        budget = call.timeout or self.timeout
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            timeout = self._attempt_timeout(call, budget, deadline)
            try:
                response = await self._async_client().request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers=call.headers,
                    timeout=timeout,
                )
            except httpx.HTTPError as exc:
                error, retry = self._failure(call, exc, budget)
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return self._result(response, call)
                error, retry = self._bad_status(call, response)
            delay = self._next_delay(error, retry, attempt, deadline)
            await asyncio.sleep(delay)
            attempt += 1

    # -- helpers shared by send and asend

    def _attempt_timeout(self, call: Call, budget: float, deadline: float) -> httpx.Timeout:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerUnavailableError(
                f"{call.method} {call.path}: no answer from {self.url} within {budget:g}s", timed_out=True
            )
        return httpx.Timeout(remaining, connect=min(self.connect_timeout, remaining))

    def _failure(
        self, call: Call, exc: httpx.HTTPError, budget: float
    ) -> tuple[ServerUnavailableError, bool]:
        timed_out = isinstance(exc, httpx.TimeoutException)
        unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
        reason = f"timed out after {budget:g}s" if timed_out else f"{type(exc).__name__}: {exc}"
        error = ServerUnavailableError(f"{call.method} {call.path}: {self.url} {reason}", timed_out=timed_out)
        return error, call.method in IDEMPOTENT or unsent

    def _bad_status(self, call: Call, response: httpx.Response) -> tuple[ServerUnavailableError, bool]:
        message, _ = _message(response)
        error = ServerUnavailableError(
            f"{call.method} {call.path}: HTTP {response.status_code}: {message}", status=response.status_code
        )
        return error, call.method in IDEMPOTENT and response.status_code in _TRANSIENT | {500}

    def _next_delay(self, error: ServerUnavailableError, retry: bool, attempt: int, deadline: float) -> float:
        """The backoff before the next attempt, or raise ``error`` when there is none."""
        delay: float = self.backoff * 2.0**attempt
        if not retry or attempt >= self.retries or time.monotonic() + delay >= deadline:
            raise error
        logger.debug("retrying after %s (attempt %d)", error, attempt + 1)
        return delay

    def _result(self, response: httpx.Response, call: Call) -> Any:
        """The JSON of a 2xx answer; stageguard's 4xx errors raise their exceptions; anything else (a
        redirect, HTML, an empty body, ``null``, a 4xx from something that is not a stageguard server)
        is a :class:`MalformedAnswerError`."""
        status = response.status_code
        what = f"{call.method} {call.path}"
        if 300 <= status < 400:
            where = response.headers.get("location", "?")
            raise MalformedAnswerError(
                f"{what}: {self.url} answered HTTP {status}, a redirect to {where!r}; redirects are not "
                "followed (point STAGEGUARD_URL at the server itself)",
                status=status,
            )
        if response.is_error:
            if not _stageguard_error(response):
                raise MalformedAnswerError(
                    f"{what}: HTTP {status} that is not a stageguard answer ({_snippet(response)})",
                    status=status,
                )
            if status == 413:  # the request is over a server limit: the fail policy answers
                raise ServerUnavailableError(f"{what}: HTTP 413: {_message(response)[0]}", status=status)
            if status == 404 and call.missing_ok:
                return None
            _raise_for(response, call)
        if not 200 <= status < 300:
            raise MalformedAnswerError(
                f"{what}: unexpected HTTP {status} ({_snippet(response)})", status=status
            )
        try:
            data = response.json()
        except ValueError:
            raise MalformedAnswerError(
                f"{what}: the answer is not JSON ({_snippet(response)})", status=status
            ) from None
        if data is None:
            raise MalformedAnswerError(f"{what}: the answer is JSON null", status=status)
        return data

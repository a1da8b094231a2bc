"""What keeps one server process responsive: invokes are evaluated on a bounded pool of worker threads
(never on the event loop) within their deadline, and each API key is rate-limited and has a bounded
number of requests in progress.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Hashable, Iterator
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.util import Finalize
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from .._pools import dead_worker, exit_note, stop_pool
from .._subscriptions import SubscriptionDelivery
from ..engine import Engine, fail_policy_response
from ..metrics import find_metric
from ..payload import Payload
from ..protect import Protect
from ..response import Request, Response, StageMetadata
from ..rules import LENIENT, ActionType, Ruleset
from ..status import FailPolicy
from ._allowlist import Allowlist, AllowlistTransport
from ._errors import ApiError
from ._jsonsafe import clean, dumps, model_json
from ._settings import ServerSettings, load_metric_plugins

logger = logging.getLogger("stageguard.server")

_POLICY_CACHE_MAX = 10_000


def _fail_closed_message(rulesets: list[Ruleset] | None, default: str) -> str:
    for ruleset in rulesets or ():
        action = ruleset.action
        if action.type is ActionType.OVERRIDE and getattr(action, "choices", None):
            return str(action.choices[0])
    return default


# -- the worker processes (large payloads)

_child_engine: Engine | None = None


def _child_init(settings: ServerSettings) -> None:
    """Runs once in each worker process: the server's custom metrics (its ``--metrics`` modules and
    ``stageguard.metrics`` entry points, imported like the server process imported them) and an engine
    with the server's subscription settings."""
    global _child_engine
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops the pool
    try:
        load_metric_plugins(settings)
    except ValueError as exc:  # the server process loaded them: this is unexpected, the parent answers
        logger.error("invoke worker %s: %s", os.getpid(), exc)
    delivery = SubscriptionDelivery(
        timeout=settings.webhook_timeout,
        retries=settings.webhook_retries,
        transport=AllowlistTransport(Allowlist(settings.webhook_allowlist)),
    )
    _child_engine = Engine(subscriptions=delivery)
    Finalize(None, delivery.close, exitpriority=10)  # the webhook time-out, then drops are logged
    if settings.warm_up:
        from ._warmup import warm_up

        warm_up(_child_engine)


def _child_ready() -> int:
    return os.getpid()


_RULESETS = TypeAdapter(list[Ruleset])
_child_rulesets: dict[bytes, list[Ruleset] | None] = {}
# What a worker process answers for rulesets naming a metric it doesn't know (a custom metric registered
# at run time in the server process): the server evaluates them on its threads instead.
UNKNOWN_IN_WORKER = b""


def _known(rulesets: list[Ruleset]) -> bool:
    return all(find_metric(metric) is not None for ruleset in rulesets for metric in ruleset.metrics)


def _child_evaluate(payload: bytes, rulesets: bytes, options: dict[str, Any]) -> bytes:
    """Evaluate in a worker process. Everything crosses the process boundary as JSON bytes (cheaper
    than pickling models both ways); a stage's rulesets are parsed once per worker and version."""
    assert _child_engine is not None, "worker process not initialised"
    if rulesets in _child_rulesets:
        parsed = _child_rulesets[rulesets]
    else:
        if len(_child_rulesets) > _POLICY_CACHE_MAX:
            _child_rulesets.clear()
        parsed = _RULESETS.validate_json(rulesets, context=LENIENT)
        parsed = _child_rulesets[rulesets] = parsed if _known(parsed) else None
    if parsed is None:
        return UNKNOWN_IN_WORKER
    stage_metadata = options.pop("stage_metadata", None)
    response = _child_engine.evaluate(
        Payload.model_validate_json(payload),
        parsed,
        stage_metadata=StageMetadata.model_validate(stage_metadata) if stage_metadata else None,
        **options,
    )
    return model_json(response)


class InvokeRunner:
    """Evaluates invokes off the event loop: payloads under ``process_threshold`` characters of text on
    ``invoke_threads`` threads (cheap hand-offs: the throughput path), larger ones on
    ``invoke_processes`` worker processes, where a scorer holding the GIL for a long C call on a huge
    text can't stall the event loop. Worker processes import the server's ``metrics`` modules and
    ``stageguard.metrics`` entry points at their start, so those custom metrics work there; rulesets
    naming a custom metric registered otherwise (at run time, in this process only) are evaluated on the
    threads whatever the payload's size.

    The request's ``timeout`` is the deadline of the whole invoke, stage lookup and waiting for a worker
    included: when it passes, the fail policy answers (the stage's, when the stage was resolved or seen
    before) and a job still queued is dropped. The event loop only waits, so ``/healthcheck`` and other
    requests keep being answered while the workers are busy."""

    def __init__(self, protect: Protect, settings: ServerSettings) -> None:
        self.protect = protect
        self.settings = settings
        self.max_timeout = settings.max_invoke_timeout
        self._lock = threading.Lock()
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None
        self._policies: dict[Hashable, tuple[FailPolicy, str | None]] = {}
        # JSON of each cached stage's rulesets (keyed by the list Protect caches; the list is kept so
        # its id can't be reused while the entry lives)
        self._rulesets_json: dict[int, tuple[list[Ruleset], bytes]] = {}
        # rulesets JSON the worker processes can't evaluate (a metric unknown there): threads only
        self._thread_only: set[bytes] = set()

    @property
    def threads(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = concurrent.futures.ThreadPoolExecutor(
                    self.settings.invoke_threads, "stageguard-invoke"
                )
            return self._threads

    @property
    def processes(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._processes is None:
                self._processes = concurrent.futures.ProcessPoolExecutor(
                    self.settings.invoke_processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_child_init,
                    initargs=(self.settings,),
                )
            return self._processes

    def uses_process(self, text_chars: int) -> bool:
        return self.settings.invoke_processes > 0 and text_chars >= self.settings.process_threshold

    def start(self) -> None:
        """Start the worker processes now (and warm them up), not on the first large invoke."""
        if self.settings.invoke_processes > 0:
            pool = self.processes
            for future in [pool.submit(_child_ready) for _ in range(self.settings.invoke_processes)]:
                future.result(timeout=120)

    @staticmethod
    def _stage_key(request: Request) -> Hashable:
        return (request.project_id, request.stage_id, request.stage_name)

    def _planned(self, request: Request, plan: dict[str, Any] | Response, plans: dict[str, Any]) -> None:
        if isinstance(plan, Response):
            return
        plans["plan"] = plan
        if request.stage_id is not None or request.stage_name is not None:
            message = _fail_closed_message(plan["rulesets"], self.protect.engine.fail_closed_message)
            if len(self._policies) > _POLICY_CACHE_MAX:
                self._policies.clear()
            self._policies[self._stage_key(request)] = (plan["fail_policy"], message)

    def _evaluate(self, request: Request, deadline: float, plans: dict[str, Any]) -> bytes:
        """Thread mode: plan and evaluate on a worker thread."""
        plan = self.protect._plan(request)
        self._planned(request, plan, plans)
        if isinstance(plan, Response):
            return model_json(plan)
        return self._evaluate_plan(request, plan, deadline)

    def _evaluate_plan(self, request: Request, plan: dict[str, Any], deadline: float) -> bytes:
        plan = {**plan, "timeout": max(deadline - time.monotonic(), 1e-3)}
        return model_json(self.protect.engine.evaluate(request.payload, **plan))

    async def _on_thread(self, request: Request, plan: dict[str, Any], deadline: float) -> bytes:
        future = self.threads.submit(self._evaluate_plan, request, plan, deadline)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    async def _in_process(self, request: Request, deadline: float, plans: dict[str, Any]) -> bytes:
        """Process mode: resolve the stage here (cached; the database is read on a thread), evaluate in
        a worker process."""
        plan = await run_in_threadpool(self.protect._plan, request)
        self._planned(request, plan, plans)
        if isinstance(plan, Response):
            return model_json(plan)
        rulesets = plan["rulesets"]
        key = id(rulesets)
        cached = self._rulesets_json.get(key)
        if cached is None or cached[0] is not rulesets:
            if len(self._rulesets_json) > _POLICY_CACHE_MAX:
                self._rulesets_json.clear()
            cached = self._rulesets_json[key] = (rulesets, _bytes(_RULESETS, rulesets))
        if cached[1] in self._thread_only:
            return await self._on_thread(request, plan, deadline)
        metadata = plan["stage_metadata"]
        options = {
            **{k: v for k, v in plan.items() if k not in ("rulesets", "stage_metadata")},
            "stage_metadata": metadata.model_dump(mode="json") if metadata is not None else None,
            "metadata": clean(plan["metadata"]),
            "timeout": max(deadline - time.monotonic(), 1e-3),
        }
        if "sanitized" in plan:  # the payload's own record doesn't survive the trip as JSON
            options["sanitized"] = _sanitized(request)
        pool = plans["pool"] = self.processes
        future = pool.submit(_child_evaluate, model_json(request.payload), cached[1], options)
        try:
            answer = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise
        if answer == UNKNOWN_IN_WORKER:
            logger.info(
                "rulesets name a custom metric the invoke worker processes don't know (registered at "
                "run time, not by --metrics or an entry point): evaluating them on threads"
            )
            if len(self._thread_only) > _POLICY_CACHE_MAX:
                self._thread_only.clear()
            self._thread_only.add(cached[1])
            return await self._on_thread(request, plan, deadline)
        return answer

    async def invoke(self, request: Request, text_chars: int = 0) -> bytes:
        """The JSON of the invoke's response; ``text_chars`` (the payload's text) picks the pool."""
        timeout = min(request.timeout, self.max_timeout)
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        plans: dict[str, Any] = {}
        try:
            if self.uses_process(text_chars):
                return await asyncio.wait_for(self._in_process(request, deadline, plans), timeout)
            future = self.threads.submit(self._evaluate, request, deadline, plans)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
            except TimeoutError:
                future.cancel()  # a job still queued never runs; a running one finishes in the background
                raise
        except TimeoutError:
            if "pool" in plans:
                self._check_pool(plans["pool"])
            return self._answer(request, plans, start, timeout, timed_out=True)
        except BrokenProcessPool as exc:
            logger.error("an invoke worker process died; restarting the pool: %s", exc)
            self._retire(plans["pool"])
            return self._answer(request, plans, start, timeout, error=exc)
        except Exception as exc:
            if _mapped(exc):
                raise
            logger.exception("invoke failed unexpectedly; answering under the fail policy")
            return self._answer(request, plans, start, timeout, error=exc)

    def _answer(
        self,
        request: Request,
        plans: dict[str, Any],
        start: float,
        timeout: float,
        *,
        timed_out: bool = False,
        error: Exception | None = None,
    ) -> bytes:
        plan = plans.get("plan")
        known = self._policies.get(self._stage_key(request))
        message = self.protect.engine.fail_closed_message
        if plan is not None:
            policy = plan["fail_policy"]
            message = _fail_closed_message(plan["rulesets"], message)
        elif request.fail_policy is not None:
            policy = request.fail_policy
            message = _fail_closed_message(request.prioritized_rulesets, message)
        elif known is not None:
            policy, message = known[0], known[1] or message
        else:
            policy = self.protect.default_fail_policy or FailPolicy.fail_open
            message = _fail_closed_message(request.prioritized_rulesets, message)
        if timed_out:
            reason = (
                f"the invoke did not finish within its timeout of {timeout:g} s (server busy or slow metrics)"
            )
        else:
            reason = f"the server could not evaluate the invoke: {type(error).__name__}: {error}"
        response = fail_policy_response(
            request.payload,
            reason,
            FailPolicy(policy),
            timed_out=timed_out,
            fail_closed_message=message,
            metadata=request.metadata,
            headers=request.headers,
            execution_time=time.perf_counter() - start,
            sanitized=_sanitized(request),
        )
        return model_json(response)

    def close(self, grace: float = 5.0) -> None:
        """Stop the workers: queued jobs are dropped, worker processes get ``grace`` seconds to finish
        (and deliver their subscriptions) before they are terminated."""
        with self._lock:
            threads, self._threads = self._threads, None
            pool, self._processes = self._processes, None
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        if pool is not None:
            stop_pool(pool, grace, "invoke worker")

    def _retire(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        """Replace a pool that can't answer any more; the next large invoke starts a new one."""
        with self._lock:
            if self._processes is pool:
                self._processes = None
        stop = threading.Thread(
            target=stop_pool, args=(pool, 0.0, "invoke worker"), name="stageguard-pool-stop", daemon=True
        )
        stop.start()

    def _check_pool(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        """After a process-mode time-out: a worker that died while writing its answer leaves its pool
        unable to answer without reporting itself broken (see :mod:`stageguard._pools`), so every later
        large invoke would time out."""
        dead = dead_worker(pool)
        if dead is not None:
            logger.error("invoke %s without the pool noticing; restarting the pool", exit_note(dead))
            self._retire(pool)


def _sanitized(request: Request) -> list[str]:
    """What the library cleaned in the request: its payload's fields and the request's own."""
    payload = list(getattr(request.payload, "sanitized", None) or ())
    return list(dict.fromkeys([*payload, *(getattr(request, "sanitized", None) or ())]))


def _bytes(adapter: TypeAdapter[Any], value: Any) -> bytes:
    try:
        return adapter.dump_json(value)
    except Exception:  # lone surrogates the models kept: cleaned
        return dumps(adapter.dump_python(value, mode="json", fallback=str))


def _mapped(exc: Exception) -> bool:
    from ._errors import as_api_error

    return as_api_error(exc) is not None


class _SweptMemoryStorage(MemoryStorage):
    """``limits``' asyncio in-memory storage, sweeping out expired counters at most once a second.

    The library sweeps after every count, walking every counter: O(counters) per request, so failed logins
    from many client addresses (a counter each, kept for two windows) would slow every request down (1.3 ms
    a request at 10,000 counters, 25 ms at 100,000). An expired counter is dropped when it is next read
    anyway (``MemoryStorage.get``); the sweep only frees counters nobody reads again."""

    sweep_every = 1.0  # seconds
    _last_sweep = -math.inf

    async def _MemoryStorage__schedule_expiry(self) -> None:  # the library's (private) hook for its sweep
        now = time.monotonic()
        if now - self._last_sweep >= self.sweep_every:
            self._last_sweep = now
            await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]  # private there


class KeyGate:
    """Per-key rate limit (``limits``' sliding window counter, in memory: per process) and concurrency
    limit, and a limit on failed authentications per client address.

    The counters are ``limits``' asyncio flavour, used on the event loop: the sync in-memory storage starts
    a timer thread every 10 ms under load, and the event loop waited for each to start."""

    def __init__(self, rate_limit: str, auth_failure_limit: str, max_concurrency: int) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(_SweptMemoryStorage())
        self._rate: list[RateLimitItem] = parse_many(rate_limit) if rate_limit else []
        self._failures: list[RateLimitItem] = parse_many(auth_failure_limit) if auth_failure_limit else []
        self.max_concurrency = max_concurrency
        self._in_flight: dict[str, int] = {}

    async def _too_many(self, item: RateLimitItem, identifiers: tuple[str, str], what: str) -> ApiError:
        stats = await self._limiter.get_window_stats(item, *identifiers)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return ApiError(
            429,
            f"rate limit exceeded: {what} ({item}); retry in {retry_after} s",
            code="rate_limited",
            headers={"Retry-After": str(retry_after)},
        )

    async def hit(self, key_id: str) -> None:
        """Count one request of a key; 429 when over its rate limit."""
        for item in self._rate:
            if not await self._limiter.hit(item, "key", key_id):
                raise await self._too_many(item, ("key", key_id), "too many requests for this API key")

    async def check_failures(self, client: str) -> None:
        """429 when ``client`` failed to authenticate too often recently."""
        for item in self._failures:
            if not await self._limiter.test(item, "auth", client):
                raise await self._too_many(
                    item, ("auth", client), "too many failed authentications from this address"
                )

    async def failed(self, client: str) -> None:
        for item in self._failures:
            await self._limiter.hit(item, "auth", client)

    @contextlib.asynccontextmanager
    async def counting_failures(self, client: str) -> AsyncIterator[None]:
        """Around an authentication: 429 first when ``client`` failed too often recently; a 401 raised
        inside counts as one more failure (and goes on up)."""
        await self.check_failures(client)
        try:
            yield
        except ApiError as exc:
            if exc.status == 401:
                await self.failed(client)
            raise

    @contextlib.contextmanager
    def in_progress(self, key_id: str) -> Iterator[None]:
        """Hold one of the key's in-progress slots (429 when all are taken) while the block runs."""
        count = self._in_flight.get(key_id, 0)
        if count >= self.max_concurrency:
            raise ApiError(
                429,
                f"too many requests in progress for this API key (limit {self.max_concurrency} per server "
                "process, STAGEGUARD_MAX_CONCURRENCY_PER_KEY)",
                code="too_many_concurrent",
                headers={"Retry-After": "1"},
            )
        self._in_flight[key_id] = count + 1
        try:
            yield
        finally:
            left = self._in_flight.get(key_id, 1) - 1
            if left <= 0:
                self._in_flight.pop(key_id, None)
            else:
                self._in_flight[key_id] = left

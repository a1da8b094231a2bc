"""The evaluation engine: compute the metrics rulesets need, evaluate rules, pick and apply the action.

Semantics (PROTECT.md): rules in a ruleset are ANDed; rulesets are tried in priority order and the first
triggered one supplies the action. Each metric is computed once per invoke, only when a rule needs it,
concurrently with the others, within the invoke's latency budget. A metric that cannot be computed
follows the fail policy: ``fail_open`` reports it and changes nothing, ``fail_closed`` blocks with the
stage's first override.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from ._build import builder
from ._loop import BackgroundLoop
from ._subscriptions import SubscriptionDelivery
from .metrics import ValueKind, find_metric
from .operators import comparison
from .payload import ALL_FIELDS, TEXT_FIELDS, Payload, clean_text
from .redaction import Vault, apply_redaction, scrub
from .response import (
    ActionResult,
    Failure,
    MetricResult,
    Response,
    RuleResult,
    RulesetResult,
    StageMetadata,
    TraceMetadata,
    new_trace_id,
    response_json,
)
from .rules import ActionType, OverrideAction, PassthroughAction, RedactAction, Rule, Ruleset
from .scorers.base import Scorer, ScoreResult, Span, as_score_result
from .scorers.registry import ScorerRegistry, default_registry
from .status import ExecutionStatus, FailPolicy

logger = logging.getLogger("stageguard")

DEFAULT_FAIL_CLOSED_MESSAGE = "This request was blocked because its safety checks could not be completed."
# Calls of one blocking (``mode="thread"``) metric that may run at once, unless its scorer sets
# ``max_concurrency``. Each blocking metric has its own threads, so a hung scorer holds at most this many
# and can't starve the others; further calls wait in its queue until their invoke's time-out.
DEFAULT_BLOCKING_CONCURRENCY = 4

_TRIGGERED, _NOT_TRIGGERED = ExecutionStatus.triggered, ExecutionStatus.not_triggered
_ERROR, _TIMEOUT, _SKIPPED = ExecutionStatus.error, ExecutionStatus.timeout, ExecutionStatus.skipped
_FAILED_METRIC = frozenset({"error", "timeout"})  # metric statuses reported in the response's failure

# Ruleset status from its rules: a rule that cannot trigger decides first (AND), then failures; the
# ruleset triggers when every rule did. The lowest rank among its rules' statuses wins.
_RULESET_PRECEDENCE = {
    ExecutionStatus.not_triggered: 0,
    ExecutionStatus.skipped: 1,
    ExecutionStatus.error: 2,
    ExecutionStatus.timeout: 3,
    ExecutionStatus.triggered: 4,
}


# Result objects are built from values the engine has already checked (see _build.builder); the
# ``model_fields_set`` of each is what pydantic gives the constructor call the engine used to make.
_metric_result = builder(MetricResult)
_rule_result = builder(
    RuleResult, ("status", "metric", "operator", "target_value", "value", "execution_time")
)
_ruleset_result = builder(RulesetResult)
_new_action_result = builder(ActionResult, ("type", "value"))  # spans and review keep their defaults
_trace_metadata = builder(TraceMetadata, ("received_at", "response_at", "execution_time"))  # id generated
_response = builder(Response)


# A rule as the engine evaluates it: the rule, its metric, its operator's comparison and its target.
_CompiledRule = tuple[Rule, str, Callable[[Any, Any], bool], Any]


class CompiledRulesets(list[Ruleset]):
    """Rulesets (a list of them, used as one) with what evaluating them needs resolved once: each
    rule's comparison, the metrics the rules use (each once, in order), whether an action notifies
    subscriptions.

    ``Protect`` compiles each stored stage version once and caches it with the stage; rulesets passed
    to :meth:`Engine.evaluate` otherwise are compiled on each call. A ruleset changed after compiling
    needs compiling again.
    """

    def __init__(self, rulesets: Iterable[Ruleset] = ()) -> None:
        super().__init__(rulesets)
        self.rules: list[tuple[_CompiledRule, ...]] = [
            tuple((rule, rule.metric, comparison(rule.operator), rule.target_value) for rule in ruleset.rules)
            for ruleset in self
        ]
        self.metrics: tuple[str, ...] = tuple(
            dict.fromkeys(rule[1] for rules in self.rules for rule in rules)
        )
        self.subscribed = any(ruleset.action.subscriptions for ruleset in self)
        # Engine.fields_read's answer, with the registry version it was computed for
        self.fields_read_cache: tuple[object, frozenset[str]] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return CompiledRulesets, (list(self),)  # pickled as the rulesets, compiled again when loaded


def compile_rulesets(rulesets: Sequence[Ruleset]) -> CompiledRulesets:
    """``rulesets`` compiled (themselves, when they already are)."""
    return rulesets if type(rulesets) is CompiledRulesets else CompiledRulesets(rulesets)


@dataclass(slots=True)
class _Job:
    """One metric to compute in this invoke."""

    metric: str
    scorer: Scorer | None
    result: _Metric | None = None  # set when finished (or failed before starting)
    kind: ValueKind | None = None


# The types a metric value of each kind usually has (one look-up before _kind_problem's checks).
_KIND_TYPES: dict[ValueKind | None, tuple[type, ...]] = {
    ValueKind.score: (float, int),
    ValueKind.number: (float, int),
    ValueKind.category: (str,),
    ValueKind.categories: (list,),
}


def _kind_problem(value: Any, kind: ValueKind | None) -> str | None:
    """Why ``value`` can't be the value of a metric of ``kind`` (rules would silently never trigger)."""
    if value is None:
        return "the scorer returned no value"
    if kind in (ValueKind.score, ValueKind.number):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    elif kind is ValueKind.category:
        ok, expected = isinstance(value, str), "one category (a string)"
    elif kind is ValueKind.categories:
        ok, expected = isinstance(value, list), "a list of categories"
    else:
        return None
    return None if ok else f"the scorer returned {type(value).__name__} {value!r:.60}, not {expected}"


def _timed_score(scorer: Scorer, payload: Payload) -> tuple[ScoreResult, float]:
    start = time.perf_counter()
    result = scorer.score(payload)
    return result, time.perf_counter() - start


async def _atimed_score(scorer: Scorer, payload: Payload) -> tuple[ScoreResult, float]:
    start = time.perf_counter()
    result = await scorer.ascore(payload)
    return result, time.perf_counter() - start


_NUMERIC = frozenset({ValueKind.score, ValueKind.number})


class _Metric(NamedTuple):
    """A metric's computation as the engine decides with it: the fields of :class:`MetricResult` (in
    its field order), which the response builds from it when first read."""

    value: Any
    execution_time: float | None
    status: str
    error_message: str | None
    explanation: str | None
    spans: list[Span]


def _success(result: Any, elapsed: float, kind: ValueKind | None) -> _Metric:
    """The metric result of what a scorer returned (a ScoreResult, or a bare number from
    :meth:`Scorer.score_number`); a value no rule can compare (not finite, or not of the metric's
    ``kind``) is a metric error."""
    if type(result) is float or type(result) is int:
        if kind in _NUMERIC and (type(result) is int or math.isfinite(result)):
            return _Metric(result, elapsed, "success", None, None, [])
        result = as_score_result(result)  # the general checks below say what is wrong
    if not isinstance(result, ScoreResult):
        return _problem("error", f"the scorer returned a {type(result).__name__}, not a ScoreResult", elapsed)
    value = result.value
    if isinstance(value, float):
        if not math.isfinite(value):
            return _problem("error", f"the scorer returned {value}, not a finite number", elapsed)
    elif isinstance(value, str):
        value = clean_text(value)
    elif isinstance(value, list):
        value = [clean_text(v) if isinstance(v, str) else v for v in value]
    if type(value) not in _KIND_TYPES.get(kind, ()):  # a value of the kind's usual type needs no check
        problem = _kind_problem(value, kind)
        if problem is not None:
            return _problem("error", problem, elapsed)
    explanation, spans = result.explanation, result.spans
    return _Metric(
        value,
        elapsed,
        "success",
        None,
        clean_text(explanation) if isinstance(explanation, str) else None,
        [s for s in spans if isinstance(s, Span)] if spans else [],
    )


def _problem(status: str, message: str, elapsed: float | None = None) -> _Metric:
    return _Metric(None, elapsed, status, clean_text(message), None, [])


def _action_result(kind: ActionType, value: str) -> ActionResult:
    """``ActionResult(type=kind, value=value)``: built directly when ``value`` is a string."""
    if type(value) is not str:  # let pydantic report (or convert) anything else
        return ActionResult(type=kind, value=value)
    return _new_action_result({"type": kind, "value": value, "spans": [], "review": False})


def _error(exc: BaseException, elapsed: float | None = None) -> _Metric:
    try:
        detail = str(exc)
    except Exception:  # an exception whose __str__ raises
        detail = "(no message)"
    return _problem("error", f"{type(exc).__name__}: {detail}", elapsed)


class _BlockingPool:
    """Worker threads of one blocking metric: at most ``limit`` calls run at once."""

    def __init__(self, metric: str, limit: int) -> None:
        self.limit = limit
        self.executor = concurrent.futures.ThreadPoolExecutor(limit, f"stageguard-{metric[:40]}")


class Engine:
    """Evaluates rulesets against payloads. Knows nothing about where stages are stored."""

    def __init__(
        self,
        registry: ScorerRegistry | None = None,
        *,
        fail_closed_message: str = DEFAULT_FAIL_CLOSED_MESSAGE,
        subscriptions: SubscriptionDelivery | None = None,
        max_workers: int = DEFAULT_BLOCKING_CONCURRENCY,
    ) -> None:
        """``max_workers``: how many calls of one blocking metric may run at once, for scorers that don't
        set ``max_concurrency`` themselves (``register_metric(..., max_concurrency=)``).

        ``subscriptions`` delivers the webhooks of triggered rulesets (default: one made on first use).
        :meth:`close` closes it, given or not (as httpx closes a transport it is given): the deliveries it
        has in flight, whichever engine started them, get one attempt's time-out and are then cancelled."""
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.registry = registry or default_registry
        self.fail_closed_message = fail_closed_message
        self._loop = BackgroundLoop("stageguard-engine")
        self._max_workers = max_workers
        self._pools: dict[tuple[str, int], _BlockingPool] = {}
        self._pools_lock = threading.Lock()
        self._subscriptions = subscriptions

    @property
    def subscriptions(self) -> SubscriptionDelivery:
        if self._subscriptions is None:
            self._subscriptions = SubscriptionDelivery(loop=self._loop)  # one background thread
        return self._subscriptions

    def executor_for(self, metric: str, scorer: Scorer) -> concurrent.futures.ThreadPoolExecutor:
        """The threads of one blocking metric (created on first use)."""
        limit = getattr(scorer, "max_concurrency", None) or self._max_workers
        key = (metric, limit)
        pool = self._pools.get(key)
        if pool is None:
            with self._pools_lock:
                pool = self._pools.get(key)
                if pool is None:
                    pool = self._pools[key] = _BlockingPool(metric, limit)
        return pool.executor

    # -- public API -----------------------------------------------------------------------------

    def fields_read(self, rulesets: Sequence[Ruleset]) -> frozenset[str]:
        """The payload fields the scorers of the rulesets' metrics read, with ``input`` and ``output``
        (the checked text); every field when one of them may read any (its ``fields_read`` is ``None``,
        as for custom metrics) or a metric has no scorer (the invoke reports that)."""
        version = self.registry.version
        cached = rulesets.fields_read_cache if type(rulesets) is CompiledRulesets else None
        if cached is not None and cached[0] == version:  # a stored stage's: computed once per version
            return cached[1]
        fields = self._fields_read(rulesets)
        if type(rulesets) is CompiledRulesets:
            rulesets.fields_read_cache = (version, fields)
        return fields

    def _fields_read(self, rulesets: Sequence[Ruleset]) -> frozenset[str]:
        fields = set(TEXT_FIELDS)
        get_scorer = self.registry.get
        for ruleset in rulesets:
            for rule in ruleset.rules:
                scorer = get_scorer(rule.metric)
                read = scorer.fields_read if scorer is not None else None
                if read is None:
                    return ALL_FIELDS
                fields.update(read)
        return frozenset(fields)

    def evaluate(
        self,
        payload: Payload,
        rulesets: Sequence[Ruleset],
        *,
        timeout: float = 300.0,
        fail_policy: FailPolicy = FailPolicy.fail_open,
        shadow: bool = False,
        stage_metadata: StageMetadata | None = None,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        sanitized: Sequence[str] = (),
        vault: Vault | None = None,
    ) -> Response:
        """Evaluate ``rulesets`` against ``payload`` (sync).

        ``sanitized`` names request fields the caller cleaned (reported with the payload's own).
        ``vault`` keeps the run's pseudonyms (REDACT ``strategy="pseudonym"``); without one, each invoke
        numbers them afresh in a throw-away vault and the response's ``notes`` say so.
        """
        received_at, start = time.time_ns(), time.perf_counter()
        compiled = compile_rulesets(rulesets)
        jobs = self._plan(payload, compiled.metrics)
        self._compute(payload, jobs, start + timeout)
        return self._decide(
            payload,
            compiled,
            jobs,
            fail_policy,
            shadow,
            stage_metadata,
            metadata,
            headers,
            received_at,
            start,
            sanitized,
            vault,
        )

    async def aevaluate(
        self,
        payload: Payload,
        rulesets: Sequence[Ruleset],
        *,
        timeout: float = 300.0,
        fail_policy: FailPolicy = FailPolicy.fail_open,
        shadow: bool = False,
        stage_metadata: StageMetadata | None = None,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        sanitized: Sequence[str] = (),
        vault: Vault | None = None,
    ) -> Response:
        """Evaluate ``rulesets`` against ``payload`` (async; scorers run concurrently)."""
        received_at, start = time.time_ns(), time.perf_counter()
        compiled = compile_rulesets(rulesets)
        jobs = self._plan(payload, compiled.metrics)
        await self._acompute(payload, jobs, start + timeout)
        return self._decide(
            payload,
            compiled,
            jobs,
            fail_policy,
            shadow,
            stage_metadata,
            metadata,
            headers,
            received_at,
            start,
            sanitized,
            vault,
        )

    def paused_response(
        self,
        payload: Payload,
        stage_metadata: StageMetadata,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        sanitized: Sequence[str] = (),
    ) -> Response:
        """A paused stage lets everything through: status ``paused``, text unchanged."""
        received_at = time.time_ns()
        return Response(
            status=ExecutionStatus.paused,
            text=payload.text,
            action_result=ActionResult(type=ActionType.PASSTHROUGH, value=payload.text),
            stage_metadata=stage_metadata,
            trace_metadata=TraceMetadata(received_at=received_at, execution_time=0.0),
            metadata=metadata,
            headers=headers,
            sanitized=_sanitized(payload, sanitized),
        )

    def unavailable_response(
        self,
        payload: Payload,
        reason: str,
        fail_policy: FailPolicy,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        sanitized: Sequence[str] = (),
    ) -> Response:
        """The stage could not be loaded: answer under the fail policy instead of raising."""
        return fail_policy_response(
            payload,
            reason,
            fail_policy,
            fail_closed_message=self.fail_closed_message,
            metadata=metadata,
            headers=headers,
            sanitized=sanitized,
        )

    def close(self) -> None:
        """Stop the engine's threads and background loop; subscription deliveries in flight get one
        attempt's time-out to finish first (see :meth:`SubscriptionDelivery.close`)."""
        if self._subscriptions is not None:
            self._subscriptions.close()
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.executor.shutdown(wait=False, cancel_futures=True)
        self._loop.close()

    # -- metrics ----------------------------------------------------------------------------------

    def _plan(self, payload: Payload, metrics: Iterable[str]) -> list[_Job]:
        """One job per metric the rules need; metrics that cannot run are resolved right away."""
        jobs = []
        get_scorer = self.registry.get
        for metric in metrics:
            job = _Job(metric, get_scorer(metric))
            jobs.append(job)
            spec = find_metric(metric)
            job.kind = spec.kind if spec else None
            # a metric needing no particular field (most custom ones) can't miss any
            missing = spec.missing(payload.has) if spec and spec.required_fields else []
            if spec is None:
                job.result = _problem("error", f"unknown metric {metric!r}: no scorer is registered")
            elif missing:
                needs = " or ".join(missing)
                job.result = _problem(
                    "failed", f"skipped: the payload has no {needs} (needed by {spec.name})"
                )
            elif job.scorer is None:
                job.result = _problem("error", f"no scorer is available for metric {metric!r}")
        return jobs

    def _compute(self, payload: Payload, jobs: list[_Job], deadline: float) -> None:
        futures: dict[concurrent.futures.Future[tuple[ScoreResult, float]], _Job] = {}
        inline: list[_Job] = []
        for job in jobs:
            if job.result is not None or job.scorer is None:
                continue
            if job.scorer.mode == "async":
                futures[self._loop.submit(_atimed_score(job.scorer, payload))] = job
            elif job.scorer.mode == "thread":
                executor = self.executor_for(job.metric, job.scorer)
                futures[executor.submit(_timed_score, job.scorer, payload)] = job
            else:
                inline.append(job)
        for job in inline:  # cheap CPU scorers run here while the others are in flight
            self._run_inline(job, payload, deadline)
        if futures:
            done, pending = concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.perf_counter()))
            for future in done:
                job = futures[future]
                job.result = self._finished(future, job.kind)
            for future in pending:
                future.cancel()
                futures[future].result = _problem("timeout", "the scorer did not finish within the time-out")

    async def _acompute(self, payload: Payload, jobs: list[_Job], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        futures: dict[asyncio.Future[tuple[ScoreResult, float]], _Job] = {}
        inline: list[_Job] = []
        for job in jobs:
            if job.result is not None or job.scorer is None:
                continue
            if job.scorer.mode == "async":
                futures[asyncio.ensure_future(_atimed_score(job.scorer, payload))] = job
            elif job.scorer.mode == "thread":
                executor = self.executor_for(job.metric, job.scorer)
                futures[loop.run_in_executor(executor, _timed_score, job.scorer, payload)] = job
            else:
                inline.append(job)
        for job in inline:
            self._run_inline(job, payload, deadline)
        if futures:
            done, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - time.perf_counter()))
            for future in done:
                job = futures[future]
                job.result = self._finished(future, job.kind)
            for future in pending:
                future.cancel()
                futures[future].result = _problem("timeout", "the scorer did not finish within the time-out")

    @staticmethod
    def _run_inline(job: _Job, payload: Payload, deadline: float) -> None:
        assert job.scorer is not None
        start = time.perf_counter()
        try:
            result = job.scorer.score_number(payload)
        except Exception as exc:
            logger.warning("scorer for %s failed: %s: %s", job.metric, type(exc).__name__, exc)
            logger.debug("scorer traceback", exc_info=exc)
            job.result = _error(exc, time.perf_counter() - start)
            return
        end = time.perf_counter()
        if end > deadline:  # an inline scorer can't be interrupted; an overrun still counts as a time-out
            job.result = _problem("timeout", "the scorer overran the invoke's time-out", end - start)
        else:
            job.result = _success(result, end - start, job.kind)

    @staticmethod
    def _finished(
        future: concurrent.futures.Future[Any] | asyncio.Future[Any], kind: ValueKind | None
    ) -> _Metric:
        exc = future.exception()
        if exc is not None:
            if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
                return _problem("timeout", f"the scorer timed out: {exc}")
            logger.warning("scorer failed: %s: %s", type(exc).__name__, exc)
            logger.debug("scorer traceback", exc_info=exc)
            return _error(exc)
        result, elapsed = future.result()
        return _success(result, elapsed, kind)

    # -- decision ---------------------------------------------------------------------------------

    def _decide(
        self,
        payload: Payload,
        rulesets: CompiledRulesets,
        jobs: list[_Job],
        fail_policy: FailPolicy,
        shadow: bool,
        stage_metadata: StageMetadata | None,
        metadata: dict[str, Any] | None,
        headers: dict[str, str] | None,
        received_at: int,
        start: float,
        sanitized: Sequence[str] = (),
        vault: Vault | None = None,
    ) -> Response:
        if type(fail_policy) is not FailPolicy:  # a plain string from a direct caller works too
            fail_policy = FailPolicy(fail_policy)
        metric_results = {job.metric: job.result for job in jobs if job.result is not None}
        outcomes = [_evaluate_rules(rules, metric_results) for rules in rulesets.rules]

        decided: int | None = None  # the index of the ruleset whose action applies
        failed_closed = incomplete = False  # incomplete: a ruleset could not be evaluated
        for index, (ruleset_status, _) in enumerate(outcomes):
            if ruleset_status is _TRIGGERED:
                decided = index
                break
            if ruleset_status is _ERROR or ruleset_status is _TIMEOUT:
                incomplete = True
                if fail_policy is FailPolicy.fail_closed:
                    decided, failed_closed = index, True
                    break

        failed = [m for m, r in metric_results.items() if r.status in _FAILED_METRIC]
        failure = None
        if failed:
            reasons = "; ".join(f"{m}: {metric_results[m].error_message}" for m in failed)
            failure = Failure(policy=fail_policy, metrics=failed, reason=reasons)

        original = payload.text
        notes: list[str] = []
        replaced: dict[str, str] = {}
        if decided is None:
            status = _NOT_TRIGGERED
            if incomplete:
                all_timeouts = all(metric_results[m].status == "timeout" for m in failed)
                status = _TIMEOUT if all_timeouts else _ERROR
            action_result = _action_result(ActionType.PASSTHROUGH, original)
        else:
            status = _TRIGGERED
            ruleset = rulesets[decided]
            action = self._fail_closed_action(rulesets) if failed_closed else ruleset.action
            metrics = [metric_results[name] for _, name, _, _ in rulesets.rules[decided]]
            action_result, replaced = self._apply(action, payload, metrics, vault, notes)
            if replaced:  # what was redacted must not come back in an explanation or a value
                _scrub_metrics(metric_results, replaced)
            # a person reviews what a rule decided; a fail-closed block is the fail policy's decision
            action_result.review = (
                not failed_closed
                and getattr(action, "review", False)
                and (action_result.type is ActionType.OVERRIDE or bool(action_result.spans))
            )

        shadow_action_result = None
        if shadow:
            shadow_action_result = action_result
            action_result = _action_result(ActionType.PASSTHROUGH, original)

        execution_time = time.perf_counter() - start
        response = _response(
            {  # ruleset_results, metric_results and trace_metadata: built on first read (Response._pending)
                "status": status,
                "text": action_result.value,
                "action_result": action_result,
                "stage_metadata": stage_metadata,
                "metadata": metadata,
                "headers": headers,
                "api_version": "1.0.0",
                "shadow": shadow,
                "shadow_action_result": shadow_action_result,
                "failure": failure,
                "sanitized": _sanitized(payload, sanitized),
                "notes": notes or None,
            },
            {
                "_pending": partial(
                    _pending_fields, rulesets, outcomes, metric_results, replaced, received_at, execution_time
                )
            },
        )
        self._notify(rulesets, outcomes, response)
        return response

    def _fail_closed_action(self, rulesets: Sequence[Ruleset]) -> OverrideAction:
        for ruleset in rulesets:
            if isinstance(ruleset.action, OverrideAction):
                return ruleset.action
        return OverrideAction(choices=[self.fail_closed_message])

    @staticmethod
    def _apply(
        action: OverrideAction | PassthroughAction | RedactAction,
        payload: Payload,
        metrics: list[_Metric],
        vault: Vault | None,
        notes: list[str],
    ) -> tuple[ActionResult, dict[str, str]]:
        """The action's result, and (for a REDACT) which value each replacement stands for. ``metrics``:
        the results of the triggered ruleset's metrics, one per rule."""
        if isinstance(action, OverrideAction):
            return _action_result(ActionType.OVERRIDE, action.pick()), {}
        if isinstance(action, RedactAction):
            field = payload.text_field
            spans = [span for metric in metrics for span in metric.spans if span.field == field]
            if action.strategy == "pseudonym" and vault is None and spans:
                vault = Vault()
                notes.append(
                    "pseudonyms were numbered in a throw-away vault: pass vault=Vault() to the invoke to "
                    "keep them across invokes and restore the values"
                )
            text, replaced = apply_redaction(
                payload.text, spans, strategy=action.strategy, placeholder=action.placeholder, vault=vault
            )
            return ActionResult(type=ActionType.REDACT, value=text, spans=spans), replaced
        return _action_result(ActionType.PASSTHROUGH, payload.text), {}

    def _notify(self, rulesets: CompiledRulesets, outcomes: list[_Outcome], response: Response) -> None:
        if not rulesets.subscribed:  # the common case
            return
        urls = [
            str(sub.url)
            for ruleset, (status, _) in zip(rulesets, outcomes, strict=True)
            for sub in ruleset.action.subscriptions
            if status in sub.statuses
        ]
        if not urls:
            return
        try:
            body = response_json(response)
        except Exception as exc:  # never fail the invoke over a notification
            logger.warning("subscription body could not be serialised, not delivered: %s", exc)
            return
        self.subscriptions.deliver(urls, body)


# A ruleset's outcome: its status and, per rule, the rule's status and the metric result it compared.
_Outcome = tuple[ExecutionStatus, list[tuple[ExecutionStatus, _Metric]]]
_STATUS_OF_METRIC = {"failed": _SKIPPED, "timeout": _TIMEOUT}  # any other failure is an error


def _evaluate_rules(rules: tuple[_CompiledRule, ...], metric_results: dict[str, _Metric]) -> _Outcome:
    """Evaluate one ruleset's rules (ANDed): no result objects, only what the decision needs."""
    outcome = []
    rank = _RULESET_PRECEDENCE
    ruleset_status = _TRIGGERED  # when every rule triggered
    for rule, name, test, target in rules:
        metric = metric_results[name]
        if metric.status == "success":
            try:
                status = _TRIGGERED if test(metric.value, target) else _NOT_TRIGGERED
            except Exception as exc:  # a custom scorer's value the operator can't compare
                metric_results[name] = metric = _problem(
                    "error",
                    f"value {metric.value!r:.80} can't be compared with {rule.operator.value} "
                    f"{rule.target_value!r:.80}: {type(exc).__name__}",
                    metric.execution_time,
                )
                status = _ERROR
        else:
            status = _STATUS_OF_METRIC.get(metric.status, _ERROR)
        if rank[status] < rank[ruleset_status]:
            ruleset_status = status
        outcome.append((status, metric))
    return ruleset_status, outcome


def _pending_fields(
    rulesets: CompiledRulesets,
    outcomes: list[_Outcome],
    metrics: dict[str, _Metric],
    replaced: dict[str, str],
    received_at: int,
    execution_time: float,
) -> dict[str, Any]:
    """The response's fields built when first read: ``ruleset_results`` from the outcomes (rule values
    with what a REDACT ``replaced`` scrubbed, as the metric results are), ``metric_results`` and
    ``trace_metadata``."""
    trace = {
        "id": new_trace_id(),
        "received_at": received_at,
        "response_at": received_at + int(execution_time * 1e9),
        "execution_time": execution_time,
    }
    return {
        "ruleset_results": _ruleset_results(rulesets, outcomes, replaced),
        "metric_results": {name: _metric_result(metric._asdict()) for name, metric in metrics.items()},
        "trace_metadata": _trace_metadata(trace),
    }


def _ruleset_results(
    rulesets: CompiledRulesets, outcomes: list[_Outcome], replaced: dict[str, str]
) -> list[RulesetResult]:
    return [
        _ruleset_result(
            {
                "status": ruleset_status,
                "rules": list(ruleset.rules),
                "action": ruleset.action,
                "description": ruleset.description,
                "rule_results": [
                    _rule_result(
                        {
                            "status": status,
                            "metric": name,
                            "operator": rule.operator,
                            "target_value": rule.target_value,
                            "value": _scrubbed(metric.value, replaced) if replaced else metric.value,
                            "execution_time": metric.execution_time,
                            "canonical_metric": None,
                        }
                    )
                    for (rule, name, _, _), (status, metric) in zip(rules, outcome, strict=True)
                ],
            },
        )
        for ruleset, rules, (ruleset_status, outcome) in zip(rulesets, rulesets.rules, outcomes, strict=True)
    ]


def fail_policy_response(
    payload: Payload,
    reason: str,
    fail_policy: FailPolicy,
    *,
    timed_out: bool = False,
    fail_closed_message: str = DEFAULT_FAIL_CLOSED_MESSAGE,
    metadata: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    execution_time: float = 0.0,
    sanitized: Sequence[str] = (),
) -> Response:
    """The answer when nothing could be evaluated (store or server unreachable): the fail policy decides.

    ``fail_open`` keeps the text (status ``error``, or ``timeout`` when ``timed_out``); ``fail_closed``
    overrides it with ``fail_closed_message``. ``failure`` says why.
    """
    if fail_policy is FailPolicy.fail_closed:
        status = ExecutionStatus.triggered
        action_result = ActionResult(type=ActionType.OVERRIDE, value=fail_closed_message)
    else:
        status = ExecutionStatus.timeout if timed_out else ExecutionStatus.error
        action_result = ActionResult(type=ActionType.PASSTHROUGH, value=payload.text)
    return Response(
        status=status,
        text=action_result.value,
        action_result=action_result,
        trace_metadata=TraceMetadata(execution_time=execution_time),
        metadata=metadata,
        headers=headers,
        failure=Failure(policy=fail_policy, metrics=[], reason=clean_text(reason)),
        sanitized=_sanitized(payload, sanitized),
    )


def _scrubbed(value: Any, replaced: dict[str, str]) -> Any:
    """``value`` (a string, or strings in a list) with each redacted value replaced as in the text."""
    if isinstance(value, str):
        return scrub(value, replaced)
    if isinstance(value, list):
        return [scrub(v, replaced) if isinstance(v, str) else v for v in value]
    return value


def _scrub_metrics(metric_results: dict[str, _Metric], replaced: dict[str, str]) -> None:
    """Metric explanations, errors and text values with each redacted value replaced as in the text
    (a judge quoting the input, a custom metric returning what it found)."""
    for name, metric in metric_results.items():
        update = {
            key: _scrubbed(getattr(metric, key), replaced)
            for key in ("value", "explanation", "error_message")
            if getattr(metric, key) is not None
        }
        if any(update[key] != getattr(metric, key) for key in update):
            metric_results[name] = metric._replace(**update)


def _sanitized(payload: Payload, extra: Sequence[str]) -> list[str] | None:
    """The ``sanitized`` field of a response: the payload's cleaned fields and the caller's, or None."""
    private = payload.__pydantic_private__
    own: list[str] = (private.get("_sanitized") if private else payload.sanitized) or []
    if not own and not extra:  # the common case
        return None
    fields = list(dict.fromkeys([*own, *extra]))
    return fields or None

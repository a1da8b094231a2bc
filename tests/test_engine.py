"""Engine semantics: AND/OR, priority, actions, missing fields, time-outs, fail policies, shadow mode."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from stageguard import (
    Engine,
    ExecutionStatus,
    FailPolicy,
    OverrideAction,
    Payload,
    RedactAction,
    Rule,
    Ruleset,
    ScoreResult,
    Span,
)

PAYLOAD = Payload(input="hello there", output="the answer")


def _rule(name: str, op: str = "gt", target: Any = 0.5) -> Rule:
    return Rule(metric=name, operator=op, target_value=target)


def _override(*rules: Rule, text: str = "blocked", description: str | None = None) -> Ruleset:
    return Ruleset(rules=list(rules), action=OverrideAction(choices=[text]), description=description)


@pytest.fixture
def high(metric: Callable[..., str]) -> str:
    return metric("high", lambda _p: 0.9)


@pytest.fixture
def low(metric: Callable[..., str]) -> str:
    return metric("low", lambda _p: 0.1)


def test_and_within_a_ruleset(high: str, low: str) -> None:
    engine = Engine()
    assert (
        engine.evaluate(PAYLOAD, [_override(_rule(high), _rule(low))]).status is ExecutionStatus.not_triggered
    )
    both = engine.evaluate(PAYLOAD, [_override(_rule(high), _rule(low, "lt", 0.5))])
    assert both.status is ExecutionStatus.triggered and both.text == "blocked"


def test_or_across_rulesets_and_first_triggered_wins(high: str, low: str) -> None:
    rulesets = [
        _override(_rule(low), text="first"),
        _override(_rule(high), text="second"),
        _override(_rule(high, "gt", 0.8), text="third"),
    ]
    response = Engine().evaluate(PAYLOAD, rulesets)
    assert response.status is ExecutionStatus.triggered
    assert response.text == "second" and response.action_result.type == "OVERRIDE"
    assert [r.status for r in response.ruleset_results] == [
        ExecutionStatus.not_triggered,
        ExecutionStatus.triggered,
        ExecutionStatus.triggered,
    ]


def test_passthrough_keeps_text_but_reports(high: str) -> None:
    response = Engine().evaluate(PAYLOAD, [Ruleset(rules=[_rule(high)])])
    assert response.status is ExecutionStatus.triggered
    assert response.text == "the answer" and response.action_result.type == "PASSTHROUGH"
    assert not response.applied


def test_text_is_input_when_there_is_no_output(high: str) -> None:
    response = Engine().evaluate(Payload(input="only input"), [Ruleset(rules=[_rule(high)])])
    assert response.text == "only input"


def test_override_picks_one_of_the_choices(high: str) -> None:
    ruleset = Ruleset(rules=[_rule(high)], action=OverrideAction(choices=["a", "b", "c"]))
    seen = {Engine().evaluate(PAYLOAD, [ruleset]).text for _ in range(60)}
    assert seen == {"a", "b", "c"}


def test_each_metric_computed_once_and_only_when_needed(metric: Callable[..., str]) -> None:
    calls: list[str] = []
    used = metric("used", lambda _p: calls.append("used") or 0.9)
    metric("unused", lambda _p: calls.append("unused") or 0.9)
    Engine().evaluate(
        PAYLOAD, [_override(_rule(used)), _override(_rule(used, "gt", 0.2)), _override(_rule(used))]
    )
    assert calls == ["used"]


def test_result_details(high: str) -> None:
    response = Engine().evaluate(PAYLOAD, [_override(_rule(high), description="d")], metadata={"user": "u1"})
    rule = response.ruleset_results[0].rule_results[0]
    assert (rule.metric, rule.operator, rule.target_value, rule.value, rule.status) == (
        high,
        "gt",
        0.5,
        0.9,
        ExecutionStatus.triggered,
    )
    assert rule.execution_time is not None and rule.execution_time >= 0
    assert response.metric_results[high].status == "success"
    assert response.metadata == {"user": "u1"}
    assert response.ruleset_results[0].description == "d"
    assert response.trace_metadata.execution_time >= 0
    assert response.triggered_rules == [rule]


def test_missing_payload_field_does_not_trigger_and_says_why(metric: Callable[..., str]) -> None:
    needs_context = metric("needs_context", lambda _p: 0.0, required_fields=["context"])
    response = Engine().evaluate(
        PAYLOAD, [_override(_rule(needs_context, "lt", 0.5))], fail_policy=FailPolicy.fail_closed
    )
    assert response.status is ExecutionStatus.not_triggered
    assert response.ruleset_results[0].rule_results[0].status is ExecutionStatus.skipped
    result = response.metric_results[needs_context]
    assert result.status == "failed" and "no context" in (result.error_message or "")
    assert response.failure is None


def test_builtin_metric_needing_context_is_skipped_without_context() -> None:
    response = Engine().evaluate(Payload(output="x"), [_override(_rule("context_adherence", "lt", 0.1))])
    assert response.metric_results["context_adherence"].status == "failed"
    assert response.status is ExecutionStatus.not_triggered


def _boom(_payload: Payload) -> float:
    raise RuntimeError("scorer exploded")


def test_scorer_error_fail_open(metric: Callable[..., str]) -> None:
    broken = metric("broken", _boom)
    response = Engine().evaluate(PAYLOAD, [_override(_rule(broken))])
    assert response.status is ExecutionStatus.error
    assert response.text == "the answer"
    assert response.metric_results[broken].status == "error"
    assert "scorer exploded" in (response.metric_results[broken].error_message or "")
    assert response.failure is not None and response.failure.policy is FailPolicy.fail_open
    assert response.failure.metrics == [broken]


def test_scorer_error_fail_closed_uses_first_override(metric: Callable[..., str], low: str) -> None:
    broken = metric("broken", _boom)
    rulesets = [
        Ruleset(rules=[_rule(low)]),  # passthrough, not triggered
        Ruleset(rules=[_rule(broken)]),  # errors
        _override(_rule(low), text="first override"),
    ]
    response = Engine().evaluate(PAYLOAD, rulesets, fail_policy=FailPolicy.fail_closed)
    assert response.status is ExecutionStatus.triggered
    assert response.text == "first override" and response.action_result.type == "OVERRIDE"
    assert response.failure is not None and response.failure.policy is FailPolicy.fail_closed


def test_fail_closed_without_any_override_uses_default_message(metric: Callable[..., str]) -> None:
    broken = metric("broken", _boom)
    engine = Engine(fail_closed_message="checks unavailable")
    response = engine.evaluate(PAYLOAD, [Ruleset(rules=[_rule(broken)])], fail_policy=FailPolicy.fail_closed)
    assert response.text == "checks unavailable"


def test_a_not_triggered_rule_decides_the_and_even_if_another_errors(
    metric: Callable[..., str], low: str
) -> None:
    broken = metric("broken", _boom)
    response = Engine().evaluate(
        PAYLOAD, [_override(_rule(broken), _rule(low))], fail_policy=FailPolicy.fail_closed
    )
    assert response.ruleset_results[0].status is ExecutionStatus.not_triggered
    assert response.status is ExecutionStatus.not_triggered
    assert response.text == "the answer"


def test_triggered_ruleset_before_failed_one_wins(metric: Callable[..., str], high: str) -> None:
    broken = metric("broken", _boom)
    rulesets = [_override(_rule(high), text="real"), _override(_rule(broken), text="other")]
    response = Engine().evaluate(PAYLOAD, rulesets, fail_policy=FailPolicy.fail_closed)
    assert response.text == "real"


def test_blocking_scorer_times_out_within_budget(metric: Callable[..., str], high: str) -> None:
    slow = metric("slow", lambda _p: time.sleep(2) or 0.9, blocking=True)
    start = time.perf_counter()
    response = Engine().evaluate(PAYLOAD, [_override(_rule(slow)), Ruleset(rules=[_rule(high)])], timeout=0.2)
    assert time.perf_counter() - start < 1.0
    assert response.metric_results[slow].status == "timeout"
    assert response.ruleset_results[0].status is ExecutionStatus.timeout
    assert response.status is ExecutionStatus.triggered  # the passthrough ruleset still triggered
    assert response.text == "the answer"


def test_async_scorer_timeout_fail_open_and_closed(metric: Callable[..., str]) -> None:
    async def slow(_payload: Payload) -> float:
        await asyncio.sleep(2)
        return 0.9

    name = metric("aslow", slow)
    rulesets = [_override(_rule(name), text="blocked")]
    opened = Engine().evaluate(PAYLOAD, rulesets, timeout=0.1)
    assert opened.status is ExecutionStatus.timeout and opened.text == "the answer"
    closed = Engine().evaluate(PAYLOAD, rulesets, timeout=0.1, fail_policy=FailPolicy.fail_closed)
    assert closed.status is ExecutionStatus.triggered and closed.text == "blocked"


async def test_ainvoke_times_out_and_runs_scorers_concurrently(metric: Callable[..., str]) -> None:
    async def wait(_payload: Payload) -> float:
        await asyncio.sleep(0.3)
        return 0.9

    names = [metric(f"wait{i}", wait) for i in range(3)]
    start = time.perf_counter()
    response = await Engine().aevaluate(PAYLOAD, [_override(*[_rule(n) for n in names])])
    assert time.perf_counter() - start < 0.8  # three 0.3 s scorers ran concurrently
    assert response.status is ExecutionStatus.triggered
    timed_out = await Engine().aevaluate(PAYLOAD, [_override(_rule(names[0]))], timeout=0.05)
    assert timed_out.status is ExecutionStatus.timeout


def test_sync_invoke_runs_blocking_scorers_concurrently(metric: Callable[..., str]) -> None:
    barrier = threading.Barrier(2, timeout=2)

    def meet(_payload: Payload) -> float:
        barrier.wait()  # only passes if both scorers run at the same time
        return 0.9

    a, b = metric("meet_a", meet, blocking=True), metric("meet_b", meet, blocking=True)
    assert (
        Engine().evaluate(PAYLOAD, [_override(_rule(a), _rule(b))], timeout=5).status
        is ExecutionStatus.triggered
    )


def test_inline_scorer_overrunning_budget_counts_as_timeout(metric: Callable[..., str]) -> None:
    hog = metric("hog", lambda _p: time.sleep(0.15) or 0.9)
    response = Engine().evaluate(PAYLOAD, [_override(_rule(hog))], timeout=0.05)
    assert response.metric_results[hog].status == "timeout"
    assert response.status is ExecutionStatus.timeout


def test_shadow_mode_reports_but_changes_nothing(high: str) -> None:
    response = Engine().evaluate(PAYLOAD, [_override(_rule(high), text="blocked")], shadow=True)
    assert response.status is ExecutionStatus.triggered
    assert response.text == "the answer" and response.action_result.type == "PASSTHROUGH"
    assert response.shadow and response.shadow_action_result is not None
    assert response.shadow_action_result.value == "blocked"
    assert not response.applied


def test_redact_masks_the_spans_of_triggering_rules(metric: Callable[..., str]) -> None:
    text = "call me at 555-0100 or mail bob@example.com"

    def finder(payload: Payload) -> ScoreResult:
        spans = [
            Span(start=11, end=19, label="phone_number", field="output"),
            Span(start=28, end=43, label="email", field="output"),
        ]
        return ScoreResult(value=["email", "phone_number"], spans=spans)

    name = metric("finder", finder, kind="categories")
    ruleset = Ruleset(rules=[Rule(metric=name, operator="not_empty")], action=RedactAction())
    response = Engine().evaluate(Payload(output=text), [ruleset])
    assert response.text == "call me at <PHONE_NUMBER> or mail <EMAIL>"
    assert response.action_result.type == "REDACT" and response.applied


def test_unknown_metric_in_a_stored_rule_is_an_error_not_a_crash() -> None:
    rule = Rule.model_validate(
        {"metric": "gone", "operator": "gt", "target_value": 1}, context={"lenient_metrics": True}
    )
    response = Engine().evaluate(PAYLOAD, [_override(rule)])
    assert response.status is ExecutionStatus.error
    assert "unknown metric" in (response.metric_results["gone"].error_message or "")


async def test_async_custom_metric_in_sync_invoke_inside_running_loop(metric: Callable[..., str]) -> None:
    async def value(_payload: Payload) -> float:
        await asyncio.sleep(0)
        return 0.9

    name = metric("inloop", value)
    # a sync invoke from code that already runs an event loop (e.g. Jupyter) must still work
    response = await asyncio.to_thread(Engine().evaluate, PAYLOAD, [_override(_rule(name))])
    assert response.status is ExecutionStatus.triggered
    assert Engine().evaluate(PAYLOAD, [_override(_rule(name))]).status is ExecutionStatus.triggered


def test_redact_with_nothing_to_mask_is_not_applied(metric: Callable[..., str]) -> None:
    name = metric("nothing_found", lambda _p: ScoreResult(value=["email"], spans=[]), kind="categories")
    ruleset = Ruleset(rules=[Rule(metric=name, operator="not_empty")], action=RedactAction())
    response = Engine().evaluate(Payload(output="plain text"), [ruleset])
    assert response.triggered and response.action_result.type == "REDACT"
    assert response.text == "plain text" and not response.applied

"""Offline agent scorers: tool error rate, tool selection quality, action advancement and completion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stageguard.payload import Message, Payload, ToolCall, ToolSpec
from stageguard.scorers.agent import (
    ActionAdvancementScorer,
    ActionCompletionScorer,
    ToolErrorRateScorer,
    ToolSelectionQualityScorer,
    object_problems,
    split_goals,
)
from stageguard.scorers.registry import load_builtin_scorer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
THRESHOLDS = {"tool_selection_ok": 0.7, "advancement_ok": 0.5, "completion_ok": 0.75}

errors = ToolErrorRateScorer()
selection = ToolSelectionQualityScorer()
advancement = ActionAdvancementScorer()
completion = ActionCompletionScorer()

WEATHER = ToolSpec(
    name="get_weather",
    description="Get the current weather and forecast for a city.",
    parameters={
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
)
EMAIL = ToolSpec(
    name="send_email",
    description="Send an email message to a recipient.",
    parameters={
        "type": "object",
        "properties": {
            "to": {"type": "string", "format": "email"},
            "subject": {"type": "string"},
            "body": {"type": "string"},
        },
        "required": ["to", "subject", "body"],
        "additionalProperties": False,
    },
)
CANCEL = ToolSpec(
    name="cancel_order",
    description="Cancel a customer order that has not shipped yet.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
)
STATUS = ToolSpec(
    name="get_order_status",
    description="Look up the shipping status of a customer order.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
)


def _value(scorer: Any, payload: Payload) -> float:
    value = scorer.score(payload).value
    assert isinstance(value, float) and 0.0 <= value <= 1.0
    return value


# ----------------------------------------------------------------------------------- fixture set


def _transcripts() -> list[dict[str, Any]]:
    with (FIXTURES / "agent_transcripts.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


TRANSCRIPTS = _transcripts()


def test_fixture_set_covers_the_labels() -> None:
    assert len(TRANSCRIPTS) >= 30
    labels = {label for row in TRANSCRIPTS for label in row["labels"]}
    assert labels >= {
        "right_tool",
        "wrong_tool",
        "hallucinated_argument",
        "missing_required_argument",
        "failing_tool",
        "goal_reached",
        "goal_abandoned",
        "partial_completion",
    }


@pytest.mark.parametrize("row", TRANSCRIPTS, ids=[r["id"] for r in TRANSCRIPTS])
def test_transcript_matches_its_labels(row: dict[str, Any]) -> None:
    payload = Payload.model_validate(row["payload"])
    expected = row["expected"]
    assert _value(errors, payload) == pytest.approx(expected["tool_error_rate"])
    for key, scorer in (
        ("tool_selection_ok", selection),
        ("advancement_ok", advancement),
        ("completion_ok", completion),
    ):
        if expected[key] is None:
            continue
        result = scorer.score(payload)
        assert isinstance(result.value, float)
        assert (result.value >= THRESHOLDS[key]) is expected[key], (
            f"{key}: {result.value} {result.explanation}"
        )
        assert result.explanation


# ------------------------------------------------------------------------------------ tool errors


@pytest.mark.parametrize(
    "call",
    [
        ToolCall(name="t", error="boom"),
        ToolCall(name="t", status="error", result="no seats left"),
        ToolCall(name="t", result='Traceback (most recent call last):\n  File "x.py", line 1'),
        ToolCall(name="t", result="Error: invalid date"),
        ToolCall(name="t", result="ValueError: bad input"),
        ToolCall(name="t", result='{"error": "gateway timeout"}'),
        ToolCall(name="t", result="HTTP 503 Service Unavailable"),
        ToolCall(name="t", result="502 Bad Gateway"),
        ToolCall(name="t", result="psycopg.errors.QueryCanceled: statement timeout"),
        ToolCall(name="t", result="The request timed out after 30s"),
    ],
)
def test_failed_calls_are_detected(call: ToolCall) -> None:
    result = errors.score(Payload(tool_calls=[call]))
    assert result.value == 1.0 and "failed" in (result.explanation or "")


@pytest.mark.parametrize(
    "result",
    ['{"temp_c": 14, "error": null}', "No results found.", "The error rate fell to 2% in March.", "200 OK"],
)
def test_successful_results_are_not_errors(result: str) -> None:
    assert errors.score(Payload(tool_calls=[ToolCall(name="t", result=result)])).value == 0.0


def test_error_rate_is_a_share_and_reads_tool_messages() -> None:
    payload = Payload(
        tool_calls=[
            ToolCall(name="a", id="1"),
            ToolCall(name="b", id="2"),
            ToolCall(name="c", id="3", result="ok"),
        ],
        messages=[
            Message(role="user", content="hi"),
            Message(role="tool", content="HTTP 500", tool_call_id="1"),
            Message(role="tool", content="fine", tool_call_id="2"),
        ],
    )
    result = errors.score(payload)
    assert result.value == pytest.approx(1 / 3) and "a (" in (result.explanation or "")
    assert errors.score(Payload(input="no tools here")).value == 0.0


# --------------------------------------------------------------------------------- tool selection


def test_schema_checks() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1},
            "unit": {"enum": ["c", "f"]},
            "when": {"type": "string", "format": "date"},
            "code": {"type": "string", "pattern": "^[0-9]{5}$"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "where": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
        "required": ["n"],
        "additionalProperties": False,
    }
    assert object_problems({"n": 2, "unit": "c", "when": "2025-01-02", "code": "12345"}, schema) == []
    problems = object_problems(
        {"n": "2", "unit": "k", "when": "Jan 2", "code": "12", "tags": [1], "where": {}, "extra": 1}, schema
    )
    text = " | ".join(problems)
    for expected in (
        "n: expected integer",
        "not one of",
        "valid date",
        "does not match",
        "tags[0]",
        "missing required argument where.city",
        "unexpected argument extra",
    ):
        assert expected in text
    assert object_problems({}, schema) == ["missing required argument n"]


def _selection(user: str, *calls: ToolCall, tools: list[ToolSpec] | None = None) -> tuple[float, str]:
    payload = Payload(input=user, tools=tools or [WEATHER, EMAIL], tool_calls=list(calls))
    result = selection.score(payload)
    assert isinstance(result.value, float)
    return result.value, result.explanation or ""


def test_a_fitting_well_formed_grounded_call_scores_one() -> None:
    value, why = _selection(
        "What's the weather in Oslo?", ToolCall(name="get_weather", arguments={"location": "Oslo"})
    )
    assert value == 1.0 and "grounded" in why


@pytest.mark.parametrize(
    ("user", "call", "problem"),
    [
        (
            "Weather in Oslo?",
            ToolCall(name="get_forecast", arguments={"city": "Oslo"}),
            "not one of the available",
        ),
        (
            "Weather in Oslo?",
            ToolCall(name="get_weather", arguments={}),
            "missing required argument location",
        ),
        (
            "Weather in Oslo?",
            ToolCall(name="get_weather", arguments={"location": "Oslo", "unit": "K"}),
            "not one of",
        ),
        (
            "Weather in Oslo?",
            ToolCall(name="get_weather", arguments={"location": "Bergen"}),
            "invented value",
        ),
        (
            "Email Sarah the notes.",
            ToolCall(
                name="send_email", arguments={"to": "sarah@example.com", "subject": "Notes", "body": "Hi"}
            ),
            "sarah@example.com",
        ),
        (
            "What's the weather in Oslo?",
            ToolCall(name="send_email", arguments={"to": "a@b.co", "subject": "Oslo", "body": "weather?"}),
            "fits better",
        ),
    ],
)
def test_selection_problems_are_found_and_explained(user: str, call: ToolCall, problem: str) -> None:
    value, why = _selection(user, call)
    assert value < 0.7 and problem in why


def test_values_from_earlier_tool_results_are_grounded() -> None:
    lookup = ToolCall(name="get_order_status", arguments={"order_id": "55123"}, result='{"total": 89.5}')
    refund = ToolSpec(
        name="issue_refund",
        description="Refund a customer order.",
        parameters={
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
        },
    )
    ok = ToolCall(name="issue_refund", arguments={"order_id": "55123", "amount": 89.5})
    invented = ToolCall(name="issue_refund", arguments={"order_id": "55123", "amount": 120})
    assert _selection("Refund order 55123 please", lookup, ok, tools=[STATUS, refund])[0] == 1.0
    assert _selection("Refund order 55123 please", lookup, invented, tools=[STATUS, refund])[0] < 0.7


def test_destructive_action_the_user_did_not_ask_for() -> None:
    call = ToolCall(name="cancel_order", arguments={"order_id": "51992"})
    value, why = _selection("Has order 51992 shipped?", call, tools=[STATUS, CANCEL])
    assert value < 0.7 and "did not ask" in why
    assert _selection("Cancel order 51992", call, tools=[STATUS, CANCEL])[0] == 1.0


def test_relative_dates_and_times_are_grounded() -> None:
    calendar = ToolSpec(
        name="create_event",
        description="Create a calendar event.",
        parameters={
            "type": "object",
            "properties": {"start": {"type": "string"}, "title": {"type": "string"}},
        },
    )
    call = ToolCall(name="create_event", arguments={"title": "Sync", "start": "2025-03-14T15:00:00"})
    assert _selection("Add Sync to my calendar tomorrow at 3pm", call, tools=[calendar])[0] == 1.0
    assert _selection("Add Sync to my calendar on March 14 at 3pm", call, tools=[calendar])[0] == 1.0
    assert _selection("Add Sync to my calendar on April 2", call, tools=[calendar])[0] < 0.7


def test_repeating_a_successful_call_costs_a_little_retrying_a_failed_one_does_not() -> None:
    call = ToolCall(name="get_weather", arguments={"location": "Oslo"}, result="sunny")
    failed = ToolCall(name="get_weather", arguments={"location": "Oslo"}, result="HTTP 503")
    repeated, why = _selection("Weather in Oslo?", call, call)
    assert 0.7 < repeated < 1.0 and "repeated" in why
    assert _selection("Weather in Oslo?", failed, call)[0] == 1.0
    assert selection.score(Payload(input="hello")).value == 1.0


# ---------------------------------------------------------------------------------------- goals


def test_split_goals() -> None:
    goals = split_goals("Cancel order 558214 and email the confirmation to me. Thanks!")
    assert [g.text for g in goals] == ["Cancel order 558214", "email the confirmation to me."]
    assert len(split_goals("What's the weather in Paris and London?")) == 1
    two = split_goals(
        "I forgot my password, my username is jdoe42. Can you reset it? Also check my order 123."
    )
    assert [g.text for g in two] == ["Can you reset it?", "check my order 123."]


def _agent(
    user: str, output: str, *calls: ToolCall, tools: list[ToolSpec] | None = None
) -> tuple[float, float]:
    payload = Payload(input=user, output=output, tool_calls=list(calls), tools=tools or [WEATHER, EMAIL])
    return _value(advancement, payload), _value(completion, payload)


def test_goal_reached_with_a_fitting_tool() -> None:
    call = ToolCall(name="get_weather", arguments={"location": "Oslo"}, result='{"temp_c": -4}')
    assert _agent("How cold is it in Oslo?", "It's -4°C in Oslo.", call) == (1.0, 1.0)


def test_partial_completion() -> None:
    call = ToolCall(name="get_weather", arguments={"location": "Oslo"}, result='{"temp_c": -4}')
    adv, comp = _agent(
        "What's the weather in Oslo? Also email it to kim@acme.io.", "It's -4°C in Oslo.", call
    )
    assert adv == 1.0 and comp == 0.5


@pytest.mark.parametrize(
    ("output", "calls"),
    [
        ("I'm sorry, I can't check the weather.", []),
        ("I'll look that up for you shortly.", []),
        (
            "It's sunny in Oslo!",
            [ToolCall(name="get_weather", arguments={"location": "Oslo"}, result="HTTP 500")],
        ),
        (
            "It's sunny in Bergen.",
            [ToolCall(name="get_weather", arguments={"location": "Bergen"}, result="sunny")],
        ),
    ],
    ids=["refusal", "promise", "claims-success-after-failure", "wrong-city"],
)
def test_no_progress(output: str, calls: list[ToolCall]) -> None:
    assert _agent("What's the weather in Oslo?", output, *calls) == (0.0, 0.0)


def test_clarifying_question_is_progress_but_not_completion() -> None:
    adv, comp = _agent("Email the notes to my manager.", "What is your manager's email address?")
    assert adv == 0.5 and comp == 0.0


def test_question_answered_without_tools() -> None:
    assert _agent("What is the capital of Norway?", "The capital of Norway is Oslo.") == (1.0, 1.0)


def test_output_falls_back_to_the_last_assistant_message() -> None:
    payload = Payload(
        messages=[
            Message(role="user", content="What is the capital of Norway?"),
            Message(role="assistant", content="The capital of Norway is Oslo."),
        ]
    )
    assert _value(completion, payload) == 1.0
    assert "goal" in (completion.score(payload).explanation or "")


# ----------------------------------------------------------------------------------------- wiring


@pytest.mark.parametrize(
    ("metric", "cls"),
    [
        ("tool_error_rate", ToolErrorRateScorer),
        ("tool_selection_quality", ToolSelectionQualityScorer),
        ("action_advancement", ActionAdvancementScorer),
        ("action_completion", ActionCompletionScorer),
    ],
)
def test_registry_builds_the_agent_scorers(metric: str, cls: type) -> None:
    scorer = load_builtin_scorer(metric)
    assert isinstance(scorer, cls) and scorer.mode == "inline"

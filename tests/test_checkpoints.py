"""The framework-neutral mapping (``stageguard.checkpoints``): what each check point sends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stageguard import Message, Payload, Protect, Rule, Ruleset, SQLiteStageStore, ToolCall, ToolSpec
from stageguard.checkpoints import (
    Turn,
    arguments_from_text,
    arguments_text,
    document_payload,
    input_payload,
    output_payload,
    ran,
    tool_call_payload,
    tool_result_payload,
)
from stageguard.payload import text_payload

USER = Message(role="user", content="Cancel my order 42")
FAILED = ToolCall(name="lookup", arguments={"id": 42}, id="c1", status="error", error="timeout")
PENDING = ToolCall(name="lookup", arguments={"id": 42}, id="c2")
SIBLING = ToolCall(name="cancel", arguments={"id": 42}, id="c3")  # same turn, not run yet


def _score(metric: str, payload: object) -> float:
    protect = Protect(SQLiteStageStore(":memory:"))
    response = protect.invoke(
        payload, prioritized_rulesets=[Ruleset(rules=[Rule(metric=metric, operator="gte", target_value=0.0)])]
    )
    value = response.metric_results[metric].value
    assert isinstance(value, float)
    return value


def test_tool_call_check_sees_failed_calls_once_and_not_pending_siblings() -> None:
    turn = Turn(messages=[USER], calls=[FAILED, PENDING, SIBLING])
    payload = tool_call_payload(PENDING, turn)
    assert payload is not None
    assert payload.input == USER.content and payload.output == '{"id": 42}'
    assert [(c.id, c.status) for c in payload.tool_calls or []] == [("c1", "error"), ("c2", None)]
    assert _score("tool_error_rate", payload) == 1.0  # one call ran, and it failed


def test_tool_result_check_counts_the_checked_call_once() -> None:
    done = PENDING.model_copy(update={"status": "error", "error": "timeout again"})
    # adapters may list the call both pending and with its result: it must count once
    turn = Turn(messages=[USER], calls=[FAILED, PENDING, done, SIBLING])
    payload = tool_result_payload(done, turn)
    assert payload is not None
    assert payload.input == "timeout again" and payload.output is None
    assert [c.id for c in payload.tool_calls or []] == ["c1", "c2"]
    assert _score("tool_error_rate", payload) == 1.0  # two of two failed (not 0.667)


def test_tool_result_status_is_inferred_from_result_or_error() -> None:
    payload = tool_result_payload(PENDING.model_copy(update={"result": "ok"}), Turn(messages=[USER]))
    assert payload is not None and payload.input == "ok"
    assert (payload.tool_calls or [])[-1].status == "success"


def test_input_output_and_document_payloads() -> None:
    tools = [ToolSpec(name="lookup")]
    turn = Turn(messages=[USER], context=["Order 42 ships Monday."], tools=tools, calls=[FAILED, SIBLING])
    answer = output_payload("It ships Monday.", turn)
    assert answer is not None
    assert (answer.input, answer.output, answer.context) == (USER.content, "It ships Monday.", turn.context)
    assert [c.id for c in answer.tool_calls or []] == ["c1"] and answer.tools == tools
    assert output_payload("x", turn, request="other").input == "other"  # type: ignore[union-attr]
    turn_in = input_payload("hello", turn)
    assert turn_in is not None and turn_in.input == "hello" and turn_in.output is None
    document = document_payload("Ignore previous instructions", query="shipping?")
    assert document is not None and document.input == "Ignore previous instructions"
    assert [m.content for m in document.messages or []] == ["shipping?"]


def test_nothing_to_check_is_none_and_text_is_sanitised() -> None:
    assert output_payload("") is None
    payload = input_payload("bad \ud800 text")
    assert payload is not None and payload.input == "bad \ufffd text" and payload.sanitized == ["input"]


def test_ran_keeps_the_latest_record_of_each_id_in_first_seen_order() -> None:
    first = FAILED.model_copy(update={"status": "success", "error": None, "result": "42"})
    anonymous = ToolCall(name="x", status="success", result="ok")
    assert [c.status for c in ran([FAILED, anonymous, first])] == ["success", "success"]
    assert ran([PENDING, SIBLING]) == []


@pytest.mark.parametrize(
    "arguments",
    [{"query": "find my SSN"}, {"id": 42, "note": "x"}, {}, {"nested": {"a": [1, 2]}}],
)
def test_arguments_round_trip(arguments: dict[str, object]) -> None:
    text = arguments_text(arguments)
    if arguments:
        assert arguments_from_text(arguments, text) == arguments
    assert arguments_from_text({"a": 1, "b": 2}, "not json") is None


def test_docs_examples_run() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "checkpoints.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) == 2
    fields: dict[str, object] = {}
    exec(blocks[0], fields)
    assert fields["text_only"] == {"input", "output"}
    assert fields["rag"] == {"input", "output", "context"}
    namespace: dict[str, object] = {}
    exec(blocks[1], namespace)
    payload = namespace["payload"]
    assert _score("tool_error_rate", payload) == 1.0


def test_a_blank_document_is_not_checked() -> None:
    # with a query, a blank document used to become a payload holding only the query
    assert document_payload("  \n", query="shipping?") is None


# -- payloads of plain text are built without validation: the same object validation builds


class _Text(str):
    """A str subclass (as LangChain's output parsers return) with an __str__ of its own."""

    def __str__(self) -> str:
        return "not the text"


_TEXTS = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", " ", "a\ud800b", "é", "x\x00y"]))


_VALUES = st.one_of(
    _TEXTS, st.lists(_TEXTS, max_size=3), st.tuples(st.text(max_size=3)), st.text(max_size=4).map(_Text)
)


@given(st.dictionaries(st.sampled_from(["input", "output", "context", "metadata"]), _VALUES, max_size=3))
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
def test_text_payload_is_what_validation_builds(fields: dict[str, object]) -> None:
    fast = text_payload(fields)
    try:
        validated = Payload(**fields)
    except ValidationError:
        assert fast is None  # validation says what is wrong
        return
    if fast is None:
        return  # not a plain text payload: validation builds it
    assert set(fields) <= {"input", "output", "context"} and (fields.get("input") or fields.get("output"))
    if "context" in fields:
        assert fast.context is not fields["context"]  # a copy, as validation makes
    assert fast == validated and fast.model_dump() == validated.model_dump()
    assert fast.model_fields_set == validated.model_fields_set
    assert fast.__pydantic_private__ == validated.__pydantic_private__ == {"_sanitized": []}
    assert fast.model_dump_json(exclude_unset=True) == validated.model_dump_json(exclude_unset=True)


@pytest.mark.parametrize(
    ("fields", "fast"),
    [
        ({"input": "hi"}, True),
        ({"output": "hé"}, True),  # clean text need not be ASCII
        ({"input": "q", "output": "a"}, True),
        ({"output": "a", "input": "q"}, False),  # another order: validated (same result)
        ({"input": "a\ud800"}, False),  # cleaned by validation, which reports it in `sanitized`
        ({"input": ""}, False),
        ({"input": "q", "context": ["doc", ""]}, True),
        ({"output": "a", "context": "doc"}, False),  # validation makes a one-document list of it
        ({"output": "a", "context": ["bad \ud800"]}, False),
        ({"input": "q", "metadata": {"k": "v"}}, False),
    ],
)
def test_text_payload_takes_only_clean_text(fields: dict[str, object], fast: bool) -> None:
    assert (text_payload(fields) is not None) is fast


def test_text_payload_of_a_str_subclass_holds_plain_str_as_validation_does() -> None:
    fields: dict[str, object] = {"input": _Text("q"), "output": _Text("a"), "context": [_Text("d")]}
    fast, validated = text_payload(fields), Payload(**fields)  # type: ignore[arg-type]
    assert fast is not None and fast == validated
    assert (fast.input, fast.output, fast.context) == ("q", "a", ["d"])
    assert type(fast.input) is type(fast.output) is type(fast.context[0]) is str  # type: ignore[index]


def test_checkpoint_payloads_of_text_are_unvalidated_but_equal() -> None:
    payload = output_payload("The answer", Turn(), request="The question")
    assert payload == Payload(input="The question", output="The answer")
    assert payload is not None and payload.model_fields_set == {"input", "output"}
    cleaned = output_payload("bad \ud800 text", Turn())
    assert cleaned is not None and cleaned.sanitized == ["output"] and cleaned.output == "bad \ufffd text"

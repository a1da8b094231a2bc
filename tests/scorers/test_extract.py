"""Metrics from input and output: context read from the prompt, tool calls from a serialised transcript."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stageguard import (
    Engine,
    ExecutionStatus,
    OverrideAction,
    Payload,
    Protect,
    Rule,
    Ruleset,
    SQLiteStageStore,
    ToolCall,
)
from stageguard.metrics import get_metric
from stageguard.scorers._extract import (
    EXTRACT_LIMIT,
    context_from_input,
    transcript_from_json,
    transcript_from_text,
)
from stageguard.scorers.agent import (
    ActionAdvancementScorer,
    ActionCompletionScorer,
    ToolErrorRateScorer,
    ToolSelectionQualityScorer,
)
from stageguard.scorers.rag import CompletenessScorer, ContextAdherenceScorer

EIFFEL = "The Eiffel Tower is 330 metres tall. It was completed in 1889 for the World's Fair in Paris."
QUESTION = "How tall is the Eiffel Tower?"

# ------------------------------------------------------------------------------------------ context layouts

LAYOUTS: list[tuple[str, str, list[str], str, str]] = [
    # (id, input, documents, question, source contains)
    (
        "context-tag",
        f"Answer from the context only.\n<context>\n{EIFFEL}\n</context>\nQuestion: {QUESTION}",
        [EIFFEL],
        QUESTION,
        "<context> section",
    ),
    (
        "documents-tags",
        "<documents>\n<document index='1'>Doc one.</document>\n<document index='2'>Doc two.</document>\n"
        f"</documents>\n{QUESTION}",
        ["Doc one.", "Doc two."],
        QUESTION,
        "<documents> section",
    ),
    (
        "doc-id-tags",
        f'<doc id="a">Alpha text.</doc>\n<doc id="b">Beta text.</doc>\n<question>{QUESTION}</question>',
        ["Alpha text.", "Beta text."],
        QUESTION,
        "<doc> sections",
    ),
    (
        "context-section",
        f"Context:\n{EIFFEL}\n\nQuestion: {QUESTION}\nAnswer:",
        [EIFFEL],
        QUESTION,
        '"Context:" section',
    ),
    (
        "inline-context-section",  # LangChain hub's rlm/rag-prompt: the question comes first
        f"You are an assistant. Question: {QUESTION} \nContext: {EIFFEL} \nAnswer:",
        [EIFFEL],
        QUESTION,
        '"Context:" section',
    ),
    (
        "sources-markdown",
        f"## Sources\nAlpha.\nBeta.\n## Question\n{QUESTION}",
        ["Alpha.\nBeta."],
        QUESTION,
        '"Sources:" section',
    ),
    (
        "background-section",
        f"Background: {EIFFEL}\n\n{QUESTION}",
        [EIFFEL],
        QUESTION,
        '"Background:" section',
    ),
    (
        "documents-numbered",
        f"Documents:\n[1] Alpha is first.\n[2] Beta is second.\n\n{QUESTION}",
        ["Alpha is first.", "Beta is second."],
        QUESTION,
        '"Documents:" section',
    ),
    (
        "llama-index",
        f"Context information is below.\n---------------------\n{EIFFEL}\n---------------------\n"
        "Given the context information and not prior knowledge, answer the query.\n"
        f"Query: {QUESTION}\nAnswer: ",
        [EIFFEL],
        QUESTION,
        '"Context information is below." section',
    ),
    (
        "bracket-numbers",
        f"[1] Alpha is first.\n[2] Beta is second.\n\n{QUESTION}",
        ["Alpha is first.", "Beta is second."],
        QUESTION,
        "numbered passages (2)",
    ),
    (
        "document-n",
        f"Document 1: Alpha.\nDocument 2 (wiki): Beta.\nQ: {QUESTION}",
        ["Alpha.", "Beta."],
        QUESTION,
        "numbered passages (2)",
    ),
    (
        "json-strings",
        json.dumps(["Alpha.", "Beta."]),
        ["Alpha.", "Beta."],
        "",
        "JSON list of documents",
    ),
    (
        "json-objects",
        json.dumps([{"page_content": "Alpha.", "metadata": {}}, {"text": "Beta."}, {"content": "Gamma."}]),
        ["Alpha.", "Beta.", "Gamma."],
        "",
        "JSON list of documents",
    ),
    (
        "json-object",
        json.dumps({"documents": [{"text": EIFFEL}], "question": QUESTION}),
        [EIFFEL],
        QUESTION,
        "JSON 'documents' field",
    ),
    (
        "section-json-list",
        f"Sources:\n{json.dumps([{'content': 'Alpha.'}, {'content': 'Beta.'}])}\nQuestion: {QUESTION}",
        ["Alpha.", "Beta."],
        QUESTION,
        '"Sources:" section',
    ),
    (
        "chat-messages",
        json.dumps(
            [
                {"role": "system", "content": f"Use this context:\n<context>{EIFFEL}</context>"},
                {"role": "user", "content": QUESTION},
            ]
        ),
        [EIFFEL],
        QUESTION,
        "chat messages' <context> section",
    ),
    (
        "whole-input-with-question",
        f"{EIFFEL}\n{QUESTION}",
        [EIFFEL],
        QUESTION,
        "whole input, less its question",
    ),
    (
        "whole-input",
        "Just some text. Context matters here.",
        ["Just some text. Context matters here."],
        "",
        "whole input (no context layout recognised)",
    ),
]


@pytest.mark.parametrize(
    ("text", "documents", "question", "source"),
    [pytest.param(*case[1:], id=case[0]) for case in LAYOUTS],
)
def test_context_layouts(text: str, documents: list[str], question: str, source: str) -> None:
    found = context_from_input(text)
    assert list(found.documents) == documents
    assert found.question == question
    assert source in found.source


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "{not json",
        "[1, 2, 3]",
        '{"a": {"b": [null, true]}}',
        "<context>never closed " * 2_000,
        "</context><context>",
        "[" * 50_000,
        "\ud800 lone <context>x\udfff</context>",
        "Context:",
        "##\n::\n[]\n<>\x00",
        "\ud83d" * 1000,
    ],
)
def test_garbage_gives_the_whole_input_never_an_exception(text: str) -> None:
    found = context_from_input(text)
    assert found.documents and found.source
    for part in (*found.documents, found.question):  # lone surrogates replaced: UTF-8 can encode them
        part.encode("utf-8")


def test_huge_input_is_bounded() -> None:
    text = ("Context:\n" + EIFFEL + "\n") * 100_000  # ~10 MB
    start = time.perf_counter()
    found = context_from_input(text)
    assert time.perf_counter() - start < 5.0
    assert found.truncated and sum(map(len, found.documents)) <= EXTRACT_LIMIT
    scored = ContextAdherenceScorer().score(Payload(input=text, output="It is 330 metres tall."))
    assert "read in its first" in (scored.explanation or "")


def test_many_unclosed_tags_are_linear() -> None:
    text = "<document>" * 40_000 + "</doc>" * 40_000
    start = time.perf_counter()
    context_from_input(text)
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------------------------------ transcripts

OPENAI: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a travel agent."},
    {"role": "user", "content": "What's the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "Error: weather service unavailable (HTTP 503)"},
]
LANGCHAIN = [
    {"type": "human", "content": "Book a table for two"},
    {
        "type": "ai",
        "content": "",
        "tool_calls": [{"name": "book", "args": {"people": 2}, "id": "t1", "type": "tool_call"}],
    },
    {"type": "tool", "content": "no tables left", "tool_call_id": "t1", "status": "error"},
    {"type": "ai", "content": "Sorry, no tables are left."},
]
LANGCHAIN_DICT = [  # messages_to_dict
    {"type": "human", "data": {"content": "Book a table"}},
    {"type": "ai", "data": {"content": "", "tool_calls": [{"name": "book", "args": {}, "id": "t1"}]}},
    {"type": "tool", "data": {"content": "booked", "tool_call_id": "t1"}},
]
LANGCHAIN_DUMPD = [
    {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", "HumanMessage"],
        "kwargs": {"content": "hi"},
    },
    {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", "AIMessage"],
        "kwargs": {"content": "", "tool_calls": [{"name": "f", "args": {"a": 1}, "id": "x"}]},
    },
    {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", "ToolMessage"],
        "kwargs": {"content": "done", "tool_call_id": "x"},
    },
]
PLAIN = [
    {"name": "search", "arguments": {"q": "paris"}, "result": "Paris is in France"},
    {"name": "lookup", "arguments": {"id": 3}, "error": "not found"},
]


@pytest.mark.parametrize(
    ("value", "fmt", "calls"),
    [
        (OPENAI, "OpenAI message list", [("get_weather", {"city": "Paris"}, "Error: weather service", None)]),
        ({"messages": OPENAI}, "OpenAI message list", [("get_weather", {"city": "Paris"}, "Error:", None)]),
        (LANGCHAIN, "LangChain message list", [("book", {"people": 2}, "no tables left", "error")]),
        (LANGCHAIN_DICT, "LangChain message list", [("book", {}, "booked", None)]),
        (LANGCHAIN_DUMPD, "LangChain message list", [("f", {"a": 1}, "done", None)]),
        (
            PLAIN,
            "JSON list of tool calls",
            [("search", {"q": "paris"}, "Paris", None), ("lookup", {"id": 3}, None, None)],
        ),
        (
            [{"id": "c", "type": "function", "function": {"name": "h", "arguments": "not json"}}],
            "JSON list of tool calls",
            [("h", {}, None, None)],
        ),
        (
            {"choices": [{"message": {"role": "assistant", "tool_calls": OPENAI[2]["tool_calls"]}}]},
            "OpenAI message list",
            [("get_weather", {"city": "Paris"}, None, None)],
        ),
    ],
)
def test_transcript_formats(
    value: Any, fmt: str, calls: list[tuple[str, dict[str, Any], str | None, str | None]]
) -> None:
    found = transcript_from_text(json.dumps(value))
    assert found is not None and found.format == fmt
    assert [(c.name, c.arguments, c.status) for c in found.calls] == [(n, a, s) for n, a, _, s in calls]
    for call, (_, _, result, _) in zip(found.calls, calls, strict=True):
        assert (call.result or "").startswith(result or "")
    assert transcript_from_json(value) is not None


@pytest.mark.parametrize(
    "text",
    ["", "plain text", "[1, 2]", '{"a": 1}', "[" * 100_000, '[{"role": "alien"}]', '"\\ud800"', "[{}]"],
)
def test_no_transcript_is_none(text: str) -> None:
    assert transcript_from_text(text) is None


def test_transcript_lone_surrogates_are_replaced() -> None:
    found = transcript_from_text('[{"name": "f\\ud800", "arguments": {}, "result": "\\udfff ok"}]')
    assert found is not None
    assert found.calls[0].name == "f\ufffd" and found.calls[0].result == "\ufffd ok"


def test_huge_transcript_is_bounded() -> None:
    calls = [
        {"name": f"t{i}", "arguments": {"i": i}, "result": "ok" if i % 2 else "Error: x"}
        for i in range(5_000)
    ]
    payload = Payload(input="do it", output=json.dumps(calls))
    start = time.perf_counter()
    for scorer in (ToolErrorRateScorer(), ToolSelectionQualityScorer(), ActionCompletionScorer()):
        scorer.score(payload)
    assert time.perf_counter() - start < 10.0
    result = ToolErrorRateScorer().score(payload)
    assert result.value == 0.5 and "the output's JSON list of tool calls" in (result.explanation or "")


# ------------------------------------------------------------------------------------------ scorers


def test_explicit_context_is_preferred() -> None:
    prompt = f"<context>The tower is 200 metres tall.</context>\nQuestion: {QUESTION}"
    payload = Payload(input=prompt, output="The Eiffel Tower is 330 metres tall.", context=[EIFFEL])
    result = ContextAdherenceScorer().score(payload)
    assert isinstance(result.value, float) and result.value > 0.5
    assert "context:" not in (result.explanation or "")


def test_explicit_tool_calls_are_preferred() -> None:
    payload = Payload(
        input=json.dumps(OPENAI), output="ok", tool_calls=[ToolCall(name="get_weather", result="sunny")]
    )
    result = ToolErrorRateScorer().score(payload)
    assert result.value == 0.0 and "tool calls:" not in (result.explanation or "")


def test_rag_metrics_say_where_the_context_came_from() -> None:
    prompt = f"Context:\n{EIFFEL}\n\nQuestion: {QUESTION}"
    grounded = Payload(input=prompt, output="It is 330 metres tall.")
    for scorer in (ContextAdherenceScorer(), CompletenessScorer()):
        result = scorer.score(grounded)
        assert '(context: from the input\'s "Context:" section)' in (result.explanation or "")
    for scorer in (ContextAdherenceScorer(), CompletenessScorer()):
        value = scorer.score(grounded).value
        assert isinstance(value, float) and value > 0.5


def test_agent_metrics_read_the_transcript_in_input_and_output() -> None:
    payload = Payload(input="Book a table for two", output=json.dumps(LANGCHAIN))
    errors = ToolErrorRateScorer().score(payload)
    assert errors.value == 1.0 and "(tool calls: from the output's LangChain message list)" in (
        errors.explanation or ""
    )
    for scorer in (ToolSelectionQualityScorer(), ActionAdvancementScorer(), ActionCompletionScorer()):
        assert "tool calls: from the output's" in (scorer.score(payload).explanation or "")
    both = Payload(
        input=json.dumps(OPENAI), output=json.dumps([*OPENAI, {"role": "assistant", "content": "Sorry."}])
    )
    result = ToolErrorRateScorer().score(both)
    assert result.value == 1.0 and "1 of 1" in (result.explanation or "")  # the repeated call counted once
    assert "the input's OpenAI message list and the output's OpenAI message list" in (
        result.explanation or ""
    )
    plain_chat = Payload(input=json.dumps(OPENAI[:2]), output="Let me check.")
    assert "tool calls: none in the input's" in (ToolErrorRateScorer().score(plain_chat).explanation or "")


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture
def protect() -> Iterator[Protect]:
    instance = Protect(SQLiteStageStore(":memory:"))
    yield instance
    instance.close()


def _stage(protect: Protect, name: str, metric: str, operator: str, target: float) -> None:
    ruleset = Ruleset(
        rules=[Rule(metric=metric, operator=operator, target_value=target)],
        action=OverrideAction(choices=["blocked"]),
    )
    protect.create_stage(name, stage_type="central", prioritized_rulesets=[ruleset])


RAG_PROMPT = "You are a helpful assistant. Answer from the context only.\n\n" + (
    f"<context>\n{EIFFEL}\n</context>\n\n{QUESTION}"
)


def test_protect_context_adherence_on_input_and_output_only(protect: Protect) -> None:
    _stage(protect, "rag", "context_adherence", "lt", 0.1)
    bad = protect.invoke(
        {"input": RAG_PROMPT, "output": "The Eiffel Tower is 540 metres tall and stands in Berlin."},
        stage_name="rag",
    )
    assert bad.status is ExecutionStatus.triggered and bad.text == "blocked"
    explanation = bad.metric_results["context_adherence"].explanation or ""
    assert "context: from the input's <context> section" in explanation
    good = protect.invoke({"input": RAG_PROMPT, "output": "It is 330 metres tall."}, stage_name="rag")
    assert good.status is ExecutionStatus.not_triggered
    assert good.metric_results["context_adherence"].status == "success"


def test_protect_tool_error_rate_on_openai_transcript(protect: Protect) -> None:
    _stage(protect, "agent", "tool_error_rate", "gt", 0.5)
    failing = protect.invoke({"input": json.dumps(OPENAI), "output": "Sorry, try later."}, stage_name="agent")
    assert failing.status is ExecutionStatus.triggered
    explanation = failing.metric_results["tool_error_rate"].explanation or ""
    assert "tool calls: from the input's OpenAI message list" in explanation
    fine = [*OPENAI[:3], {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"}]
    ok = protect.invoke({"input": json.dumps(fine), "output": "Sunny, 21 C."}, stage_name="agent")
    assert ok.status is ExecutionStatus.not_triggered
    assert ok.metric_results["tool_error_rate"].value == 0.0


@pytest.mark.parametrize(
    "metric",
    [
        "completeness",
        "context_adherence",
        "tool_error_rate",
        "tool_selection_quality",
        "action_advancement",
        "action_completion",
    ],
)
def test_seed_metrics_evaluate_on_input_and_output_alone(metric: str) -> None:
    """Before: completeness, context_adherence, tool_error_rate and tool_selection_quality were FAILED
    ("skipped: the payload has no context"/"tool_calls") on a payload with only input and output."""
    assert get_metric(metric).required_fields == ("input", "output")
    text = RAG_PROMPT if metric in ("completeness", "context_adherence") else json.dumps(OPENAI)
    ruleset = Ruleset(rules=[Rule(metric=metric, operator="gte", target_value=0.0)])
    response = Engine().evaluate(Payload(input=text, output="It is 330 metres tall."), [ruleset])
    result = response.metric_results[metric]
    assert result.status == "success", result.error_message
    assert response.ruleset_results[0].rule_results[0].status is ExecutionStatus.triggered


def test_explicit_fields_alone_still_suffice() -> None:
    calls_only = Payload(tool_calls=[ToolCall(name="f", error="boom")])
    context_only = Payload(output="It is 330 metres tall.", context=[EIFFEL])
    for payload, metric in ((calls_only, "tool_error_rate"), (context_only, "context_adherence")):
        response = Engine().evaluate(
            payload, [Ruleset(rules=[Rule(metric=metric, operator="gte", target_value=0.0)])]
        )
        assert response.metric_results[metric].status == "success"
    assert get_metric("tool_error_rate").missing(lambda f: f == "output") == ["input"]

"""Nothing unchecked passes a Guard: tool-call arguments, earlier human messages, nested history lists."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from stageguard import Protect
from stageguard.langchain import Guard, GuardrailTriggered

PROMPT = ChatPromptTemplate.from_messages([("system", "be nice"), ("human", "{q}")])
HISTORY_PROMPT = ChatPromptTemplate.from_messages(
    [("system", "be nice"), MessagesPlaceholder("history"), ("human", "{q}")]
)


def call(args: dict[str, Any], name: str = "send_email", id: str = "c1") -> dict[str, Any]:
    return {"name": name, "args": args, "id": id, "type": "tool_call"}


# -- tool-call-only answers: the arguments are checked


def test_tool_call_only_answer_is_checked_and_blocked(protect: Protect, rules: Any, chat: Any) -> None:
    answer = AIMessage(content="", tool_calls=[call({"to": "bob", "body": "the secret plan"})], id="m1")
    guard = Guard(prioritized_rulesets=rules.block("NO"), field="output", protect=protect)
    out = (PROMPT | chat(answer) | guard).invoke({"q": "mail bob"})
    assert isinstance(out, AIMessage) and out.content == "NO" and out.id == "m1"
    assert out.tool_calls == [] and out.invalid_tool_calls == []


def test_tool_call_payload_uses_the_core_mapping(protect: Protect, rules: Any, recorder: list[Any]) -> None:
    done = AIMessage(content="", tool_calls=[call({"q": "weather"}, name="search", id="c0")])
    conversation = [
        HumanMessage("mail bob the weather"),
        done,
        ToolMessage("sunny", tool_call_id="c0", name="search"),
        AIMessage(content="", tool_calls=[call({"to": "bob", "body": "sunny"})]),
    ]
    guard = Guard(prioritized_rulesets=rules.record, field="output", protect=protect)
    assert guard.invoke(conversation) is conversation
    [payload] = recorder
    assert payload.input == "mail bob the weather"  # the user's request
    assert json.loads(payload.output) == {"to": "bob", "body": "sunny"}
    assert [(c.name, c.status) for c in payload.tool_calls] == [("search", "success"), ("send_email", None)]
    assert [m.role for m in payload.messages] == ["user", "assistant", "tool"]


def test_tool_call_redaction_rewrites_the_arguments(protect: Protect, rules: Any) -> None:
    answer = AIMessage(
        content="sending",
        tool_calls=[call({"body": "my secret"}), call({"to": "x", "body": "a secret"}, id="c2")],
    )
    out = Guard(prioritized_rulesets=rules.mask(), field="output", protect=protect).invoke(answer)
    assert out.content == "sending"
    assert [c["args"] for c in out.tool_calls] == [
        {"body": "my <SECRET>"},
        {"to": "x", "body": "a <SECRET>"},
    ]
    assert [c["id"] for c in out.tool_calls] == ["c1", "c2"]


def test_streamed_tool_call_chunks_are_checked(protect: Protect, rules: Any) -> None:
    chunks = [
        AIMessageChunk(
            content="",
            tool_call_chunks=[tool_call_chunk(name="send_email", args='{"body": "my ', id="c1", index=0)],
        ),
        AIMessageChunk(content="", tool_call_chunks=[tool_call_chunk(args='secret"}', index=0)]),
    ]
    masked = list(
        Guard(prioritized_rulesets=rules.mask(), field="output", protect=protect).transform(iter(chunks))
    )
    [out] = masked
    assert isinstance(out, AIMessageChunk) and out.tool_calls[0]["args"] == {"body": "my <SECRET>"}
    assert json.loads(out.tool_call_chunks[0]["args"]) == {"body": "my <SECRET>"}
    blocked = list(
        Guard(prioritized_rulesets=rules.block(), field="output", protect=protect).transform(iter(chunks))
    )
    assert (
        blocked[0].content == "BLOCKED" and blocked[0].tool_calls == [] and blocked[0].tool_call_chunks == []
    )


def test_text_override_wins_over_call_redaction(protect: Protect, rules: Any) -> None:
    answer = AIMessage(content="the secret", tool_calls=[call({"body": "a secret"})])
    guard = Guard(prioritized_rulesets=rules.block("NO"), field="output", protect=protect)
    out = guard.invoke(answer)
    assert out.content == "NO" and out.tool_calls == []


# -- every human message of a conversation


@pytest.mark.parametrize("use_async", [False, True])
async def test_earlier_human_messages_are_checked(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    llm = chat("never")
    guard = Guard(prioritized_rulesets=rules.block("NO"), protect=protect)
    chain = HISTORY_PROMPT | guard | llm
    value = {"history": [HumanMessage("here is my secret"), AIMessage("noted")], "q": "and now?"}
    with pytest.raises(GuardrailTriggered) as info:
        await chain.ainvoke(value) if use_async else chain.invoke(value)
    assert info.value.text == "here is my secret" and llm.calls == 0


def test_nested_history_in_a_dict_input(protect: Protect, rules: Any, chat: Any) -> None:
    llm = chat("never")
    guard = Guard(prioritized_rulesets=rules.mask(), protect=protect)
    value = {"history": [HumanMessage("my secret"), AIMessage("the secret")], "q": "fine"}
    out = guard.invoke(value)
    # human messages are input: masked; the AI message was checked when it was produced
    assert [m.content for m in out["history"]] == ["my <SECRET>", "the secret"]
    assert out["q"] == "fine" and value["history"][0].content == "my secret"
    chain = guard | HISTORY_PROMPT | llm
    chain.invoke(value)
    assert [m.content for m in llm.seen[0]] == ["be nice", "my <SECRET>", "the secret", "fine"]


def test_dict_text_is_checked_with_its_history(protect: Protect, rules: Any, recorder: list[Any]) -> None:
    guard = Guard(prioritized_rulesets=rules.record, protect=protect)
    guard.invoke({"chat_history": [HumanMessage("hi"), AIMessage("hello")], "question": "next"})
    assert [p.input for p in recorder] == ["hi", "next"]
    assert recorder[0].messages is None
    assert [m.content for m in recorder[1].messages] == ["hi", "hello"]


def test_messages_last_checks_only_the_latest(protect: Protect, rules: Any, recorder: list[Any]) -> None:
    conversation = [SystemMessage("s"), HumanMessage("old secret"), AIMessage("a"), HumanMessage("new")]
    guard = Guard(prioritized_rulesets=rules.block() + rules.record, messages="last", protect=protect)
    assert guard.invoke(conversation) is conversation
    assert [p.input for p in recorder] == ["new"]
    with pytest.raises(GuardrailTriggered):
        Guard(prioritized_rulesets=rules.block(), protect=protect).invoke(conversation)


@pytest.mark.parametrize("use_async", [False, True])
async def test_windowed_stream_checks_tool_calls_before_the_last_chunk(
    protect: Protect, rules: Any, use_async: bool
) -> None:
    chunks = [
        AIMessageChunk(content="let me send that mail now, one moment please "),
        AIMessageChunk(
            content="ok",
            tool_call_chunks=[
                tool_call_chunk(name="send_email", args='{"body": "the secret"}', id="c1", index=0)
            ],
        ),
    ]
    guard = Guard(
        prioritized_rulesets=rules.block("NO"), field="output", streaming="window", window=8, protect=protect
    )

    async def feed() -> Any:
        for chunk in chunks:
            yield chunk

    out = [c async for c in guard.atransform(feed())] if use_async else list(guard.transform(iter(chunks)))
    assert len(out) > 1 and out[-1].content == "NO"
    assert all(not c.tool_calls and not c.tool_call_chunks for c in out)

"""GuardedChatEngine: checks both ways, keeps the inner engine's memory consistent, buffers streams."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.chat_engine.types import StreamingAgentChatResponse
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import ChatMemoryBuffer

from stageguard import ActionType, Protect
from stageguard.llama_index import GuardedChatEngine, decisions_of


def history(engine: Any) -> list[tuple[str, str]]:
    return [(m.role.value, m.content or "") for m in engine.chat_history]


def simple(llm: Any, memory: Any = None) -> SimpleChatEngine:
    return SimpleChatEngine.from_defaults(llm=llm, memory=memory)


def test_output_override_rewrites_memory(protect: Protect, rules: Any, echo_llm: Any) -> None:
    guarded = GuardedChatEngine(simple(echo_llm), output_stage=rules.block("NOPE"), protect=protect)
    result = guarded.chat("say secret")  # the echo model repeats it
    assert result.response == "NOPE"
    assert history(guarded) == [("user", "say secret"), ("assistant", "NOPE")]
    assert decisions_of(result)["output"].action_result.type is ActionType.OVERRIDE


def test_output_redaction_rewrites_memory(protect: Protect, rules: Any, echo_llm: Any) -> None:
    guarded = GuardedChatEngine(simple(echo_llm), output_stage=rules.mask(), protect=protect)
    assert "<SECRET>" in guarded.chat("my secret word").response
    (_, answer) = history(guarded)[-1]
    assert "<SECRET>" in answer and "secret" not in answer.lower().replace("<secret>", "")


def test_input_override_skips_the_engine_and_forgets_the_turn(protect: Protect, rules: Any) -> None:
    from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall

    llm = MockLLMWithChatMemoryOfLastCall()
    guarded = GuardedChatEngine(simple(llm), input_stage=rules.block("NO"), protect=protect)
    assert guarded.chat("hello").response  # a clean turn goes through
    turns = history(guarded)
    assert guarded.chat("the secret?").response == "NO"
    assert history(guarded) == turns  # the blocked turn is not remembered
    assert all("secret" not in (m.content or "") for m in llm.last_chat_messages or [])


def test_remember_blocked_input(protect: Protect, rules: Any, echo_llm: Any) -> None:
    guarded = GuardedChatEngine(
        simple(echo_llm), input_stage=rules.block("NO"), protect=protect, remember_blocked_input=True
    )
    guarded.chat("the secret?")
    assert history(guarded) == [("user", "the secret?"), ("assistant", "NO")]


def test_input_redaction_reaches_model_and_memory(protect: Protect, rules: Any, echo_llm: Any) -> None:
    guarded = GuardedChatEngine(simple(echo_llm), input_stage=rules.mask(), protect=protect)
    result = guarded.chat("my secret is safe")
    assert "my <SECRET> is safe" in result.response
    assert history(guarded)[0] == ("user", "my <SECRET> is safe")


def test_stream_chat_buffers(protect: Protect, rules: Any, echo_llm: Any) -> None:
    # A buffer memory: sync stream_chat writes memory from a thread, and the SQL-backed Memory's aiosqlite
    # connections then cross event loops (LlamaIndex behaviour, with or without a guard).
    memory = ChatMemoryBuffer.from_defaults(token_limit=10_000)
    guarded = GuardedChatEngine(simple(echo_llm, memory), output_stage=rules.block("NOPE"), protect=protect)
    stream = guarded.stream_chat("say secret")
    assert isinstance(stream, StreamingAgentChatResponse)
    assert list(stream.response_gen) == ["NOPE"]
    assert history(guarded)[-1] == ("assistant", "NOPE")
    assert decisions_of(stream)["output"].triggered
    fresh = GuardedChatEngine(
        simple(echo_llm, ChatMemoryBuffer.from_defaults()), output_stage=rules.block("NOPE"), protect=protect
    )
    assert "hello there" in "".join(fresh.stream_chat("hello there").response_gen)


def test_stream_chat_input_override(protect: Protect, rules: Any, echo_llm: Any) -> None:
    memory = ChatMemoryBuffer.from_defaults()
    guarded = GuardedChatEngine(simple(echo_llm, memory), input_stage=rules.block("NO"), protect=protect)
    assert list(guarded.stream_chat("secret").response_gen) == ["NO"]
    assert history(guarded) == []


async def test_async_chat_and_stream(protect: Protect, rules: Any, echo_llm: Any) -> None:
    guarded = GuardedChatEngine(
        simple(echo_llm), input_stage=rules.block("IN"), output_stage=rules.mask(), protect=protect
    )
    assert (await guarded.achat("secret?")).response == "IN"
    # the input check only blocks an input secret; "li_secret" reads the output on the output hook
    guarded = GuardedChatEngine(simple(echo_llm), output_stage=rules.block("OUT"), protect=protect)
    assert (await guarded.achat("say secret")).response == "OUT"
    stream = await guarded.astream_chat("say secret again")
    assert [t async for t in stream.async_response_gen()] == ["OUT"]
    assert history(guarded)[-1] == ("assistant", "OUT")
    assert [m for m, _ in history(guarded)] == ["user", "assistant", "user", "assistant"]


async def test_astream_input_override(protect: Protect, rules: Any, echo_llm: Any) -> None:
    guarded = GuardedChatEngine(simple(echo_llm), input_stage=rules.block("NO"), protect=protect)
    stream = await guarded.astream_chat("secret")
    assert [t async for t in stream.async_response_gen()] == ["NO"]


def test_chat_memory_buffer_is_rewritten(protect: Protect, rules: Any, echo_llm: Any) -> None:
    memory = ChatMemoryBuffer.from_defaults(token_limit=10_000)
    guarded = GuardedChatEngine(simple(echo_llm, memory), output_stage=rules.block("NOPE"), protect=protect)
    guarded.chat("say secret")
    assert [(m.role.value, m.content) for m in memory.get_all()] == [
        ("user", "say secret"),
        ("assistant", "NOPE"),
    ]


def context_engine(index: Any, llm: Any) -> Any:
    """A context chat engine over ``index``, with a buffer memory: the default SQL-backed Memory, written by
    sync ``chat`` on a new event loop per call, leaves aiosqlite threads answering loops already closed
    (pytest then warns of exceptions in threads on a loaded machine; LlamaIndex behaviour, guard or not)."""
    memory = ChatMemoryBuffer.from_defaults(token_limit=10_000)
    return index.as_chat_engine(chat_mode="context", llm=llm, similarity_top_k=4, memory=memory)


def test_context_engine_checks_answer_against_retrieved_nodes(
    protect: Protect, rules: Any, recorder: list[Any], index: Any, echo_llm: Any
) -> None:
    inner = context_engine(index, echo_llm)
    guarded = GuardedChatEngine(inner, output_stage=rules.record, protect=protect)
    result = guarded.chat("towers")
    (payload,) = recorder
    assert payload.input == "towers"
    assert len(payload.context) == 4
    assert sorted(payload.context) == sorted(n.node.get_content() for n in result.source_nodes)


def test_context_engine_override_drops_sources(
    protect: Protect, rules: Any, index: Any, echo_llm: Any
) -> None:
    inner = context_engine(index, echo_llm)
    result = GuardedChatEngine(inner, output_stage=rules.block(), protect=protect).chat("bananas")
    assert result.response == "BLOCKED"
    assert result.source_nodes == [] and result.sources == []


def test_chat_history_argument_is_checked(
    protect: Protect, rules: Any, recorder: list[Any], echo_llm: Any
) -> None:
    guarded = GuardedChatEngine(simple(echo_llm), input_stage=rules.record, protect=protect)
    guarded.chat("next", chat_history=[ChatMessage(role="user", content="first")])
    (payload,) = recorder
    # the core mapping: the checked message is ``input``, ``messages`` the conversation before it
    assert payload.input == "next"
    assert [(m.role, m.content) for m in payload.messages] == [("user", "first")]

"""Windowed streaming for LlamaIndex engines: checked text released while it arrives, cut on a trigger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.generic_utils import astream_completion_response_to_chat_response
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import ChatMessage, CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.memory import ChatMemoryBuffer

from stageguard import ActionType, Protect
from stageguard.llama_index import GuardedChatEngine, GuardedQueryEngine, decisions_of
from stageguard.llama_index._retry import Retry


class TokenLLM(CustomLLM):
    """Streams ``tokens`` one by one (``delay`` seconds each), counting how many it produced."""

    tokens: list[str]
    delay: float = 0.0
    produced: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="".join(self.tokens))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        def gen() -> Generator[CompletionResponse, None, None]:
            text = ""
            for token in self.tokens:
                time.sleep(self.delay)
                self.produced += 1
                text += token
                yield CompletionResponse(text=text, delta=token)

        return gen()

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            text = ""
            for token in self.tokens:
                await asyncio.sleep(self.delay)
                self.produced += 1
                text += token
                yield CompletionResponse(text=text, delta=token)

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        # CustomLLM's own astream_chat runs the sync stream: tokens would not interleave with the reader
        stream = await self.astream_complete(self.messages_to_prompt(messages), formatted=True)
        return astream_completion_response_to_chat_response(stream)


CLEAN = [f"word{i} " for i in range(40)]  # 240 characters
# "secret" arrives as token 20: after 120 characters were produced
DIRTY = [*CLEAN[:20], "secret ", *CLEAN[20:]]


def llm(tokens: Sequence[str], delay: float = 0.0) -> TokenLLM:
    return TokenLLM(tokens=list(tokens), delay=delay)


def query_engine(
    index: Any, model: TokenLLM, stage: Any, protect: Protect, **kwargs: Any
) -> GuardedQueryEngine:
    inner = index.as_query_engine(llm=model, streaming=True, similarity_top_k=2)
    return GuardedQueryEngine(
        inner, output_stage=stage, protect=protect, streaming="window", window=40, check_every=20, **kwargs
    )


def chat_engine(model: TokenLLM, stage: Any, protect: Protect) -> GuardedChatEngine:
    inner = SimpleChatEngine.from_defaults(
        llm=model, memory=ChatMemoryBuffer.from_defaults(token_limit=10_000)
    )
    return GuardedChatEngine(
        inner, output_stage=stage, protect=protect, streaming="window", window=40, check_every=20
    )


def history(engine: GuardedChatEngine) -> list[tuple[str, str]]:
    return [(m.role.value, m.content or "") for m in engine.chat_history]


# -- query engine


def test_clean_query_stream_arrives_in_chunks_before_the_end(
    protect: Protect, rules: Any, index: Any
) -> None:
    model = llm(CLEAN)
    result = query_engine(index, model, rules.block(), protect).query("words please")
    assert isinstance(result, StreamingResponse)
    chunks, produced_at_first = [], None
    for chunk in result.response_gen:
        chunks.append(chunk)
        produced_at_first = produced_at_first if produced_at_first is not None else model.produced
    assert produced_at_first is not None and produced_at_first < len(CLEAN)  # released before the end
    assert len(chunks) > 2
    assert "".join(chunks) == "".join(CLEAN)
    assert decisions_of(result)["output"].triggered is False
    assert len(result.source_nodes) == 2


def test_query_override_cuts_the_stream(protect: Protect, rules: Any, index: Any) -> None:
    model = llm(DIRTY)
    result = query_engine(index, model, rules.block("BLOCKED"), protect).query("words please")
    chunks = list(result.response_gen)
    released = "".join(chunks[:-1])
    assert chunks[-1] == "BLOCKED"
    assert "secret" not in released and "".join(DIRTY).startswith(released)  # nothing after the trigger
    assert model.produced < len(DIRTY)  # upstream no longer read
    assert decisions_of(result)["output"].action_result.type is ActionType.OVERRIDE
    assert result.source_nodes == []  # the override does not rest on them


def test_query_redaction_masks_inside_the_window(protect: Protect, rules: Any, index: Any) -> None:
    result = query_engine(index, llm(DIRTY), rules.mask(), protect).query("words please")
    text = "".join(result.response_gen)
    assert text == "".join(DIRTY).replace("secret", "<SECRET>")
    assert decisions_of(result)["output"].action_result.type is ActionType.REDACT


def test_query_input_override_still_answers_with_a_stream(protect: Protect, rules: Any, index: Any) -> None:
    inner = index.as_query_engine(llm=llm(CLEAN), streaming=True)
    guarded = GuardedQueryEngine(
        inner, input_stage=rules.block("NO"), output_stage=rules.block(), protect=protect, streaming="window"
    )
    result = guarded.query("the secret?")
    assert isinstance(result, StreamingResponse)
    assert list(result.response_gen) == ["NO"]


async def test_async_query_window(protect: Protect, rules: Any, index: Any) -> None:
    model = llm(CLEAN)
    result = await query_engine(index, model, rules.block(), protect).aquery("words please")
    assert isinstance(result, AsyncStreamingResponse)
    chunks, produced_at_first = [], None
    async for chunk in result.async_response_gen():
        chunks.append(chunk)
        produced_at_first = produced_at_first if produced_at_first is not None else model.produced
    assert produced_at_first is not None and produced_at_first < len(CLEAN)
    assert len(chunks) > 2 and "".join(chunks) == "".join(CLEAN)

    model = llm(DIRTY)
    blocked = await query_engine(index, model, rules.block("BLOCKED"), protect).aquery("words please")
    chunks = [c async for c in blocked.async_response_gen()]
    assert chunks[-1] == "BLOCKED" and "secret" not in "".join(chunks)
    assert model.produced < len(DIRTY)
    assert blocked.source_nodes == []


def test_window_options_are_validated(protect: Protect, rules: Any, index: Any) -> None:
    inner = index.as_query_engine(llm=llm(CLEAN))
    with pytest.raises(ValueError, match="streaming must be one of"):
        GuardedQueryEngine(inner, output_stage=rules.block(), protect=protect, streaming="windowed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='retry needs streaming="buffer"'):
        GuardedQueryEngine(
            inner, output_stage=rules.block(), protect=protect, streaming="window", retry=Retry()
        )
    with pytest.raises(ValueError, match="streaming must be one of"):
        GuardedChatEngine(SimpleChatEngine.from_defaults(llm=llm(CLEAN)), rules.block(), streaming="yes")  # type: ignore[arg-type]


# -- chat engine


def test_clean_chat_stream_arrives_in_chunks_before_the_end(protect: Protect, rules: Any) -> None:
    model = llm(CLEAN, delay=0.01)
    guarded = chat_engine(model, rules.block(), protect)
    stream = guarded.stream_chat("words please")
    chunks, produced_at_first = [], None
    for chunk in stream.response_gen:
        chunks.append(chunk)
        produced_at_first = produced_at_first if produced_at_first is not None else model.produced
    assert produced_at_first is not None and produced_at_first < len(CLEAN)
    assert len(chunks) > 2 and "".join(chunks) == "".join(CLEAN)
    assert history(guarded) == [("user", "words please"), ("assistant", "".join(CLEAN).strip())]
    assert decisions_of(stream)["output"].triggered is False


def test_chat_override_cuts_the_stream_and_memory_keeps_what_was_shown(protect: Protect, rules: Any) -> None:
    guarded = chat_engine(llm(DIRTY), rules.block("BLOCKED"), protect)
    stream = guarded.stream_chat("words please")
    chunks = list(stream.response_gen)
    released = "".join(chunks[:-1])
    assert chunks[-1] == "BLOCKED"
    assert "secret" not in released and "".join(DIRTY).startswith(released)
    assert history(guarded) == [("user", "words please"), ("assistant", released + "BLOCKED")]
    assert decisions_of(stream)["output"].action_result.type is ActionType.OVERRIDE


def test_chat_redaction_in_window_rewrites_memory(protect: Protect, rules: Any) -> None:
    guarded = chat_engine(llm(DIRTY), rules.mask(), protect)
    text = "".join(guarded.stream_chat("words please").response_gen)
    assert "<SECRET>" in text and "secret " not in text
    assert history(guarded)[-1] == ("assistant", text)


async def test_async_chat_window(protect: Protect, rules: Any) -> None:
    model = llm(CLEAN, delay=0.01)
    guarded = chat_engine(model, rules.block(), protect)
    stream = await guarded.astream_chat("words please")
    chunks, produced_at_first = [], None
    async for chunk in stream.async_response_gen():
        chunks.append(chunk)
        produced_at_first = produced_at_first if produced_at_first is not None else model.produced
    assert produced_at_first is not None and produced_at_first < len(CLEAN)
    assert len(chunks) > 2 and "".join(chunks) == "".join(CLEAN)

    guarded = chat_engine(llm(DIRTY), rules.block("BLOCKED"), protect)
    stream = await guarded.astream_chat("words please", chat_history=[ChatMessage(role="user", content="hi")])
    chunks = [c async for c in stream.async_response_gen()]
    released = "".join(chunks[:-1])
    assert chunks[-1] == "BLOCKED" and "secret" not in released
    assert history(guarded)[-1] == ("assistant", released + "BLOCKED")
    assert all("secret" not in text for _, text in history(guarded))

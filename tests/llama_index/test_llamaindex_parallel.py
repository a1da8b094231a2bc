"""parallel_input=True: the engine starts while the input is checked; nothing of it leaves on a trigger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.generic_utils import (
    astream_completion_response_to_chat_response,
    completion_response_to_chat_response,
)
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.base.response.schema import StreamingResponse
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import ChatMessage, CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.memory import ChatMemoryBuffer, Memory

from stageguard import ActionType, Payload, Protect
from stageguard.llama_index import GuardedChatEngine, GuardedQueryEngine, decisions_of

CHECK = 0.4  # seconds the input check takes
MODEL = 0.4  # seconds the model takes


class SlowLLM(CustomLLM):
    """Answers ``echo: <prompt>`` after ``delay`` seconds (streams it word by word), recording each call."""

    delay: float = MODEL
    prompts: list[str] = []
    finished: int = 0
    produced: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()

    def _words(self, prompt: str) -> list[str]:
        return [f"{word} " for word in f"echo: {prompt}".split()]

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        time.sleep(self.delay)
        self.finished += 1
        return CompletionResponse(text=f"echo: {prompt}")

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        await asyncio.sleep(self.delay)
        self.finished += 1
        return CompletionResponse(text=f"echo: {prompt}")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        self.prompts.append(prompt)

        def gen() -> Generator[CompletionResponse, None, None]:
            time.sleep(self.delay)  # time to the first token
            for word in self._words(prompt):
                time.sleep(0.01)
                self.produced += 1
                yield CompletionResponse(text="", delta=word)
            self.finished += 1

        return gen()

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        self.prompts.append(prompt)

        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            await asyncio.sleep(self.delay)
            for word in self._words(prompt):
                await asyncio.sleep(0.01)
                self.produced += 1
                yield CompletionResponse(text="", delta=word)
            self.finished += 1

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        return completion_response_to_chat_response(await self.acomplete(self.messages_to_prompt(messages)))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        stream = await self.astream_complete(self.messages_to_prompt(messages), formatted=True)
        return astream_completion_response_to_chat_response(stream)


def slow_secret(payload: Payload) -> float:
    time.sleep(CHECK)
    return 1.0 if "secret" in (payload.input or "").lower() else 0.0


@pytest.fixture(autouse=True)
def slow_metric(metric: Callable[..., str]) -> None:
    metric("li_slow_secret", slow_secret, kind="score", blocking=True)  # waits like a remote judge


SLOW_BLOCK = [
    {
        "rules": [{"metric": "li_slow_secret", "operator": "gt", "target_value": 0.5}],
        "action": {"type": "OVERRIDE", "choices": ["NO"]},
    }
]


def query_engine(index: Any, model: SlowLLM, protect: Protect, **kwargs: Any) -> GuardedQueryEngine:
    inner = index.as_query_engine(llm=model, similarity_top_k=2, streaming=kwargs.pop("stream", False))
    return GuardedQueryEngine(inner, input_stage=kwargs.pop("stage", SLOW_BLOCK), protect=protect, **kwargs)


def chat_engine(model: SlowLLM, protect: Protect, **kwargs: Any) -> GuardedChatEngine:
    inner = SimpleChatEngine.from_defaults(
        llm=model, memory=ChatMemoryBuffer.from_defaults(token_limit=10_000)
    )
    return GuardedChatEngine(inner, input_stage=kwargs.pop("stage", SLOW_BLOCK), protect=protect, **kwargs)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    began = time.perf_counter()
    result = call()
    return result, time.perf_counter() - began


def history(engine: GuardedChatEngine) -> list[tuple[str, str]]:
    return [(m.role.value, m.content or "") for m in engine.chat_history]


# -- query engine


def test_clean_query_costs_the_slower_of_check_and_model(protect: Protect, index: Any) -> None:
    sequential, took_sequential = timed(lambda: query_engine(index, SlowLLM(), protect).query("hello"))
    model = SlowLLM()
    result, took = timed(lambda: query_engine(index, model, protect, parallel_input=True).query("hello"))
    assert took_sequential >= CHECK + MODEL
    assert took < CHECK + MODEL - 0.15  # about max(check, model)
    assert str(result) == str(sequential) and "hello" in str(result)
    assert decisions_of(result)["input"].triggered is False


def test_query_trigger_releases_nothing_and_does_not_wait(protect: Protect, index: Any) -> None:
    model = SlowLLM(delay=1.0)
    result, took = timed(lambda: query_engine(index, model, protect, parallel_input=True).query("secret?"))
    assert str(result) == "NO" and result.source_nodes == []
    assert decisions_of(result)["input"].action_result.type is ActionType.OVERRIDE
    assert took < 0.9 and model.finished == 0  # the (uninterruptible) sync call was left behind


def test_query_redaction_reruns_on_the_redacted_query(protect: Protect, rules: Any, index: Any) -> None:
    model = SlowLLM(delay=0.05)
    guarded = query_engine(index, model, protect, stage=rules.mask(), parallel_input=True)
    result = guarded.query("my secret tower")
    assert "my <SECRET> tower" in str(result) and "my secret" not in str(result)
    time.sleep(0.2)  # the dropped call (it saw the unredacted query) ends in the background
    assert sorted("my secret tower" in prompt for prompt in model.prompts) == [False, True]


async def test_async_query_parallel(protect: Protect, index: Any) -> None:
    model = SlowLLM()
    guarded = query_engine(index, model, protect, parallel_input=True)
    began = time.perf_counter()
    result = await guarded.aquery("hello")
    assert time.perf_counter() - began < CHECK + MODEL - 0.15
    assert "hello" in str(result)

    model = SlowLLM(delay=0.6)
    blocked = await query_engine(index, model, protect, parallel_input=True).aquery("secret?")
    assert str(blocked) == "NO"
    await asyncio.sleep(0.5)
    assert len(model.prompts) == 1 and model.finished == 0  # cancelled: it never finished


def test_streamed_query_is_read_ahead_and_cut_on_a_trigger(protect: Protect, index: Any) -> None:
    model = SlowLLM()
    guarded = query_engine(index, model, protect, stream=True, parallel_input=True)
    began = time.perf_counter()
    result = guarded.query("hello")
    assert isinstance(result, StreamingResponse)
    chunks = iter(result.response_gen)
    first = next(chunks)
    assert time.perf_counter() - began < CHECK + MODEL - 0.15  # the first token was read during the check
    text = first + "".join(chunks)
    assert "hello" in text and model.finished == 1

    model = SlowLLM(delay=0.3)  # the check ends while the stream is being read ahead
    blocked = query_engine(index, model, protect, stream=True, parallel_input=True).query("secret?")
    assert isinstance(blocked, StreamingResponse)
    assert list(blocked.response_gen) == ["NO"]  # nothing of the stream
    time.sleep(0.3)
    produced = model.produced
    time.sleep(0.2)
    assert produced < 20 and model.produced == produced and model.finished == 0  # the read-ahead stopped


async def test_async_streamed_query_trigger_cancels_the_read_ahead(protect: Protect, index: Any) -> None:
    model = SlowLLM(delay=0.3)
    blocked = await query_engine(index, model, protect, stream=True, parallel_input=True).aquery("secret?")
    assert [t async for t in blocked.async_response_gen()] == ["NO"]
    produced = model.produced
    assert produced < 20  # cut while reading ahead
    await asyncio.sleep(0.3)
    assert model.produced == produced and model.finished == 0


def test_parallel_input_needs_an_input_stage(protect: Protect, rules: Any, index: Any) -> None:
    with pytest.raises(ValueError, match="parallel_input=True needs an input stage"):
        GuardedQueryEngine(
            index.as_query_engine(llm=SlowLLM()), output_stage=rules.block(), parallel_input=True
        )


# -- chat engine


def test_chat_clean_latency_and_blocked_turn_leaves_no_trace(protect: Protect) -> None:
    guarded = chat_engine(SlowLLM(), protect, parallel_input=True)
    answer, took = timed(lambda: guarded.chat("hello"))
    assert took < CHECK + MODEL - 0.15
    assert "hello" in answer.response
    turns = history(guarded)
    assert [role for role, _ in turns] == ["user", "assistant"]

    blocked = guarded.chat("the secret?")
    assert blocked.response == "NO"
    assert history(guarded) == turns  # the speculative turn was taken out of memory again


def test_stream_chat_trigger_releases_nothing(protect: Protect) -> None:
    model = SlowLLM(delay=0.1)
    guarded = chat_engine(model, protect, parallel_input=True)
    assert list(guarded.stream_chat("the secret?").response_gen) == ["NO"]
    assert history(guarded) == []
    clean = "".join(guarded.stream_chat("hello").response_gen)
    assert "hello" in clean and history(guarded)[-1] == ("assistant", clean.strip())


def test_chat_redaction_runs_on_the_redacted_message(protect: Protect, rules: Any) -> None:
    model = SlowLLM(delay=0.05)
    guarded = chat_engine(model, protect, stage=rules.mask(), parallel_input=True)
    answer = guarded.chat("my secret word")
    assert "my <SECRET> word" in answer.response and "my secret" not in answer.response
    assert [text for role, text in history(guarded) if role == "user"] == ["my <SECRET> word"]


async def test_async_chat_parallel(protect: Protect) -> None:
    model = SlowLLM()
    guarded = chat_engine(model, protect, parallel_input=True)
    began = time.perf_counter()
    assert "hello" in (await guarded.achat("hello")).response
    assert time.perf_counter() - began < CHECK + MODEL - 0.15
    turns = history(guarded)

    model.delay = 1.0  # the check ends well before the model would
    assert (await guarded.achat("the secret?")).response == "NO"
    assert history(guarded) == turns
    stream = await guarded.astream_chat("secret again")
    assert [t async for t in stream.async_response_gen()] == ["NO"]
    await asyncio.sleep(1.2)
    assert history(guarded) == turns and model.finished == 1  # cancelled calls never finished


async def test_async_chat_with_the_sql_memory_leaves_no_trace(protect: Protect, rules: Any) -> None:
    # a cancel inside one of Memory's database operations would lose its in-memory SQLite history:
    # with Memory a dropped call is waited for, then the memory put back (a fast check lands mid-call)
    memory = Memory.from_defaults(session_id="parallel")
    guarded = GuardedChatEngine(
        SimpleChatEngine.from_defaults(llm=SlowLLM(delay=0.0), memory=memory),
        input_stage=rules.block("NO", metric="li_input_secret"),
        protect=protect,
        parallel_input=True,
    )
    assert "hello" in (await guarded.achat("hello")).response
    turns = [(m.role.value, m.content) for m in await memory.aget_all()]
    assert [role for role, _ in turns] == ["user", "assistant"]
    assert (await guarded.achat("the secret?")).response == "NO"
    assert [(m.role.value, m.content) for m in await memory.aget_all()] == turns

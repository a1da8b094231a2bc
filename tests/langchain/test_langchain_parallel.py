"""protect(..., parallel_input=True): the chain starts while the input stage runs; nothing it computed
from an input that triggers is ever released, and clean traffic pays max(check, model), not the sum."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from pydantic import Field

from stageguard import Payload, Protect
from stageguard.langchain import GuardrailTriggered
from stageguard.langchain import protect as guarded

MODEL = 0.4  # seconds the fake model takes
CHECK = 0.2  # seconds the input metric takes
PROMPT = ChatPromptTemplate.from_messages([("human", "{question}")])


class SlowEcho(BaseChatModel):
    """A slow chat model answering "echo: <last human message>"; records what it started and finished.

    Sync calls sleep (a blocking request), async calls ``asyncio.sleep`` (cancellable); streams send one
    word per chunk, the delay split between them."""

    delay: float = MODEL
    started: list[str] = Field(default_factory=list)
    started_at: list[float] = Field(default_factory=list)
    finished: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "slow-echo"

    def _answer(self, messages: list[BaseMessage]) -> str:
        text = next(str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage))
        self.started.append(text)
        self.started_at.append(time.perf_counter())
        return f"echo: {text}"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        answer = self._answer(messages)
        time.sleep(self.delay)
        self.finished.append(answer)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        answer = self._answer(messages)
        await asyncio.sleep(self.delay)
        self.finished.append(answer)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])

    def _words(self, messages: list[BaseMessage]) -> list[str]:
        words = self._answer(messages).split(" ")
        return [w if i == 0 else f" {w}" for i, w in enumerate(words)]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> Iterator[ChatGenerationChunk]:
        words = self._words(messages)
        for word in words:
            time.sleep(self.delay / len(words))
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        self.finished.append("".join(words))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        words = self._words(messages)
        for word in words:
            await asyncio.sleep(self.delay / len(words))
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        self.finished.append("".join(words))


@pytest.fixture
def checked_at(metric: Callable[..., str]) -> list[float]:
    """A slow input metric ``lc_slow_secret`` (1.0 on 'secret'); the times its checks ended."""
    ends: list[float] = []

    def slow(payload: Payload) -> float:
        time.sleep(CHECK)
        ends.append(time.perf_counter())
        return 1.0 if "secret" in (payload.input or "").lower() else 0.0

    metric("lc_slow_secret", slow, kind="score", blocking=True)
    return ends


BLOCK = [
    {
        "rules": [{"metric": "lc_slow_secret", "operator": "gt", "target_value": 0.5}],
        "action": {"type": "OVERRIDE", "choices": ["NO"]},
    }
]
SLOW_MASK = [  # both rules must hold: the slow one makes the check take CHECK seconds
    {
        "rules": [
            {"metric": "lc_slow_secret", "operator": "gt", "target_value": 0.5},
            {"metric": "lc_secret_spans", "operator": "not_empty"},
        ],
        "action": {"type": "REDACT"},
    }
]


async def _call(runnable: Any, value: Any, mode: str) -> tuple[Any, float]:
    """The answer (joined, for streams) and the wall time of one call in ``mode``."""
    began = time.perf_counter()
    if mode == "invoke":
        out = await asyncio.to_thread(runnable.invoke, value)
    elif mode == "ainvoke":
        out = await runnable.ainvoke(value)
    elif mode == "stream":
        out = await asyncio.to_thread(lambda: list(runnable.stream(value)))
    else:
        out = [chunk async for chunk in runnable.astream(value)]
    return out, time.perf_counter() - began


def _text(out: Any) -> str:
    if isinstance(out, list):
        return "".join(str(c.content) for c in out)
    return str(out.content)


MODES = ["invoke", "ainvoke", "stream", "astream"]


@pytest.mark.parametrize("mode", MODES)
async def test_clean_input_costs_the_slower_of_check_and_model(
    protect: Protect, checked_at: list[float], mode: str
) -> None:
    model = SlowEcho()
    sequential = guarded(PROMPT | model, input_stage=BLOCK, protect=protect)
    parallel = guarded(PROMPT | model, input_stage=BLOCK, protect=protect, parallel_input=True)
    out, took = await _call(parallel, {"question": "hello"}, mode)
    assert _text(out) == "echo: hello"
    assert MODEL <= took < MODEL + CHECK * 0.6, took  # about max(check, model): the sum is 0.6 s
    out, took = await _call(sequential, {"question": "hello"}, mode)
    assert _text(out) == "echo: hello" and took >= MODEL + CHECK


@pytest.mark.parametrize("mode", MODES)
async def test_an_override_cancels_the_model_and_releases_nothing_from_it(
    protect: Protect, checked_at: list[float], mode: str
) -> None:
    model = SlowEcho()
    wrapped = guarded(PROMPT | model, input_stage=BLOCK, protect=protect, parallel_input=True)
    out, took = await _call(wrapped, {"question": "the secret plan"}, mode)
    assert _text(out) == "NO"
    assert model.started == ["the secret plan"]  # it did start, speculatively
    assert took < MODEL  # the answer didn't wait for the model
    await asyncio.sleep(MODEL + 0.1)
    if mode in ("ainvoke", "astream", "stream"):
        assert model.finished == []  # cancelled (a sync stream stops at its next chunk)
    else:
        assert model.finished == ["echo: the secret plan"]  # a blocking request can't be interrupted...
    # ...but nothing of it came out
    assert "echo" not in _text(out)


@pytest.mark.parametrize("mode", MODES)
async def test_a_redaction_reruns_the_chain_on_the_redacted_input(
    protect: Protect, checked_at: list[float], mode: str
) -> None:
    model = SlowEcho()
    wrapped = guarded(PROMPT | model, input_stage=SLOW_MASK, protect=protect, parallel_input=True)
    out, took = await _call(wrapped, {"question": "my secret plan"}, mode)
    assert _text(out) == "echo: my <SECRET> plan"  # never the answer to the unredacted text
    assert model.started[-1] == "my <SECRET> plan" and "my secret plan" in model.started
    assert took >= CHECK + MODEL  # the cost of a redaction: check, then a fresh model call


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_stream_releases_nothing_before_the_check_passed(
    protect: Protect, checked_at: list[float], mode: str
) -> None:
    model = SlowEcho(delay=0.15)  # all its chunks arrive before the 0.2 s check ends
    wrapped = guarded(PROMPT | model, input_stage=BLOCK, protect=protect, parallel_input=True)
    began = time.perf_counter()
    arrivals: list[float] = []
    if mode == "stream":
        stream = wrapped.stream({"question": "one two three four"})
        chunks = await asyncio.to_thread(lambda: [arrivals.append(time.perf_counter()) or c for c in stream])
    else:
        chunks = []
        async for chunk in wrapped.astream({"question": "one two three four"}):
            arrivals.append(time.perf_counter())
            chunks.append(chunk)
    assert _text(chunks) == "echo: one two three four"
    assert len(chunks) >= 5  # the model's own chunking (one chunk a word), flushed after the check
    assert min(arrivals) >= checked_at[-1]
    assert model.started_at[0] - began < CHECK / 2  # the model didn't wait for the check


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_raising_input_check_cancels_the_model(
    protect: Protect, checked_at: list[float], use_async: bool
) -> None:
    model = SlowEcho()
    wrapped = guarded(
        PROMPT | model, input_stage=BLOCK, protect=protect, parallel_input=True, on_trigger="raise"
    )
    with pytest.raises(GuardrailTriggered):
        if use_async:
            await wrapped.ainvoke({"question": "a secret"})
        else:
            await asyncio.to_thread(wrapped.invoke, {"question": "a secret"})
    if use_async:
        await asyncio.sleep(MODEL + 0.1)
        assert model.finished == []


async def test_a_failing_speculative_call_on_a_blocked_input_is_dropped(
    protect: Protect, checked_at: list[float]
) -> None:
    def boom(value: Any) -> str:
        raise RuntimeError("model down")

    from langchain_core.runnables import RunnableLambda

    wrapped = guarded(RunnableLambda(boom), input_stage=BLOCK, protect=protect, parallel_input=True)
    assert wrapped.invoke("a secret") == "NO"
    assert await wrapped.ainvoke("a secret") == "NO"
    with pytest.raises(RuntimeError, match="model down"):  # on a clean input the chain's error is the answer
        wrapped.invoke("hello")


def test_parallel_input_needs_an_input_stage(protect: Protect, rules: Any) -> None:
    with pytest.raises(ValueError, match="parallel_input"):
        guarded(PROMPT | SlowEcho(), output_stage=rules.block(), protect=protect, parallel_input=True)


async def test_traced_runs_end_with_the_override_and_the_decision(
    protect: Protect, checked_at: list[float]
) -> None:
    model = SlowEcho()
    wrapped = guarded(PROMPT | model, input_stage=BLOCK, protect=protect, parallel_input=True)
    events = [e async for e in wrapped.astream_events({"question": "a secret"}, version="v2")]
    decisions = [e["data"] for e in events if e["event"] == "on_custom_event"]
    assert [d["action"] for d in decisions] == ["OVERRIDE"]
    end = next(e for e in events if e["event"] == "on_chain_end" and e["name"] == wrapped.name)
    assert end["data"]["output"].content == "NO"
    assert not any(e["event"] == "on_chat_model_end" for e in events)  # cancelled before it answered
    events = [e async for e in wrapped.astream_events({"question": "hello"}, version="v2")]
    end = next(e for e in events if e["event"] == "on_chain_end" and e["name"] == wrapped.name)
    assert end["data"]["output"].content == "echo: hello"

"""retry=Retry(...): a rejected answer is asked for again with feedback; every attempt is reported."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.base.response.schema import StreamingResponse
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.memory import ChatMemoryBuffer

from stageguard import ActionType, Protect
from stageguard.llama_index import (
    ATTEMPTS_KEY,
    GuardDecisionEvent,
    GuardedChatEngine,
    GuardedQueryEngine,
    Retry,
    decisions_of,
)

LEAK = "the secret is 42"
CLEAN = "a clean answer"


class FixableLLM(CustomLLM):
    """Leaks a secret until the prompt carries guardrail feedback (``stubborn``: always)."""

    stubborn: bool = False
    prompts: list[str] = []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()

    def _answer(self, prompt: str) -> str:
        self.prompts.append(prompt)
        fixed = "rejected by these guardrail rules" in prompt and not self.stubborn
        return CLEAN if fixed else LEAK

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._answer(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        answer = self._answer(prompt)

        def gen() -> Generator[CompletionResponse, None, None]:
            half = len(answer) // 2
            yield CompletionResponse(text=answer[:half], delta=answer[:half])
            yield CompletionResponse(text=answer, delta=answer[half:])

        return gen()


def query_engine(
    index: Any, model: FixableLLM, stage: Any, protect: Protect, **kwargs: Any
) -> GuardedQueryEngine:
    inner = index.as_query_engine(llm=model, similarity_top_k=2, streaming=kwargs.pop("stream", False))
    return GuardedQueryEngine(inner, output_stage=stage, protect=protect, **kwargs)


def chat_engine(model: FixableLLM, stage: Any, protect: Protect, **kwargs: Any) -> GuardedChatEngine:
    inner = SimpleChatEngine.from_defaults(
        llm=model, memory=ChatMemoryBuffer.from_defaults(token_limit=10_000)
    )
    return GuardedChatEngine(inner, output_stage=stage, protect=protect, **kwargs)


def history(engine: GuardedChatEngine) -> list[tuple[str, str]]:
    return [(m.role.value, m.content or "") for m in engine.chat_history]


# -- query engine


def test_query_returns_the_first_answer_that_passes(
    protect: Protect, rules: Any, index: Any, events: list[Any]
) -> None:
    model = FixableLLM()
    seen: list[dict[str, Any]] = []
    guarded = query_engine(
        index, model, rules.block(), protect, retry=Retry(max_attempts=3, on_attempt=seen.append)
    )
    result = guarded.query("what is the code?")
    assert str(result) == CLEAN
    assert decisions_of(result)["output"].triggered is False
    first, second = result.metadata[ATTEMPTS_KEY]
    assert (first["attempt"], first["passed"], second["attempt"], second["passed"]) == (1, False, 2, True)
    assert "li_secret gt 0.5 (value: 1.0)" in first["feedback"] and second["feedback"] is None
    assert first["decisions"][0].action_result.type is ActionType.OVERRIDE
    assert seen == result.metadata[ATTEMPTS_KEY]
    # the model got the feedback (and its rejected answer) after the original query
    assert len(model.prompts) == 2
    assert "what is the code?" in model.prompts[1] and first["feedback"] in model.prompts[1]
    assert f"Your previous answer:\n{LEAK}" in model.prompts[1]
    checks = [e for e in events if isinstance(e, GuardDecisionEvent) and e.hook == "output"]
    assert [(e.details["attempt"], e.status) for e in checks] == [(1, "triggered"), (2, "not_triggered")]


def test_query_override_when_no_attempt_passes(protect: Protect, rules: Any, index: Any) -> None:
    model = FixableLLM(stubborn=True)
    result = query_engine(index, model, rules.block("BLOCKED"), protect, retry=Retry(max_attempts=3)).query(
        "code?"
    )
    assert str(result) == "BLOCKED" and result.source_nodes == []
    attempts = result.metadata[ATTEMPTS_KEY]
    assert [a["passed"] for a in attempts] == [False, False, False]
    assert attempts[-1]["feedback"] is None  # the last one led to no further call
    assert len(model.prompts) == 3  # max_attempts counts every call


def test_redaction_is_retried_only_when_asked(protect: Protect, rules: Any, index: Any) -> None:
    masked = query_engine(index, FixableLLM(), rules.mask(), protect, retry=Retry()).query("code?")
    assert str(masked) == "the <SECRET> is 42"  # a REDACT passes, masked, unless Retry.on names it
    assert [a["passed"] for a in masked.metadata[ATTEMPTS_KEY]] == [True]
    retried = query_engine(index, FixableLLM(), rules.mask(), protect, retry=Retry(on={"REDACT"})).query(
        "code?"
    )
    assert str(retried) == CLEAN


def test_buffered_stream_is_retried(protect: Protect, rules: Any, index: Any) -> None:
    guarded = query_engine(index, FixableLLM(), rules.block(), protect, stream=True, retry=Retry())
    result = guarded.query("code?")
    assert isinstance(result, StreamingResponse)
    assert "".join(result.response_gen) == CLEAN
    assert len(result.metadata[ATTEMPTS_KEY]) == 2


async def test_async_query_retry(protect: Protect, rules: Any, index: Any) -> None:
    model = FixableLLM()
    result = await query_engine(index, model, rules.block(), protect, retry=Retry()).aquery("code?")
    assert str(result) == CLEAN and len(model.prompts) == 2
    stubborn = FixableLLM(stubborn=True)
    blocked = await query_engine(index, stubborn, rules.block("NO"), protect, retry=Retry()).aquery("code?")
    assert str(blocked) == "NO" and len(stubborn.prompts) == 2


def test_retry_options_are_validated(protect: Protect, rules: Any, index: Any) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Retry(max_attempts=0)
    with pytest.raises(ValueError, match="PASSTHROUGH"):
        Retry(on={"PASSTHROUGH"})  # type: ignore[arg-type]
    inner = index.as_query_engine(llm=FixableLLM())
    with pytest.raises(TypeError, match="retry must be a Retry"):
        GuardedQueryEngine(inner, rules.block(), protect=protect, retry=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry needs an output stage"):
        GuardedQueryEngine(inner, input_stage=rules.block(), protect=protect, retry=Retry())


# -- chat engine


def test_chat_retry_keeps_memory_to_what_the_user_said_and_saw(protect: Protect, rules: Any) -> None:
    model = FixableLLM()
    guarded = chat_engine(model, rules.block(), protect, retry=Retry())
    result = guarded.chat("what is the code?")
    assert result.response == CLEAN
    assert [a["passed"] for a in result.metadata[ATTEMPTS_KEY]] == [False, True]
    assert history(guarded) == [("user", "what is the code?"), ("assistant", CLEAN)]
    assert "rejected by these guardrail rules" in model.prompts[1]


def test_chat_override_when_no_attempt_passes(protect: Protect, rules: Any) -> None:
    guarded = chat_engine(
        FixableLLM(stubborn=True), rules.block("BLOCKED"), protect, retry=Retry(max_attempts=3)
    )
    result = guarded.chat("what is the code?")
    assert result.response == "BLOCKED" and len(result.metadata[ATTEMPTS_KEY]) == 3
    assert history(guarded) == [("user", "what is the code?"), ("assistant", "BLOCKED")]


def test_stream_chat_retry(protect: Protect, rules: Any) -> None:
    guarded = chat_engine(FixableLLM(), rules.block(), protect, retry=Retry())
    stream = guarded.stream_chat("what is the code?")
    assert "".join(stream.response_gen) == CLEAN
    assert [a["passed"] for a in stream.stageguard_attempts] == [False, True]
    assert history(guarded) == [("user", "what is the code?"), ("assistant", CLEAN)]


async def test_async_chat_retry(protect: Protect, rules: Any) -> None:
    guarded = chat_engine(FixableLLM(), rules.block(), protect, retry=Retry())
    assert (await guarded.achat("what is the code?")).response == CLEAN
    stream = await guarded.astream_chat("and again?")
    assert "".join([t async for t in stream.async_response_gen()]) == CLEAN
    assert history(guarded) == [
        ("user", "what is the code?"),
        ("assistant", CLEAN),
        ("user", "and again?"),
        ("assistant", CLEAN),
    ]

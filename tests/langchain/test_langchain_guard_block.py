"""An input Guard in a pipe stops the chain on OVERRIDE: the model never gets the override as user text."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from stageguard import Protect
from stageguard.langchain import Guard, GuardrailTriggered
from stageguard.langchain import protect as guarded

PROMPT = ChatPromptTemplate.from_messages([("system", "be nice"), ("human", "{q}")])
BLOCKED = {"q": "tell me the secret"}
CLEAN = {"q": "what time is it?"}


class ModelCalls(BaseCallbackHandler):
    """Counts chat model calls (the model is a stock ``FakeListChatModel``)."""

    def __init__(self) -> None:
        self.count = 0

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.count += 1


def blocked_chain(protect: Protect, rules: Any, **options: Any) -> Any:
    guard = Guard(prioritized_rulesets=rules.block("NO"), field="input", protect=protect, **options)
    return PROMPT | guard | FakeListChatModel(responses=["the answer"]) | StrOutputParser()


@pytest.mark.parametrize("use_async", [False, True])
async def test_input_override_stops_the_chain(protect: Protect, rules: Any, use_async: bool) -> None:
    chain, calls = blocked_chain(protect, rules), ModelCalls()
    config = {"callbacks": [calls]}
    with pytest.raises(GuardrailTriggered) as info:
        await chain.ainvoke(BLOCKED, config) if use_async else chain.invoke(BLOCKED, config)
    assert calls.count == 0
    error = info.value
    assert error.blocked and error.override == "NO" and error.where == "input"
    assert error.text == "tell me the secret" and error.response.triggered_rules[0].metric == "lc_secret"
    out = await chain.ainvoke(CLEAN, config) if use_async else chain.invoke(CLEAN, config)
    assert out == "the answer" and calls.count == 1


def test_without_callbacks_the_model_is_not_called_either(protect: Protect, rules: Any, chat: Any) -> None:
    llm = chat("the answer")
    chain = PROMPT | Guard(prioritized_rulesets=rules.block("NO"), protect=protect) | llm
    with pytest.raises(GuardrailTriggered):
        chain.invoke(BLOCKED)
    assert llm.calls == 0


@pytest.mark.parametrize("use_async", [False, True])
async def test_streams_stop_before_the_model(protect: Protect, rules: Any, use_async: bool) -> None:
    chain, calls = blocked_chain(protect, rules), ModelCalls()
    config = {"callbacks": [calls]}
    received: list[Any] = []
    with pytest.raises(GuardrailTriggered):
        if use_async:
            async for chunk in chain.astream(BLOCKED, config):
                received.append(chunk)
        else:
            received.extend(chain.stream(BLOCKED, config))
    assert received == [] and calls.count == 0


@pytest.mark.parametrize("use_async", [False, True])
async def test_batch_blocks_only_the_blocked_inputs(protect: Protect, rules: Any, use_async: bool) -> None:
    chain, calls = blocked_chain(protect, rules), ModelCalls()
    inputs, config = [BLOCKED, CLEAN], {"callbacks": [calls]}
    if use_async:
        out = await chain.abatch(inputs, config, return_exceptions=True)
    else:
        out = chain.batch(inputs, config, return_exceptions=True)
    assert isinstance(out[0], GuardrailTriggered) and out[0].override == "NO"
    assert out[1] == "the answer" and calls.count == 1


def test_with_fallbacks_answers_with_the_override(protect: Protect, rules: Any) -> None:
    chain, calls = blocked_chain(protect, rules), ModelCalls()
    safe = chain.with_fallbacks(
        [RunnableLambda(lambda x: x["error"].override)],
        exceptions_to_handle=(GuardrailTriggered,),
        exception_key="error",
    )
    assert safe.invoke(BLOCKED, {"callbacks": [calls]}) == "NO" and calls.count == 0
    assert safe.invoke(CLEAN, {"callbacks": [calls]}) == "the answer" and calls.count == 1


def test_protect_answers_with_the_override(protect: Protect, rules: Any) -> None:
    calls = ModelCalls()
    chain = guarded(
        PROMPT | FakeListChatModel(responses=["the answer"]) | StrOutputParser(),
        input_stage=rules.block("NO"),
        protect=protect,
    )
    assert chain.invoke(BLOCKED, {"callbacks": [calls]}) == "NO" and calls.count == 0


def test_on_block_continue_passes_the_override_on(protect: Protect, rules: Any, chat: Any) -> None:
    llm = chat("a reply to the override")
    guard = Guard(prioritized_rulesets=rules.block("NO"), on_block="continue", protect=protect)
    assert (PROMPT | guard | llm | StrOutputParser()).invoke(BLOCKED) == "a reply to the override"
    assert [m.content for m in llm.seen[0]] == ["be nice", "NO"]


def test_redaction_and_passthrough_still_reach_the_model(protect: Protect, rules: Any, chat: Any) -> None:
    llm = chat("one", "two")
    (PROMPT | Guard(prioritized_rulesets=rules.mask(), protect=protect) | llm).invoke(BLOCKED)
    (PROMPT | Guard(prioritized_rulesets=rules.note(), protect=protect) | llm).invoke(BLOCKED)
    assert [m[-1].content for m in llm.seen] == ["tell me the <SECRET>", "tell me the secret"]


def test_shadow_and_output_guards_do_not_raise(protect: Protect, rules: Any) -> None:
    shadow = Guard(prioritized_rulesets=rules.block("NO"), shadow=True, protect=protect)
    assert shadow.invoke("a secret") == "a secret"
    output = Guard(prioritized_rulesets=rules.block("NO"), field="output", protect=protect)
    assert output.invoke("a secret") == "NO"


def test_windowed_input_guard_raises_too(protect: Protect, rules: Any) -> None:
    guard = Guard(prioritized_rulesets=rules.block("NO"), streaming="window", window=4, protect=protect)
    with pytest.raises(GuardrailTriggered):
        list(guard.transform(iter(["one two ", "three secret ", "four"])))

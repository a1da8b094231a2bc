"""LangChain adapters build only the payload parts the stage's scorers read (``Protect.fields_read``)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from stageguard import Payload
from stageguard.langchain import ProtectCallbackHandler, ProtectMiddleware


@tool
def weather(city: str) -> str:
    """Current weather in a city."""
    return f"It is sunny in {city}."


def stage(metric: str) -> list[dict[str, Any]]:
    return [{"rules": [{"metric": metric, "operator": "gt", "target_value": 0.99}]}]


HISTORY = [HumanMessage("Hi, I'm planning a trip."), AIMessage("Where to?")]
REQUEST = "What is the weather in Oslo?"


def answers(chat: Any) -> Any:
    return chat(
        AIMessage(content="", tool_calls=[{"name": "weather", "args": {"city": "Oslo"}, "id": "w1"}]),
        "Sunny.",
    )


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_middleware_leaves_out_the_conversation_a_text_metric_does_not_read(
    spy_protect: Any, chat: Any, use_async: bool
) -> None:
    spy = spy_protect()
    middleware = ProtectMiddleware(
        input_stage=stage("input_toxicity"), output_stage=stage("output_toxicity"), protect=spy
    )
    agent = create_agent(answers(chat), [weather], middleware=[middleware])
    value = {"messages": [*HISTORY, HumanMessage(REQUEST)]}
    await agent.ainvoke(value) if use_async else agent.invoke(value)
    checked_input, *outputs = spy.payloads
    assert checked_input.input == REQUEST and checked_input.messages is None
    assert outputs and all(p.messages is None and p.tools is None for p in outputs)
    # a tool call's payload holds that call only (the output stage checks the calls the model asks for)
    assert [[c.id for c in p.tool_calls or []] for p in outputs] == [["w1"], []]
    # the user's request still goes with each answer as its input (read from the conversation)
    assert {p.input for p in outputs} == {REQUEST}
    assert outputs[-1].output == "Sunny."


async def test_middleware_sends_the_conversation_to_a_metric_that_reads_it(
    spy_protect: Any, chat: Any
) -> None:
    spy = spy_protect()
    middleware = ProtectMiddleware(output_stage=stage("tool_error_rate"), protect=spy)
    agent = create_agent(answers(chat), [weather], middleware=[middleware])
    agent.invoke({"messages": [*HISTORY, HumanMessage(REQUEST)]})
    last = spy.payloads[-1]
    assert last.messages is not None and [m.content for m in last.messages][:2] == [
        m.content for m in HISTORY
    ]
    assert last.tools is not None and last.tools[0].name == "weather"
    assert last.tool_calls is not None and last.tool_calls[0].result == "It is sunny in Oslo."


def test_a_custom_metric_gets_the_whole_payload(spy_protect: Any, chat: Any, metric: Any) -> None:
    seen: list[Payload] = []
    metric("sees_all", lambda p: seen.append(p) or 0.0, kind="score")
    middleware = ProtectMiddleware(output_stage=stage("sees_all"), protect=spy_protect())
    agent = create_agent(answers(chat), [weather], middleware=[middleware])
    agent.invoke({"messages": [*HISTORY, HumanMessage(REQUEST)]})
    assert seen[-1].messages is not None and seen[-1].tool_calls is not None


def test_callback_handler_leaves_out_what_the_stage_does_not_read(spy_protect: Any, chat: Any) -> None:
    spy = spy_protect()
    handler = ProtectCallbackHandler(
        input_stage=stage("prompt_injection"), output_stage=stage("output_sexism"), protect=spy
    )
    model = chat("It is sunny.")
    model.invoke([*HISTORY, HumanMessage(REQUEST)], config={"callbacks": [handler]})
    checked_input, checked_output = spy.payloads
    assert checked_input.input == REQUEST and checked_input.messages is None
    assert checked_output.messages is None and checked_output.input == REQUEST


def test_guard_runnable_leaves_out_the_context_a_text_metric_does_not_read(
    spy_protect: Any,
) -> None:
    from stageguard.langchain import Guard

    for metric, with_context in (("output_toxicity", False), ("context_adherence", True)):
        spy = spy_protect()
        guard = Guard(prioritized_rulesets=stage(metric), field="output", protect=spy, context_key="docs")
        guard.invoke({"answer": "Paris is the capital.", "docs": ["Paris is the capital of France."]})
        (checked,) = spy.payloads
        assert checked.output == "Paris is the capital."
        assert checked.context == (["Paris is the capital of France."] if with_context else None)

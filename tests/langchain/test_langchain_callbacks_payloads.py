"""ProtectCallbackHandler: the model's tool-call ids, core tool payloads, and a quiet enforce abort."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

from stageguard import Payload, Protect
from stageguard.langchain import GuardrailTriggered, ProtectCallbackHandler

PROMPT = ChatPromptTemplate.from_messages([("human", "{question}")])


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"found {query}"


@tool
def broken(x: str) -> str:
    """Fails."""
    raise ValueError("no backend")


def test_agent_tool_payloads_carry_the_model_tool_call_id(
    protect: Protect, rules: Any, chat: Any, recorder: list[Payload]
) -> None:
    from langchain.agents import create_agent

    model = chat(
        AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"query": "x"}, "id": "call_7"}]),
        "It is x.",
    )
    handler = ProtectCallbackHandler(
        tool_call_stage=rules.record, tool_result_stage=rules.record, protect=protect
    )
    create_agent(model, [lookup]).invoke({"messages": [HumanMessage("what is x?")]}, {"callbacks": [handler]})
    call, result = recorder
    assert [(c.id, c.status) for c in call.tool_calls] == [("call_7", None)]
    assert call.output == "x" and call.input == "what is x?"  # a single string argument as is
    assert [(c.id, c.status, c.result) for c in result.tool_calls] == [("call_7", "success", "found x")]


def test_tool_call_check_includes_failed_calls_and_the_result_check_has_the_call_once(
    protect: Protect, rules: Any, chat: Any, recorder: list[Payload]
) -> None:
    def agent_like(question: str) -> str:
        with contextlib.suppress(ValueError):
            broken.invoke({"name": "broken", "args": {"x": "1"}, "id": "b1", "type": "tool_call"})
        lookup.invoke({"name": "lookup", "args": {"query": question}, "id": "l1", "type": "tool_call"})
        return "done"

    handler = ProtectCallbackHandler(
        tool_call_stage=rules.record, tool_result_stage=rules.record, protect=protect
    )
    RunnableLambda(agent_like).invoke("paris", {"callbacks": [handler]})
    _, call, result = recorder
    assert [(c.id, c.status) for c in call.tool_calls] == [("b1", "error"), ("l1", None)]
    assert [(c.id, c.status) for c in result.tool_calls] == [("b1", "error"), ("l1", "success")]
    assert "no backend" in (result.tool_calls[0].error or "")


def test_enforce_abort_is_not_logged_as_a_callback_error(
    protect: Protect, rules: Any, chat: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler = ProtectCallbackHandler(output_stage=rules.block(), mode="enforce", protect=protect)
    with caplog.at_level(logging.WARNING), pytest.raises(GuardrailTriggered):
        (PROMPT | chat("a secret")).invoke({"question": "q"}, {"callbacks": [handler]})
    assert not [r for r in caplog.records if "callback" in r.getMessage()]


async def test_enforce_abort_is_not_logged_async(
    protect: Protect, rules: Any, chat: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler = ProtectCallbackHandler(input_stage=rules.block(), mode="enforce", protect=protect)
    with caplog.at_level(logging.WARNING), pytest.raises(GuardrailTriggered):
        await (PROMPT | chat("never")).ainvoke({"question": "a secret"}, {"callbacks": [handler]})
    assert not [r for r in caplog.records if "callback" in r.getMessage()]


def test_other_callback_errors_are_still_logged(caplog: pytest.LogCaptureFixture, chat: Any) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Broken(BaseCallbackHandler):
        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING):
        (PROMPT | chat("ok")).invoke({"question": "q"}, {"callbacks": [Broken()]})
    assert any("boom" in r.getMessage() for r in caplog.records)


def test_enforce_output_stage_stops_a_tool_call_only_answer(protect: Protect, rules: Any, chat: Any) -> None:
    from langchain.agents import create_agent

    ran: list[str] = []

    @tool
    def search(query: str) -> str:
        """Search."""
        ran.append(query)
        return "ok"

    model = chat(
        AIMessage(content="", tool_calls=[{"name": "search", "args": {"query": "secret"}, "id": "c1"}]),
        "done",
    )
    handler = ProtectCallbackHandler(output_stage=rules.block(), mode="enforce", protect=protect)
    with pytest.raises(GuardrailTriggered) as info:
        create_agent(model, [search]).invoke({"messages": [HumanMessage("go")]}, {"callbacks": [handler]})
    assert ran == [] and info.value.where == "tool_call"

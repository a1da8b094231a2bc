"""ProtectCallbackHandler: observe (record every decision) or enforce (abort the run)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")

import contextlib

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.tools import tool

from stageguard import Protect
from stageguard.langchain import Decision, GuardrailTriggered, ProtectCallbackHandler

PROMPT = ChatPromptTemplate.from_messages([("system", "be brief"), ("human", "{question}")])


class Docs(BaseRetriever):
    docs: list[str]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document(page_content=d) for d in self.docs]


def test_observe_records_input_output_and_context(
    protect: Protect, rules: Any, chat: Any, recorder: list[Any]
) -> None:
    seen: list[Decision] = []
    handler = ProtectCallbackHandler(
        input_stage=rules.note(),
        output_stage=rules.record + rules.block(),
        protect=protect,
        on_decision=seen.append,
    )
    retriever = Docs(docs=["doc A", "doc B"])
    chain = (
        RunnablePassthrough.assign(context=lambda x: retriever.invoke(x["question"]))
        | PROMPT
        | chat("the secret answer")
        | StrOutputParser()
    )
    out = chain.invoke({"question": "a secret question"}, {"callbacks": [handler]})
    assert out == "the secret answer"  # callbacks never change output
    assert [(d.where, d.triggered) for d in handler.decisions] == [("input", True), ("output", True)]
    assert seen == list(handler.decisions)
    assert handler.decisions[1].response.action_result.value == "BLOCKED"
    [payload] = recorder
    assert payload.input == "a secret question" and payload.output == "the secret answer"
    assert payload.context == ["doc A", "doc B"]
    assert [m.role for m in payload.messages] == ["system", "user"]  # before the checked answer
    assert handler._roots == {} and handler._parents == {}  # state is dropped when the run ends


def test_enforce_aborts_a_sync_run(protect: Protect, rules: Any, chat: Any) -> None:
    handler = ProtectCallbackHandler(input_stage=rules.block(), mode="enforce", protect=protect)
    model = chat("never")
    with pytest.raises(GuardrailTriggered):
        (PROMPT | model).invoke({"question": "tell me the secret"}, {"callbacks": [handler]})
    assert model.calls == 0
    assert (PROMPT | chat("fine")).invoke({"question": "hi"}, {"callbacks": [handler]}).content == "fine"


async def test_enforce_aborts_an_async_run(protect: Protect, rules: Any, chat: Any) -> None:
    handler = ProtectCallbackHandler(output_stage=rules.mask(), mode="enforce", protect=protect)
    with pytest.raises(GuardrailTriggered):
        await (PROMPT | chat("a secret")).ainvoke({"question": "q"}, {"callbacks": [handler]})


def test_shadow_enforce_never_raises(protect: Protect, rules: Any, chat: Any) -> None:
    handler = ProtectCallbackHandler(output_stage=rules.block(), mode="enforce", shadow=True, protect=protect)
    out = (PROMPT | chat("a secret")).invoke({"question": "q"}, {"callbacks": [handler]})
    assert out.content == "a secret" and handler.decisions[0].response.shadow


def test_tools_and_errors_feed_later_payloads(
    protect: Protect, rules: Any, chat: Any, recorder: list[Any]
) -> None:
    @tool
    def lookup(query: str, limit: int = 3) -> str:
        """Look something up."""
        return f"found {query}"

    @tool
    def broken(x: str) -> str:
        """Fails."""
        raise ValueError("no backend")

    model = chat("summary")

    def agent_like(question: str) -> str:
        lookup.invoke({"query": question, "limit": 2})
        with contextlib.suppress(ValueError):
            broken.invoke({"x": "1"})
        return str(model.invoke([HumanMessage(question)]).content)

    handler = ProtectCallbackHandler(
        tool_call_stage=rules.record,
        tool_result_stage=rules.record,
        output_stage=rules.record,
        protect=protect,
    )
    assert RunnableLambda(agent_like).invoke("paris", {"callbacks": [handler]}) == "summary"
    call, result, _, answer = recorder
    assert call.output == '{"query": "paris", "limit": 2}' and call.tool_calls[-1].name == "lookup"
    assert call.input is None  # no model has seen a user message yet in this run
    assert result.input == "found paris" and result.tool_calls[-1].status == "success"
    assert answer.input == "paris" and answer.output == "summary"
    assert [(c.name, c.status) for c in answer.tool_calls] == [("lookup", "success"), ("broken", "error")]
    assert "no backend" in (answer.tool_calls[1].error or "")
    assert answer.context == ["found paris"]
    assert [d.where for d in handler.decisions] == ["tool_call", "tool_result", "tool_call", "output"]
    assert handler._roots == {}


def test_agent_with_callbacks(protect: Protect, rules: Any, chat: Any) -> None:
    from langchain.agents import create_agent

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return "the secret is 42"

    model = chat(
        AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"query": "x"}, "id": "c1"}]),
        "It is 42.",
    )
    handler = ProtectCallbackHandler(
        input_stage=rules.note(), tool_result_stage=rules.note(), output_stage=rules.note(), protect=protect
    )
    agent = create_agent(model, [lookup])
    agent.invoke({"messages": [HumanMessage("what is it?")]}, {"callbacks": [handler]})
    wheres = [(d.where, d.triggered) for d in handler.decisions]
    # without a tool-call stage the output stage checks the answer's tool call, before it runs
    assert wheres == [("input", False), ("tool_call", False), ("tool_result", True), ("output", False)]
    # the agent sends the user message to the model twice; it is checked once
    assert sum(1 for d in handler.decisions if d.where == "input") == 1


def test_enforce_stops_an_agent_tool(protect: Protect, rules: Any, chat: Any) -> None:
    from langchain.agents import create_agent

    ran: list[str] = []

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        ran.append(query)
        return "ok"

    model = chat(
        AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"query": "secret"}, "id": "c1"}])
    )
    handler = ProtectCallbackHandler(tool_call_stage=rules.block(), mode="enforce", protect=protect)
    with pytest.raises(GuardrailTriggered):
        create_agent(model, [lookup]).invoke({"messages": [HumanMessage("go")]}, {"callbacks": [handler]})
    assert ran == []


def test_handler_on_an_inner_step_keeps_no_state(protect: Protect, rules: Any, chat: Any) -> None:
    handler = ProtectCallbackHandler(output_stage=rules.note(), protect=protect)
    chain = PROMPT | chat("a secret", "a secret").with_config(callbacks=[handler]) | StrOutputParser()
    chain.invoke({"question": "q"})
    chain.invoke({"question": "q"})
    assert [d.where for d in handler.decisions] == ["output", "output"]
    assert handler._roots == {} and handler._parents == {} and handler._llm_inputs == {}


def test_needs_a_stage() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        ProtectCallbackHandler()

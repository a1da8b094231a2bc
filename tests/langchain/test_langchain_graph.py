"""guard_node in LangGraph graphs, and human review of a triggered decision through interrupt()."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command

from stageguard import Protect
from stageguard.langchain import EVENT_NAME, GuardrailTriggered, guard_node, resolve_review


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    docs: list[str]
    decision: dict[str, Any]


def build(
    model: Any,
    input_node: Any = None,
    output_node: Any = None,
    checkpointer: Any = None,
    routed: bool = False,
) -> Any:
    graph = StateGraph(State)

    def call_model(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph.add_node("model", call_model)
    if input_node is not None:
        graph.add_node("input_guard", input_node, destinations=("model", END) if routed else ())
        graph.add_edge(START, "input_guard")
        if not routed:
            graph.add_edge("input_guard", "model")
    else:
        graph.add_edge(START, "model")
    if output_node is not None:
        graph.add_node("output_guard", output_node)
        graph.add_edge("model", "output_guard")
        graph.add_edge("output_guard", END)
    else:
        graph.add_edge("model", END)
    return graph.compile(checkpointer=checkpointer)


both = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


async def run(graph: Any, value: Any, use_async: bool, config: Any = None) -> Any:
    return await graph.ainvoke(value, config) if use_async else graph.invoke(value, config)


@both
async def test_input_guard_answers_and_skips_the_model(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    model = chat("never")
    node = guard_node(
        rules.block("No."), goto_on_block=END, goto_on_pass="model", decision_key="decision", protect=protect
    )
    graph = build(model, input_node=node, routed=True)
    out = await run(graph, {"messages": [HumanMessage("the secret?")]}, use_async)
    assert [m.content for m in out["messages"]] == ["the secret?", "No."]
    assert isinstance(out["messages"][-1], AIMessage) and model.calls == 0
    assert out["decision"]["status"] == "triggered" and out["decision"]["action"] == "OVERRIDE"
    out = await run(graph, {"messages": [HumanMessage("hello")]}, use_async)
    assert out["messages"][-1].content == "never" and out["decision"]["status"] == "not_triggered"


@both
async def test_output_guard_redacts_in_place(
    protect: Protect, rules: Any, chat: Any, recorder: list[Any], use_async: bool
) -> None:
    node = guard_node(rules.record + rules.mask(), field="output", context_key="docs", protect=protect)
    graph = build(chat("the secret is 42"), output_node=node)
    out = await run(graph, {"messages": [HumanMessage("what is it?")], "docs": ["it is 42"]}, use_async)
    assert [m.content for m in out["messages"]] == ["what is it?", "the <SECRET> is 42"]
    [payload] = recorder
    assert payload.input == "what is it?" and payload.context == ["it is 42"]


def test_works_with_messages_state_and_reports_events(protect: Protect, rules: Any, chat: Any) -> None:
    graph = StateGraph(MessagesState)
    graph.add_node("guard", guard_node(rules.block(), protect=protect, name="input-guard"))
    graph.add_edge(START, "guard")
    graph.add_edge("guard", END)
    compiled = graph.compile()
    out = compiled.invoke({"messages": [HumanMessage("secret")]})
    assert out["messages"][-1].content == "BLOCKED"

    async def collect() -> list[Any]:
        return [
            e async for e in compiled.astream_events({"messages": [HumanMessage("secret")]}, version="v2")
        ]

    import asyncio

    custom = [e for e in asyncio.run(collect()) if e["event"] == "on_custom_event"]
    assert [e["name"] for e in custom] == [EVENT_NAME]


def test_raise_mode(protect: Protect, rules: Any, chat: Any) -> None:
    graph = build(chat("x"), input_node=guard_node(rules.block(), on_trigger="raise", protect=protect))
    with pytest.raises(GuardrailTriggered):
        graph.invoke({"messages": [HumanMessage("secret")]})


@both
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("approve", "the <SECRET> is 42"),
        ("reject", "the secret is 42"),
        ({"action": "replace", "text": "I'd rather not say."}, "I'd rather not say."),
    ],
)
async def test_human_review(
    protect: Protect, rules: Any, chat: Any, use_async: bool, answer: Any, expected: str
) -> None:
    node = guard_node(rules.mask(), field="output", review=True, protect=protect)
    graph = build(chat("the secret is 42"), output_node=node, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    await run(graph, {"messages": [HumanMessage("what is it?")]}, use_async, config)
    state = await graph.aget_state(config) if use_async else graph.get_state(config)
    [interrupt] = state.interrupts
    request = interrupt.value
    assert request["text"] == "the secret is 42" and request["proposed"] == "the <SECRET> is 42"
    assert request["action"] == "REDACT" and request["triggered_rules"][0]["metric"] == "lc_secret_spans"
    out = await run(graph, Command(resume=answer), use_async, config)
    assert out["messages"][-1].content == expected
    assert len(out["messages"]) == 2


def test_review_of_an_input_decision(protect: Protect, rules: Any, chat: Any) -> None:
    model = chat("model answer")
    node = guard_node(rules.block(), review=True, goto_on_block=END, goto_on_pass="model", protect=protect)
    graph = build(model, input_node=node, checkpointer=InMemorySaver(), routed=True)
    first, second = {"configurable": {"thread_id": "a"}}, {"configurable": {"thread_id": "b"}}
    graph.invoke({"messages": [HumanMessage("is this secret ok?")]}, first)
    out = graph.invoke(Command(resume="reject"), first)
    assert [m.content for m in out["messages"]] == ["is this secret ok?", "model answer"]
    graph.invoke({"messages": [HumanMessage("another secret")]}, second)
    out = graph.invoke(Command(resume={"action": "replace", "text": "Please ask support."}), second)
    assert [m.content for m in out["messages"]] == ["another secret", "Please ask support."]
    assert model.calls == 1


def test_review_is_skipped_when_nothing_triggers(protect: Protect, rules: Any, chat: Any) -> None:
    node = guard_node(rules.mask(), field="output", review=True, protect=protect)
    graph = build(chat("all fine"), output_node=node, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t2"}}
    out = graph.invoke({"messages": [HumanMessage("q")]}, config)
    assert out["messages"][-1].content == "all fine" and not graph.get_state(config).interrupts


def test_review_answers_are_validated(protect: Protect, rules: Any) -> None:
    response = protect.invoke({"input": "secret"}, prioritized_rulesets=rules.block())
    assert resolve_review("approve", response, "secret")[0] == "BLOCKED"
    with pytest.raises(ValueError, match="unknown review answer"):
        resolve_review({"action": "replace"}, response, "secret")

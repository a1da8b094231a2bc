"""guard_node in LangGraph graphs, and human review of a triggered decision through interrupt()."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command

from stageguard import Protect
from stageguard.checkpoints import output_payload
from stageguard.langchain import EVENT_NAME, GuardrailTriggered, guard_node, resolve_review
from stageguard.langchain._convert import to_turn
from stageguard.langchain._graph import InvalidReview, parse_decision
from stageguard.rules import ActionType


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
    """START -> [input guard] -> model -> [output guard] -> END; ``routed``: no static edge out of the
    input guard (it routes with ``Command``)."""
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


async def pending(graph: Any, config: Any, use_async: bool) -> list[Any]:
    state = await graph.aget_state(config) if use_async else graph.get_state(config)
    return [i.value for i in state.interrupts]


# -- guarding and routing


@both
async def test_input_guard_answers_and_skips_the_model(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    model = chat("never")
    # goto_on_block defaults to END for an input guard
    node = guard_node(rules.block("No."), goto_on_pass="model", decision_key="decision", protect=protect)
    graph = build(model, input_node=node, routed=True)
    out = await run(graph, {"messages": [HumanMessage("the secret?")]}, use_async)
    assert [m.content for m in out["messages"]] == ["the secret?", "No."]
    assert isinstance(out["messages"][-1], AIMessage) and model.calls == 0
    assert out["decision"]["status"] == "triggered" and out["decision"]["action"] == "OVERRIDE"
    out = await run(graph, {"messages": [HumanMessage("hello")]}, use_async)
    assert out["messages"][-1].content == "never" and out["decision"]["status"] == "not_triggered"


@both
async def test_default_wiring_blocks_an_input_override(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    # a static edge to the model: a node can't cancel it, so the override is raised, not appended
    model = chat("model answer", "model answer")
    graph = build(model, input_node=guard_node(rules.block("No."), protect=protect))
    with pytest.raises(GuardrailTriggered) as caught:
        await run(graph, {"messages": [HumanMessage("the secret?")]}, use_async)
    assert caught.value.override == "No." and caught.value.text == "the secret?"
    assert model.calls == 0
    out = await run(graph, {"messages": [HumanMessage("hello")]}, use_async)
    assert out["messages"][-1].content == "model answer" and model.calls == 1


def test_default_wiring_redacts_an_input_in_place(protect: Protect, rules: Any, chat: Any) -> None:
    model = chat("ok")
    graph = build(model, input_node=guard_node(rules.mask(), protect=protect))
    out = graph.invoke({"messages": [HumanMessage("my secret code")]})
    assert [m.content for m in out["messages"]] == ["my <SECRET> code", "ok"]
    assert model.seen[0][-1].content == "my <SECRET> code"


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


def test_payloads_come_from_the_core_mapping(
    protect: Protect, rules: Any, chat: Any, recorder: list[Any]
) -> None:
    calls = [
        {"name": "weather", "args": {"city": "Paris"}, "id": "c1"},
        {"name": "weather", "args": {"city": "Lyon"}, "id": "c2"},  # asked for, never ran
    ]
    history = [
        SystemMessage("be brief"),
        HumanMessage("weather in Paris?"),
        AIMessage("", tool_calls=calls),
        ToolMessage("backend down", tool_call_id="c1", status="error"),
        AIMessage("It failed."),
        HumanMessage("and in Rome?"),
    ]
    graph = build(
        chat("Sunny in Rome."),
        input_node=guard_node(rules.record, protect=protect),
        output_node=guard_node(rules.record, field="output", context_key="docs", protect=protect),
    )
    graph.invoke({"messages": history, "docs": ["Rome: sunny"]})
    checked_input, checked_output = recorder
    # the input: the conversation before it, the calls that ran (the failed one included)
    assert checked_input.input == "and in Rome?" and checked_input.output is None
    assert [m.role for m in checked_input.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert [(c.id, c.status) for c in checked_input.tool_calls] == [("c1", "error")]
    # the answer: with the user's request, and the same payload the other adapters build
    assert checked_output.input == "and in Rome?" and checked_output.output == "Sunny in Rome."
    assert len(checked_output.messages) == 6 and checked_output.context == ["Rome: sunny"]
    assert checked_output == output_payload("Sunny in Rome.", to_turn(history, context=["Rome: sunny"]))


def test_works_with_messages_state_and_reports_events(protect: Protect, rules: Any) -> None:
    graph = StateGraph(MessagesState)
    node = guard_node(rules.block(), goto_on_pass=END, protect=protect, name="input-guard")
    graph.add_node("guard", node, destinations=(END,))
    graph.add_edge(START, "guard")
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
    model = chat("the secret is 42")
    node = guard_node(rules.mask(), field="output", on_trigger="raise", protect=protect)
    with pytest.raises(GuardrailTriggered) as caught:
        build(model, output_node=node).invoke({"messages": [HumanMessage("q")]})
    assert caught.value.override == "the <SECRET> is 42"


# -- human review


def review_graph(protect: Protect, ruleset: Any, model: Any) -> Any:
    node = guard_node(ruleset, field="output", review=True, protect=protect)
    return build(model, output_node=node, checkpointer=InMemorySaver())


@both
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"type": "approve"}, "the secret is 42"),
        ({"type": "reject"}, "the <SECRET> is 42"),
        ({"type": "reject", "message": "it leaks the code"}, "the <SECRET> is 42"),
        ({"type": "edit", "text": "the code is 42"}, "the code is 42"),
        ({"type": "respond", "message": "I'd rather not say."}, "I'd rather not say."),
    ],
)
async def test_review_of_an_answer(
    protect: Protect, rules: Any, chat: Any, use_async: bool, answer: Any, expected: str
) -> None:
    node = guard_node(rules.mask(), field="output", review=True, decision_key="decision", protect=protect)
    graph = build(chat("the secret is 42"), output_node=node, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    await run(graph, {"messages": [HumanMessage("what is it?")]}, use_async, config)
    [request] = await pending(graph, config, use_async)
    assert request["text"] == "the secret is 42" and request["proposed"] == "the <SECRET> is 42"
    assert request["action"] == "REDACT" and request["triggered_rules"][0]["metric"] == "lc_secret_spans"
    assert request["allowed_decisions"] == ["approve", "reject", "edit", "respond"]
    out = await run(graph, Command(resume=answer), use_async, config)
    assert [m.content for m in out["messages"]] == ["what is it?", expected]
    assert out["decision"]["review"] == parse_decision(answer)


@pytest.mark.parametrize(
    ("answer", "expected", "model_calls"),
    [
        ({"type": "approve"}, ["is this secret ok?", "model answer"], 1),
        ({"type": "reject"}, ["is this secret ok?", "BLOCKED"], 0),
        ({"type": "edit", "text": "is this ok?"}, ["is this ok?", "model answer"], 1),
        (
            {"type": "respond", "message": "Please ask support."},
            ["is this secret ok?", "Please ask support."],
            0,
        ),
    ],
)
def test_review_of_an_input(
    protect: Protect, rules: Any, chat: Any, answer: Any, expected: list[str], model_calls: int
) -> None:
    model = chat("model answer")
    node = guard_node(rules.block(), review=True, goto_on_pass="model", protect=protect)
    graph = build(model, input_node=node, checkpointer=InMemorySaver(), routed=True)
    config = {"configurable": {"thread_id": "a"}}
    graph.invoke({"messages": [HumanMessage("is this secret ok?")]}, config)
    out = graph.invoke(Command(resume=answer), config)
    assert [m.content for m in out["messages"]] == expected
    assert model.calls == model_calls
    if model_calls:
        assert model.seen[0][-1].content == expected[0]  # what the model was asked


def test_a_reviewer_answer_to_an_input_raises_without_routing(
    protect: Protect, rules: Any, chat: Any
) -> None:
    model = chat("model answer")
    node = guard_node(rules.mask(), review=True, protect=protect)
    graph = build(model, input_node=node, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "r"}}
    graph.invoke({"messages": [HumanMessage("is this secret ok?")]}, config)
    with pytest.raises(GuardrailTriggered) as caught:
        graph.invoke(Command(resume={"type": "respond", "message": "Ask support."}), config)
    # the reviewer's answer replaces a proposed redaction: the error reports what was decided
    assert caught.value.override == "Ask support." and model.calls == 0
    assert caught.value.response.action_result.type is ActionType.OVERRIDE


@both
@pytest.mark.parametrize(
    "bad",
    [
        "APPROVE",
        "approve",  # bare strings meant the opposite before: refused, not reinterpreted
        {"action": "replace"},
        {"type": "respond"},
        {"type": "edit", "text": 42},
        {"type": "reject", "reason": "typo for message"},
        {"type": ["approve"]},
        7,
    ],
    ids=[
        "upper-case",
        "bare-string",
        "old-replace",
        "respond-no-message",
        "edit-wrong-type",
        "unknown-key",
        "list-type",
        "int",
    ],
)
async def test_an_invalid_resume_asks_again(
    protect: Protect, rules: Any, chat: Any, use_async: bool, bad: Any
) -> None:
    graph = review_graph(protect, rules.mask(), chat("the secret is 42"))
    config = {"configurable": {"thread_id": "bad"}}
    await run(graph, {"messages": [HumanMessage("what is it?")]}, use_async, config)
    for _ in range(2):  # answering wrongly twice still leaves the thread usable
        await run(graph, Command(resume=bad), use_async, config)
        [request] = await pending(graph, config, use_async)
        assert request["error"].startswith(f"invalid review decision {bad!r}")
        assert "{'type': 'approve'}" in request["error"] and request["text"] == "the secret is 42"
    out = await run(graph, Command(resume={"type": "reject"}), use_async, config)
    assert out["messages"][-1].content == "the <SECRET> is 42"
    assert not await pending(graph, config, use_async)


@pytest.mark.parametrize("field", ["input", "output"])
def test_a_report_only_ruleset_never_interrupts(protect: Protect, rules: Any, chat: Any, field: str) -> None:
    node = guard_node(rules.note(), field=field, review=True, decision_key="decision", protect=protect)
    graph = build(
        chat("a secret answer"),
        input_node=node if field == "input" else None,
        output_node=node if field == "output" else None,
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "note"}}
    out = graph.invoke({"messages": [HumanMessage("a secret question")]}, config)
    assert not graph.get_state(config).interrupts
    assert [m.content for m in out["messages"]] == ["a secret question", "a secret answer"]
    assert out["decision"]["status"] == "triggered" and out["decision"]["action"] == "PASSTHROUGH"


def test_review_is_skipped_when_nothing_triggers(protect: Protect, rules: Any, chat: Any) -> None:
    graph = review_graph(protect, rules.mask(), chat("all fine"))
    config = {"configurable": {"thread_id": "t2"}}
    out = graph.invoke({"messages": [HumanMessage("q")]}, config)
    assert out["messages"][-1].content == "all fine" and not graph.get_state(config).interrupts


@both
async def test_review_without_a_checkpointer_fails_on_first_run(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    node = guard_node(rules.mask(), field="output", review=True, protect=protect)
    graph = build(chat("all fine"), output_node=node)  # no checkpointer
    # even when nothing triggers: the mistake shows in the first test run, not on the first trigger
    with pytest.raises(ValueError, match="needs a checkpointer"):
        await run(graph, {"messages": [HumanMessage("q")]}, use_async)


def test_resolve_review(protect: Protect, rules: Any) -> None:
    response = protect.invoke({"input": "secret"}, prioritized_rulesets=rules.block())
    assert resolve_review({"type": "approve"}, response, "secret") == ("secret", ActionType.PASSTHROUGH)
    assert resolve_review({"type": "reject"}, response, "secret") == ("BLOCKED", ActionType.OVERRIDE)
    assert resolve_review({"type": "edit", "text": "x"}, response, "secret") == ("x", ActionType.REDACT)
    assert resolve_review({"type": "respond", "message": "y"}, response, "secret") == (
        "y",
        ActionType.OVERRIDE,
    )
    with pytest.raises(InvalidReview, match="needs 'message'"):
        resolve_review({"type": "respond"}, response, "secret")
    assert issubclass(InvalidReview, ValueError)

"""ProtectMiddleware tool payloads: every call that ran once (failed ones included), the checked one once."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import ToolException, tool

from stageguard import Payload, Protect
from stageguard.langchain import ProtectMiddleware

ran: list[str] = []


@tool
def weather(city: str) -> str:
    """Current weather in a city."""
    ran.append(city)
    return f"It is sunny in {city}."


@tool
def flaky(x: str) -> str:
    """Always fails."""
    raise ToolException("backend unavailable")


flaky.handle_tool_error = True  # the model sees the error as an error ToolMessage
TOOLS = [weather, flaky]


@pytest.fixture(autouse=True)
def _clear() -> None:
    ran.clear()


def call(name: str, args: dict[str, Any], id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": id}])


def score(metric: str, payload: Payload) -> float:
    from stageguard.scorers.agent import ToolErrorRateScorer, ToolSelectionQualityScorer

    scorer = ToolErrorRateScorer() if metric == "tool_error_rate" else ToolSelectionQualityScorer()
    value = scorer.score(payload).value
    assert isinstance(value, float)
    return value


both = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


async def run(agent: Any, text: str, use_async: bool) -> list[Any]:
    value = {"messages": [HumanMessage(text)]}
    out = await agent.ainvoke(value) if use_async else agent.invoke(value)
    return list(out["messages"])


@both
async def test_result_check_has_the_call_once_and_no_pending_siblings(
    protect: Protect, rules: Any, chat: Any, recorder: list[Payload], builtin: Any, use_async: bool
) -> None:
    builtin("agent")
    model = chat(
        AIMessage(
            content="",
            tool_calls=[
                {"name": "flaky", "args": {"x": "1"}, "id": "f1"},
                {"name": "weather", "args": {"city": "Oslo"}, "id": "w1"},
            ],
        ),
        call("flaky", {"x": "2"}, "f2"),
        "Done.",
    )
    agent = create_agent(
        model, TOOLS, middleware=[ProtectMiddleware(tool_result_stage=rules.record, protect=protect)]
    )
    await run(agent, "What is the weather in Oslo?", use_async)
    by_call = {p.tool_calls[-1].id: p for p in recorder}
    first = by_call["f1"]
    # one failed call of one: the sibling weather call had not run when flaky's result was checked,
    # unless the tools ran one after the other (then it is there, once, with its result)
    assert [c.id for c in first.tool_calls].count("f1") == 1
    assert all(c.status is not None for c in first.tool_calls)
    assert first.input == "backend unavailable" and first.tool_calls[-1].status == "error"
    second = by_call["f2"]
    assert [c.id for c in second.tool_calls if c.name == "flaky"] == ["f1", "f2"]
    assert [c.id for c in second.tool_calls].count("f2") == 1
    failed = [c for c in second.tool_calls if c.failed]
    assert len(failed) == 2 and len(second.tool_calls) == 3


@both
async def test_tool_error_rate_at_the_result_check(
    protect: Protect, rules: Any, chat: Any, recorder: list[Payload], builtin: Any, use_async: bool
) -> None:
    builtin("agent")
    model = chat(call("flaky", {"x": "1"}, "f1"), call("flaky", {"x": "2"}, "f2"), "Done.")
    agent = create_agent(
        model, TOOLS, middleware=[ProtectMiddleware(tool_result_stage=rules.record, protect=protect)]
    )
    await run(agent, "do it", use_async)
    first, second = recorder
    assert score("tool_error_rate", first) == 1.0  # one failed call of one (was 0.5)
    assert score("tool_error_rate", second) == 1.0  # two of two (was 0.667)


def test_tool_selection_quality_at_the_result_check_has_no_repeat_penalty(
    protect: Protect, rules: Any, chat: Any, recorder: list[Payload], builtin: Any
) -> None:
    builtin("agent")
    model = chat(call("weather", {"city": "Oslo"}, "w1"), "It is sunny in Oslo.")
    agent = create_agent(
        model, TOOLS, middleware=[ProtectMiddleware(tool_result_stage=rules.record, protect=protect)]
    )
    agent.invoke({"messages": [HumanMessage("What is the weather in Oslo?")]})
    [payload] = recorder
    assert [(c.id, c.status) for c in payload.tool_calls] == [("w1", "success")]
    assert score("tool_selection_quality", payload) == 1.0


@both
async def test_tool_call_check_sees_failed_calls(
    protect: Protect, chat: Any, builtin: Any, use_async: bool
) -> None:
    """A rule can stop an agent calling tools after repeated failures."""
    builtin("agent")
    model = chat(call("flaky", {"x": "1"}, "f1"), call("weather", {"city": "Oslo"}, "w1"), "Gave up.")
    stop = [
        {
            "rules": [{"metric": "tool_error_rate", "operator": "gte", "target_value": 0.5}],
            "action": {"type": "OVERRIDE", "choices": ["Too many tool failures."]},
        }
    ]
    agent = create_agent(model, TOOLS, middleware=[ProtectMiddleware(tool_call_stage=stop, protect=protect)])
    messages = await run(agent, "What is the weather in Oslo?", use_async)
    assert ran == []  # flaky failed, so the weather call was blocked before it ran
    results = {m.tool_call_id: (m.status, m.content) for m in messages if isinstance(m, ToolMessage)}
    assert results["w1"] == ("error", "Too many tool failures.")


def test_tool_call_payload_has_the_model_id_and_the_plain_argument(
    protect: Protect, rules: Any, chat: Any, recorder: list[Payload]
) -> None:
    model = chat(
        AIMessage(
            content="",
            tool_calls=[
                {"name": "weather", "args": {"city": "Oslo"}, "id": "w1"},
                {"name": "flaky", "args": {"x": "1"}, "id": "f1"},
            ],
        ),
        "ok",
    )
    agent = create_agent(
        model, TOOLS, middleware=[ProtectMiddleware(tool_call_stage=rules.record, protect=protect)]
    )
    agent.invoke({"messages": [HumanMessage("Weather in Oslo?")]})
    first, second = recorder
    # a single string argument is checked as is; siblings of the same step are not in the payload
    assert first.output == "Oslo" and first.input == "Weather in Oslo?"
    assert [(c.id, c.status) for c in first.tool_calls] == [("w1", None)]
    assert [(c.id, c.status) for c in second.tool_calls] == [("f1", None)]
    assert first.metadata == {"tool": "weather"}


def test_a_blocked_call_never_ran_so_later_payloads_leave_it_out(
    protect: Protect, rules: Any, chat: Any, recorder: list[Payload]
) -> None:
    model = chat(
        call("weather", {"city": "secret city"}, "w1"), call("weather", {"city": "Oslo"}, "w2"), "Sunny."
    )
    middleware = ProtectMiddleware(tool_call_stage=rules.record + rules.block("Blocked."), protect=protect)
    messages = create_agent(model, TOOLS, middleware=[middleware]).invoke({"messages": [HumanMessage("go")]})
    assert ran == ["Oslo"]
    assert [(m.tool_call_id, m.status) for m in messages["messages"] if isinstance(m, ToolMessage)] == [
        ("w1", "error"),
        ("w2", "success"),
    ]
    assert [(c.id, c.status) for c in recorder[-1].tool_calls] == [("w2", None)]

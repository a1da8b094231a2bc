"""ProtectMiddleware on real create_agent agents with a fake tool-calling chat model."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import ToolException, tool

from stageguard import Protect
from stageguard.langchain import EVENT_NAME, GuardrailTriggered, ProtectMiddleware


class Tools:
    """Tools that record what they were called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        calls = self.calls

        @tool
        def lookup(query: str) -> str:
            """Look something up."""
            calls.append(("lookup", {"query": query}))
            return f"Result for {query}: the secret code is 42."

        @tool
        def weather(city: str) -> str:
            """Current weather in a city."""
            calls.append(("weather", {"city": city}))
            return f"It is sunny in {city}."

        @tool
        def flaky(x: str) -> str:
            """Always fails."""
            calls.append(("flaky", {"x": x}))
            raise ToolException("backend unavailable")

        flaky.handle_tool_error = True  # the model sees the error as an error ToolMessage
        self.all = [lookup, weather, flaky]


def call(name: str, args: dict[str, Any], id: str = "c1", text: str = "") -> AIMessage:
    return AIMessage(content=text, tool_calls=[{"name": name, "args": args, "id": id}])


async def run(agent: Any, text: str, use_async: bool) -> list[Any]:
    value = {"messages": [HumanMessage(text)]}
    out = await agent.ainvoke(value) if use_async else agent.invoke(value)
    return list(out["messages"])


@pytest.fixture
def tools() -> Tools:
    return Tools()


both = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


@both
async def test_input_override_ends_the_run_before_the_model(
    protect: Protect, rules: Any, chat: Any, tools: Tools, use_async: bool
) -> None:
    model = chat("never")
    agent = create_agent(
        model,
        tools.all,
        middleware=[ProtectMiddleware(input_stage=rules.block("Can't help."), protect=protect)],
    )
    messages = await run(agent, "what is the secret?", use_async)
    assert [type(m) for m in messages] == [HumanMessage, AIMessage]
    assert messages[-1].content == "Can't help."
    assert model.calls == 0 and tools.calls == []


@both
async def test_input_redaction_reaches_the_model(
    protect: Protect, rules: Any, chat: Any, tools: Tools, use_async: bool
) -> None:
    model = chat("ok")
    agent = create_agent(
        model, tools.all, middleware=[ProtectMiddleware(input_stage=rules.mask(), protect=protect)]
    )
    messages = await run(agent, "my secret is blue", use_async)
    assert model.seen[0][-1].content == "my <SECRET> is blue"
    assert messages[0].content == "my <SECRET> is blue" and len(messages) == 2


@both
async def test_answer_override_replaces_it_and_drops_tool_calls(
    protect: Protect, rules: Any, chat: Any, tools: Tools, use_async: bool
) -> None:
    model = chat(call("lookup", {"query": "x"}, text="the secret is..."), "never")
    agent = create_agent(
        model,
        tools.all,
        middleware=[ProtectMiddleware(output_stage=rules.block("Filtered."), protect=protect)],
    )
    messages = await run(agent, "hi", use_async)
    assert [m.content for m in messages] == ["hi", "Filtered."]
    assert messages[-1].tool_calls == [] and tools.calls == [] and model.calls == 1


@both
async def test_answer_redaction_keeps_tool_calls(
    protect: Protect, rules: Any, chat: Any, tools: Tools, use_async: bool
) -> None:
    model = chat(call("weather", {"city": "Paris"}, text="checking the secret weather"), "Sunny.")
    agent = create_agent(
        model, tools.all, middleware=[ProtectMiddleware(output_stage=rules.mask(), protect=protect)]
    )
    messages = await run(agent, "weather?", use_async)
    assert messages[1].content == "checking the <SECRET> weather" and messages[1].tool_calls
    assert tools.calls == [("weather", {"city": "Paris"})]
    assert messages[-1].content == "Sunny."


@both
async def test_blocked_tool_call_never_runs_and_the_model_sees_an_error(
    protect: Protect, rules: Any, chat: Any, tools: Tools, use_async: bool
) -> None:
    model = chat(call("lookup", {"query": "the secret files"}), "I could not look that up.")
    agent = create_agent(
        model,
        tools.all,
        middleware=[ProtectMiddleware(tool_call_stage=rules.block("Tool call blocked."), protect=protect)],
    )
    messages = await run(agent, "find it", use_async)
    assert tools.calls == []
    blocked = [m for m in messages if isinstance(m, ToolMessage)]
    assert len(blocked) == 1 and blocked[0].status == "error" and blocked[0].content == "Tool call blocked."
    assert isinstance(model.seen[1][-1], ToolMessage) and model.seen[1][-1].status == "error"
    assert messages[-1].content == "I could not look that up."


@both
async def test_blocked_tool_call_can_end_the_run(
    protect: Protect, rules: Any, chat: Any, tools: Tools, use_async: bool
) -> None:
    both_calls = AIMessage(
        content="",
        tool_calls=[
            {"name": "lookup", "args": {"query": "secret"}, "id": "c1"},
            {"name": "weather", "args": {"city": "Rome"}, "id": "c2"},
        ],
    )
    model = chat(both_calls, "never")
    middleware = ProtectMiddleware(
        tool_call_stage=rules.block("Stopped."), on_blocked_tool="end", protect=protect
    )
    agent = create_agent(model, tools.all, middleware=[middleware])
    messages = await run(agent, "go", use_async)
    assert tools.calls == [] and model.calls == 1
    assert messages[-1].content == "Stopped." and isinstance(messages[-1], AIMessage)
    assert {m.tool_call_id for m in messages if isinstance(m, ToolMessage)} == {"c1", "c2"}


@both
async def test_redacted_tool_arguments_are_what_the_tool_gets(
    protect: Protect, rules: Any, chat: Any, tools: Tools, use_async: bool
) -> None:
    model = chat(call("lookup", {"query": "my secret plan"}), "done")
    agent = create_agent(
        model, tools.all, middleware=[ProtectMiddleware(tool_call_stage=rules.mask(), protect=protect)]
    )
    messages = await run(agent, "go", use_async)
    assert tools.calls == [("lookup", {"query": "my <SECRET> plan"})]
    assert messages[1].tool_calls[0]["args"] == {"query": "my <SECRET> plan"}


@both
async def test_tool_result_is_redacted_before_the_model_sees_it(
    protect: Protect, rules: Any, chat: Any, tools: Tools, use_async: bool
) -> None:
    model = chat(call("lookup", {"query": "code"}), "done")
    agent = create_agent(
        model, tools.all, middleware=[ProtectMiddleware(tool_result_stage=rules.mask(), protect=protect)]
    )
    messages = await run(agent, "go", use_async)
    result = next(m for m in messages if isinstance(m, ToolMessage))
    assert result.content == "Result for code: the <SECRET> code is 42."
    assert model.seen[1][-1].content == result.content


@both
async def test_blocked_tool_result_can_end_the_run(
    protect: Protect, rules: Any, chat: Any, tools: Tools, use_async: bool
) -> None:
    model = chat(call("lookup", {"query": "code"}), "never")
    middleware = ProtectMiddleware(
        tool_result_stage=rules.block("Unsafe tool output."), on_blocked_tool="end", protect=protect
    )
    agent = create_agent(model, tools.all, middleware=[middleware])
    messages = await run(agent, "go", use_async)
    assert model.calls == 1 and tools.calls == [("lookup", {"query": "code"})]
    result = next(m for m in messages if isinstance(m, ToolMessage))
    assert result.status == "error" and result.content == "Unsafe tool output."
    assert messages[-1].content == "Unsafe tool output."


@both
async def test_payloads_carry_tools_results_errors_and_context(
    protect: Protect, rules: Any, chat: Any, tools: Tools, recorder: list[Any], use_async: bool
) -> None:
    model = chat(
        AIMessage(
            content="",
            tool_calls=[
                {"name": "weather", "args": {"city": "Oslo"}, "id": "w1"},
                {"name": "flaky", "args": {"x": "1"}, "id": "f1"},
            ],
        ),
        "It is sunny in Oslo.",
    )
    middleware = ProtectMiddleware(
        output_stage=rules.record, tool_call_stage=rules.record, context_tools=["weather"], protect=protect
    )
    agent = create_agent(model, tools.all, middleware=[middleware])
    await run(agent, "Weather in Oslo?", use_async)
    call_checks = [p for p in recorder if p.tool_calls and p.tool_calls[-1].status is None]
    assert [p.tool_calls[-1].name for p in call_checks] == ["weather", "flaky"]
    assert call_checks[0].input == "Weather in Oslo?" and call_checks[0].output == "Oslo"
    answer = next(p for p in recorder if p.output == "It is sunny in Oslo.")
    assert answer.input == "Weather in Oslo?"
    assert answer.context == ["It is sunny in Oslo."]
    by_name = {c.name: c for c in answer.tool_calls}
    assert by_name["weather"].status == "success" and by_name["weather"].result == "It is sunny in Oslo."
    assert by_name["flaky"].status == "error" and "backend unavailable" in (by_name["flaky"].error or "")
    assert {t.name for t in answer.tools} == {"lookup", "weather", "flaky"}
    # the conversation before the answer (the answer is the checked text)
    assert [m.role for m in answer.messages] == ["user", "assistant", "tool", "tool"]


def test_tool_error_rate_builtin_blocks_a_failing_agent(
    protect: Protect, chat: Any, tools: Tools, builtin: Any
) -> None:
    builtin("agent")
    model = chat(call("flaky", {"x": "1"}), "Everything worked perfectly.")
    rulesets = [
        {
            "rules": [{"metric": "tool_error_rate", "operator": "gt", "target_value": 0.5}],
            "action": {"type": "OVERRIDE", "choices": ["A tool failed; please try again later."]},
        }
    ]
    agent = create_agent(
        model, tools.all, middleware=[ProtectMiddleware(output_stage=rulesets, protect=protect)]
    )
    out = agent.invoke({"messages": [HumanMessage("do it")]})
    assert out["messages"][-1].content == "A tool failed; please try again later."


def test_tool_selection_quality_builtin_blocks_a_wrong_tool(
    protect: Protect, chat: Any, tools: Tools, builtin: Any
) -> None:
    builtin("agent")
    model = chat(
        call("lookup", {"query": "stock price of ACME"}, id="bad"),
        call("weather", {"city": "Oslo"}, id="good"),
        "It is sunny in Oslo.",
    )
    rulesets = [
        {
            "rules": [{"metric": "tool_selection_quality", "operator": "lt", "target_value": 0.5}],
            "action": {"type": "OVERRIDE", "choices": ["That tool does not fit the request."]},
        }
    ]
    agent = create_agent(
        model, tools.all, middleware=[ProtectMiddleware(tool_call_stage=rulesets, protect=protect)]
    )
    out = agent.invoke({"messages": [HumanMessage("What is the weather in Oslo?")]})
    assert tools.calls == [("weather", {"city": "Oslo"})]
    results = {m.tool_call_id: (m.status, m.content) for m in out["messages"] if isinstance(m, ToolMessage)}
    assert results["bad"] == ("error", "That tool does not fit the request.")
    assert results["good"][0] == "success"


def test_raise_mode(protect: Protect, rules: Any, chat: Any, tools: Tools) -> None:
    middleware = ProtectMiddleware(output_stage=rules.block(), on_trigger="raise", protect=protect)
    agent = create_agent(chat("the secret"), tools.all, middleware=[middleware])
    with pytest.raises(GuardrailTriggered) as info:
        agent.invoke({"messages": [HumanMessage("hi")]})
    assert info.value.where == "output"


def test_shadow_changes_nothing(protect: Protect, rules: Any, chat: Any, tools: Tools) -> None:
    middleware = ProtectMiddleware(
        input_stage=rules.block(), output_stage=rules.block(), shadow=True, protect=protect
    )
    agent = create_agent(chat("the secret"), tools.all, middleware=[middleware])
    out = agent.invoke({"messages": [HumanMessage("a secret?")]})
    assert [m.content for m in out["messages"]] == ["a secret?", "the secret"]


def test_central_stage_changes_apply_to_a_running_agent(
    protect: Protect, rules: Any, chat: Any, tools: Tools
) -> None:
    protect.create_stage("agent-out", stage_type="central", prioritized_rulesets=rules.block("V1"))
    model = chat(*["the secret"] * 4)
    agent = create_agent(
        model, tools.all, middleware=[ProtectMiddleware(output_stage="agent-out", protect=protect)]
    )

    def answer() -> str:
        return str(agent.invoke({"messages": [HumanMessage("hi")]})["messages"][-1].content)

    assert answer() == "V1"
    protect.update_stage("agent-out", prioritized_rulesets=rules.mask())
    assert answer() == "the <SECRET>"
    protect.pause_stage("agent-out")
    assert answer() == "the secret"


def test_needs_a_stage() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        ProtectMiddleware()


# -- streaming


def test_stream_messages_never_shows_a_blocked_answer(
    protect: Protect, rules: Any, chat: Any, tools: Tools
) -> None:
    model = chat("the secret is something long enough to stream in many tokens")
    agent = create_agent(
        model,
        tools.all,
        middleware=[ProtectMiddleware(output_stage=rules.block("Filtered."), protect=protect)],
    )
    streamed = [
        chunk for chunk, _ in agent.stream({"messages": [HumanMessage("hi")]}, stream_mode="messages")
    ]
    text = " ".join(str(c.content) for c in streamed)
    assert "secret" not in text and "Filtered." in text


async def test_astream_events_show_decisions_and_no_blocked_tokens(
    protect: Protect, rules: Any, chat: Any, tools: Tools
) -> None:
    text = "the secret is something long enough to stream in many tokens"
    model = chat(text, text)
    agent = create_agent(
        model,
        tools.all,
        middleware=[ProtectMiddleware(output_stage=rules.block("Filtered."), protect=protect)],
    )
    events = [e async for e in agent.astream_events({"messages": [HumanMessage("hi")]}, version="v2")]
    tokens = [e["data"]["chunk"] for e in events if e["event"] == "on_chat_model_stream"]
    assert not any("secret" in str(t.content) for t in tokens)
    decisions = [e["data"] for e in events if e["event"] == "on_custom_event" and e["name"] == EVENT_NAME]
    assert [(d["where"], d["status"], d["action"]) for d in decisions] == [
        ("output", "triggered", "OVERRIDE")
    ]
    streamed = [
        chunk
        async for chunk, _ in agent.astream({"messages": [HumanMessage("hi")]}, stream_mode="messages")
        if isinstance(chunk, (AIMessage, AIMessageChunk))
    ]
    assert [c.content for c in streamed] == ["Filtered."]


def test_model_tokens_stream_when_there_is_no_output_stage(
    protect: Protect, rules: Any, chat: Any, tools: Tools
) -> None:
    model = chat("a perfectly fine answer in several tokens")
    agent = create_agent(
        model, tools.all, middleware=[ProtectMiddleware(input_stage=rules.block(), protect=protect)]
    )
    streamed = [
        chunk for chunk, _ in agent.stream({"messages": [HumanMessage("hi")]}, stream_mode="messages")
    ]
    assert len(streamed) > 1

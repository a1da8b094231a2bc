"""ProtectMiddleware in buffered mode: nothing unchecked reaches a consumer, in any stream or event API."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import LLMResult
from langchain_core.tools import tool

from stageguard import Protect
from stageguard.langchain import GuardrailTriggered, ProtectMiddleware

ran: list[str] = []


@tool
def lookup(query: str) -> str:
    """Look something up."""
    ran.append(query)
    return f"found {query}"


@pytest.fixture(autouse=True)
def _clear() -> None:
    ran.clear()


LONG = "the secret is something long enough to stream in many tokens"
both = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


class Ends(BaseCallbackHandler):
    """A user's callback handler: records what each model run ended with."""

    def __init__(self) -> None:
        self.ends: list[str] = []
        self.starts = 0

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts += 1

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.ends.append(response.generations[0][0].text)


async def test_astream_events_model_end_carries_the_override(protect: Protect, rules: Any, chat: Any) -> None:
    agent = create_agent(
        chat(LONG),
        [lookup],
        middleware=[ProtectMiddleware(output_stage=rules.block("Filtered."), protect=protect)],
    )
    events = [e async for e in agent.astream_events({"messages": [HumanMessage("hi")]}, version="v2")]
    ends = [e["data"]["output"] for e in events if e["event"] == "on_chat_model_end"]
    assert [m.content for m in ends] == ["Filtered."]
    assert "long enough to stream" not in repr(events)  # the blocked answer is nowhere
    starts = [e for e in events if e["event"] == "on_chat_model_start"]
    assert len(starts) == 1 and starts[0]["run_id"] == next(
        e["run_id"] for e in events if e["event"] == "on_chat_model_end"
    )


@both
async def test_callbacks_see_the_checked_answer(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    agent = create_agent(
        chat(LONG, "a fine answer"),
        [lookup],
        middleware=[ProtectMiddleware(output_stage=rules.mask(), protect=protect)],
    )
    handler = Ends()
    value = {"messages": [HumanMessage("hi")]}
    config: Any = {"callbacks": [handler]}
    for _ in range(2):
        await agent.ainvoke(value, config) if use_async else agent.invoke(value, config)
    assert handler.ends == [LONG.replace("secret", "<SECRET>"), "a fine answer"]
    assert handler.starts == 2


def test_a_raised_decision_ends_the_model_run_with_the_error(protect: Protect, rules: Any, chat: Any) -> None:
    errors: list[BaseException] = []

    class Errors(Ends):
        def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
            errors.append(error)

    handler = Errors()
    middleware = ProtectMiddleware(output_stage=rules.block(), on_trigger="raise", protect=protect)
    agent = create_agent(chat(LONG), [lookup], middleware=[middleware])
    with pytest.raises(GuardrailTriggered):
        agent.invoke({"messages": [HumanMessage("hi")]}, {"callbacks": [handler]})
    assert handler.ends == [] and handler.starts == 1
    assert [type(e) for e in errors] == [GuardrailTriggered]


@both
async def test_tool_call_only_answer_is_checked_by_the_output_stage(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    model = chat(
        AIMessage(
            content="", tool_calls=[{"name": "lookup", "args": {"query": "the secret files"}, "id": "c1"}]
        ),
        "I could not look that up.",
    )
    agent = create_agent(
        model, [lookup], middleware=[ProtectMiddleware(output_stage=rules.block("No."), protect=protect)]
    )
    value = {"messages": [HumanMessage("find it")]}
    out = await agent.ainvoke(value) if use_async else agent.invoke(value)
    assert ran == []
    [blocked] = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert (blocked.tool_call_id, blocked.status, blocked.content) == ("c1", "error", "No.")


def test_output_stage_leaves_tool_calls_to_a_tool_call_stage(protect: Protect, rules: Any, chat: Any) -> None:
    model = chat(
        AIMessage(
            content="", tool_calls=[{"name": "lookup", "args": {"query": "the secret files"}, "id": "c1"}]
        ),
        "done",
    )
    middleware = ProtectMiddleware(output_stage=rules.block(), tool_call_stage=rules.note(), protect=protect)
    create_agent(model, [lookup], middleware=[middleware]).invoke({"messages": [HumanMessage("find it")]})
    assert ran == ["the secret files"]


@both
async def test_every_new_human_message_is_checked(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    model = chat("never")
    agent = create_agent(
        model, [lookup], middleware=[ProtectMiddleware(input_stage=rules.block("No."), protect=protect)]
    )
    value = {"messages": [HumanMessage("my secret is 42"), HumanMessage("what did I just say?")]}
    out = await agent.ainvoke(value) if use_async else agent.invoke(value)
    assert model.calls == 0 and out["messages"][-1].content == "No."


def test_each_new_human_message_is_redacted(protect: Protect, rules: Any, chat: Any) -> None:
    model = chat("ok")
    agent = create_agent(
        model, [lookup], middleware=[ProtectMiddleware(input_stage=rules.mask(), protect=protect)]
    )
    out = agent.invoke({"messages": [HumanMessage("secret one"), HumanMessage("secret two")]})
    assert [m.content for m in model.seen[0]] == ["<SECRET> one", "<SECRET> two"]
    assert [m.content for m in out["messages"][:2]] == ["<SECRET> one", "<SECRET> two"]


def test_input_messages_last_checks_only_the_latest(protect: Protect, rules: Any, chat: Any) -> None:
    model = chat("ok")
    middleware = ProtectMiddleware(input_stage=rules.block(), input_messages="last", protect=protect)
    agent = create_agent(model, [lookup], middleware=[middleware])
    agent.invoke({"messages": [HumanMessage("my secret"), HumanMessage("hi")]})
    assert model.calls == 1


def test_input_messages_all_checks_the_history_given(protect: Protect, rules: Any, chat: Any) -> None:
    history = [HumanMessage("my secret"), AIMessage("noted"), HumanMessage("hi")]
    new_only = chat("ok")
    create_agent(
        new_only, [lookup], middleware=[ProtectMiddleware(input_stage=rules.block(), protect=protect)]
    ).invoke({"messages": history})
    assert new_only.calls == 1  # the history was an earlier turn's
    every = chat("ok")
    middleware = ProtectMiddleware(input_stage=rules.block("No."), input_messages="all", protect=protect)
    out = create_agent(every, [lookup], middleware=[middleware]).invoke({"messages": history})
    assert every.calls == 0 and out["messages"][-1].content == "No."


async def test_a_failing_model_call_is_still_reported(protect: Protect, rules: Any, chat: Any) -> None:
    class Down(type(chat())):  # type: ignore[misc]
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("model down")

    agent = create_agent(
        Down(messages=iter([])),
        [lookup],
        middleware=[ProtectMiddleware(output_stage=rules.block(), protect=protect)],
    )
    events: list[Any] = []
    with pytest.raises(ConnectionError):
        async for event in agent.astream_events({"messages": [HumanMessage("hi")]}, version="v2"):
            events.append(event)
    model_events = [e["event"] for e in events if e["event"].startswith("on_chat_model")]
    assert model_events == ["on_chat_model_start"]  # v2 reports a model error as its parent's error


class _ModelWatch(AgentMiddleware):
    """After ProtectMiddleware in the list, so it sees the request the model is called with."""

    def __init__(self) -> None:
        self.quiet: list[bool] = []

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        self.quiet.append(bool(request.model.disable_streaming))
        return handler(request)

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        self.quiet.append(bool(request.model.disable_streaming))
        return await handler(request)


@both
async def test_the_model_is_kept_from_streaming_only_when_someone_listens(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    """Buffered mode calls a copy of the model with streaming off, so no unchecked token reaches a
    listener; with no callback handler there is no listener, and the model is called as it is
    (LangChain's ModelRequest.override costs about 20 µs)."""
    watch = _ModelWatch()
    agent = create_agent(
        chat("fine", "fine"),
        [lookup],
        middleware=[ProtectMiddleware(output_stage=rules.mask(), protect=protect), watch],
    )
    value = {"messages": [HumanMessage("hi")]}
    for config in (None, {"callbacks": [Ends()]}):
        await agent.ainvoke(value, config) if use_async else agent.invoke(value, config)
    assert watch.quiet == [False, True]

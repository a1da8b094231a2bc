"""ProtectMiddleware(review=True): tool calls a stage flags for review wait for a person's decision
(LangGraph interrupt, HumanInTheLoopMiddleware's request and decision shapes), on real create_agent
agents with a checkpointer and a fake tool-calling model."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from stageguard import Protect
from stageguard.langchain import ProtectMiddleware
from stageguard.langchain._middleware import BLOCKED

both = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
_threads = itertools.count()


def held(message: str = "Held: a person must confirm this.") -> list[dict[str, Any]]:
    """Override a call that mentions a secret, after a person's review."""
    return [
        {
            "rules": [{"metric": "lc_secret", "operator": "gt", "target_value": 0.5}],
            "action": {"type": "OVERRIDE", "choices": [message], "review": True},
        }
    ]


def masked_for_review() -> list[dict[str, Any]]:
    return [
        {
            "rules": [{"metric": "lc_secret_spans", "operator": "not_empty"}],
            "action": {"type": "REDACT", "review": True},
        }
    ]


class Mail:
    """Tools that record what they ran with."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        sent = self.sent

        @tool
        def send_email(to: str, body: str) -> str:
            """Send an e-mail."""
            sent.append({"to": to, "body": body})
            return f"sent to {to}"

        @tool
        def lookup(query: str) -> str:
            """Look something up."""
            sent.append({"lookup": query})
            return "nothing found"

        self.tools = [send_email, lookup]


def calls(*specs: tuple[str, dict[str, Any], str]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": i} for n, a, i in specs])


class Run:
    """One agent thread: invoke, then resume, sync or async."""

    def __init__(self, agent: Any, use_async: bool) -> None:
        self.agent = agent
        self.use_async = use_async
        self.config: Any = {"configurable": {"thread_id": f"review-{next(_threads)}"}}

    async def __call__(self, value: Any) -> dict[str, Any]:
        if self.use_async:
            result: dict[str, Any] = await self.agent.ainvoke(value, self.config)
        else:
            result = self.agent.invoke(value, self.config)
        return result

    async def start(self, text: str) -> dict[str, Any]:
        return await self({"messages": [HumanMessage(text)]})

    async def resume(self, answer: Any) -> dict[str, Any]:
        return await self(Command(resume=answer))


def agent_with(model: Any, mail: Mail, protect: Protect, stage: Any, **options: Any) -> Any:
    middleware = ProtectMiddleware(tool_call_stage=stage, protect=protect, review=True, **options)
    return create_agent(model, mail.tools, middleware=[middleware], checkpointer=InMemorySaver())


def request_of(result: dict[str, Any]) -> dict[str, Any]:
    interrupts = result["__interrupt__"]
    assert len(interrupts) == 1
    value: dict[str, Any] = interrupts[0].value
    return value


SECRET_CALL = ("send_email", {"to": "bob@example.com", "body": "the secret plan"}, "c1")


@both
async def test_flagged_call_pauses_before_the_tool_with_hitl_request(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    run = Run(agent_with(chat(calls(SECRET_CALL), "Done."), mail, protect, held()), use_async)
    result = await run.start("mail bob")
    assert mail.sent == []  # paused before the tool ran
    request = request_of(result)
    assert set(request) == {"action_requests", "review_configs"}
    [action] = request["action_requests"]
    assert action["name"] == "send_email" and action["args"] == SECRET_CALL[1]
    assert action["tool_call_id"] == "c1" and action["stage"] == "inline"
    assert [r["metric"] for r in action["triggered_rules"]] == ["lc_secret"]
    assert action["proposed_action"] == {"type": "OVERRIDE", "message": "Held: a person must confirm this."}
    assert "send_email" in action["description"]
    assert request["review_configs"] == [
        {"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject", "respond"]}
    ]


@both
async def test_approve_runs_the_call_as_the_model_made_it(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    model = chat(calls(SECRET_CALL), "Done.")
    run = Run(agent_with(model, mail, protect, held()), use_async)
    await run.start("mail bob")
    result = await run.resume({"decisions": [{"type": "approve"}]})
    assert mail.sent == [SECRET_CALL[1]]
    assert "__interrupt__" not in result and result["messages"][-1].content == "Done."
    assert model.calls == 2  # the model is not called again on resume
    [reply] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert reply.content == "sent to bob@example.com" and reply.status == "success"


@both
async def test_edit_runs_the_call_with_the_reviewers_arguments(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    model = chat(calls(SECRET_CALL), "Done.")
    run = Run(agent_with(model, mail, protect, held()), use_async)
    await run.start("mail bob")
    edited = {"to": "bob@example.com", "body": "the plan"}
    result = await run.resume(
        {"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": edited}}]}
    )
    assert mail.sent == [edited]
    ai = next(m for m in result["messages"] if isinstance(m, AIMessage) and m.tool_calls)
    assert ai.tool_calls[0]["args"] == edited  # the conversation shows the call that ran
    assert model.seen[-1][1].tool_calls[0]["args"] == edited


@both
async def test_reject_tells_the_model_with_an_error_and_never_runs_the_tool(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    model = chat(calls(SECRET_CALL), "Not sent.", calls(SECRET_CALL), "Not sent either.")
    run = Run(agent_with(model, mail, protect, held()), use_async)
    await run.start("mail bob")
    result = await run.resume({"decisions": [{"type": "reject"}]})
    [reply] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert mail.sent == [] and result["messages"][-1].content == "Not sent."
    assert reply.status == "error" and reply.content == "Held: a person must confirm this."
    assert reply.response_metadata.get(BLOCKED) and model.seen[-1][-1].content == reply.content
    # a reason of the reviewer's own replaces the stage's override
    await run.start("mail bob again")
    result = await run.resume({"decisions": [{"type": "reject", "message": "Bob left the company."}]})
    assert mail.sent == [] and result["messages"][-2].content == "Bob left the company."


@both
async def test_respond_answers_for_the_tool(protect: Protect, chat: Any, use_async: bool) -> None:
    mail = Mail()
    model = chat(calls(SECRET_CALL), "Ok.")
    run = Run(agent_with(model, mail, protect, held()), use_async)
    await run.start("mail bob")
    result = await run.resume({"decisions": [{"type": "respond", "message": "Sent by hand."}]})
    [reply] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert mail.sent == [] and reply.content == "Sent by hand." and reply.status == "success"
    assert result["messages"][-1].content == "Ok."


@both
async def test_several_calls_one_interrupt_decisions_in_order(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    other = ("send_email", {"to": "eve@example.com", "body": "secret too"}, "c3")
    clean = ("lookup", {"query": "weather"}, "c2")
    model = chat(calls(SECRET_CALL, clean, other), "Done.")
    run = Run(agent_with(model, mail, protect, held()), use_async)
    result = await run.start("mail them")
    request = request_of(result)
    assert [a["tool_call_id"] for a in request["action_requests"]] == ["c1", "c3"]  # the clean call waits
    assert mail.sent == []
    result = await run.resume({"decisions": [{"type": "reject"}, {"type": "approve"}]})
    assert sorted(map(str, mail.sent)) == sorted(map(str, [{"lookup": "weather"}, other[1]]))
    replies = {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}
    assert replies["c1"].status == "error" and replies["c2"].status == replies["c3"].status == "success"


@both
async def test_invalid_answers_interrupt_again_with_the_error(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    run = Run(agent_with(chat(calls(SECRET_CALL), "Done."), mail, protect, held()), use_async)
    first = request_of(await run.start("mail bob"))
    bad = [
        "approve",
        {"type": "approve"},  # not wrapped in {"decisions": [...]}
        {"decisions": []},
        {"decisions": [{"type": "accept"}]},
        {"decisions": [{"type": "edit", "args": {"to": "x"}}]},
        {"decisions": [{"type": "edit", "edited_action": {"name": "lookup", "args": {"query": "x"}}}]},
        {"decisions": [{"type": "respond"}]},
        {"decisions": [{"type": "reject", "message": 3}]},
    ]
    for answer in bad:
        request = request_of(await run.resume(answer))
        assert "error" in request and "invalid review" in request["error"], answer
        assert request["action_requests"] == first["action_requests"]
        assert mail.sent == []
    result = await run.resume({"decisions": [{"type": "approve"}]})
    assert mail.sent == [SECRET_CALL[1]] and result["messages"][-1].content == "Done."


@both
async def test_redact_with_review_proposes_the_redacted_arguments(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    run = Run(agent_with(chat(calls(SECRET_CALL), "Done."), mail, protect, masked_for_review()), use_async)
    [action] = request_of(await run.start("mail bob"))["action_requests"]
    proposed = {"to": "bob@example.com", "body": "the <SECRET> plan"}
    assert action["proposed_action"] == {"type": "REDACT", "args": proposed}
    await run.resume(
        {"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": proposed}}]}
    )
    assert mail.sent == [proposed]


@both
async def test_unflagged_decisions_apply_without_review(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    model = chat(calls(SECRET_CALL), "Could not.")
    run = Run(agent_with(model, mail, protect, rules.block("Blocked.")), use_async)
    result = await run.start("mail bob")
    assert "__interrupt__" not in result and mail.sent == []
    assert [m.content for m in result["messages"] if isinstance(m, ToolMessage)] == ["Blocked."]


@both
async def test_without_review_a_flagged_action_applies(protect: Protect, chat: Any, use_async: bool) -> None:
    mail = Mail()
    model = chat(calls(SECRET_CALL), "Could not.")
    middleware = ProtectMiddleware(tool_call_stage=held("Held."), protect=protect)
    agent = create_agent(model, mail.tools, middleware=[middleware], checkpointer=InMemorySaver())
    result = await Run(agent, use_async).start("mail bob")
    assert "__interrupt__" not in result and mail.sent == []
    assert [m.content for m in result["messages"] if isinstance(m, ToolMessage)] == ["Held."]


@both
async def test_review_without_a_checkpointer_is_a_clear_error(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    middleware = ProtectMiddleware(tool_call_stage=held(), protect=protect, review=True)
    model = chat(calls(SECRET_CALL), "Done.")
    agent = create_agent(model, mail.tools, middleware=[middleware])
    value = {"messages": [HumanMessage("mail bob")]}
    with pytest.raises(ValueError, match="checkpointer"):
        await agent.ainvoke(value) if use_async else agent.invoke(value)
    assert model.calls == 0 and mail.sent == []


def test_only_a_reviewing_middleware_adds_a_graph_node(protect: Protect, chat: Any) -> None:
    """The review hook is an extra step on every model call: plain middleware must not pay for it."""
    plain = ProtectMiddleware(tool_call_stage=held(), protect=protect)
    reviewing = ProtectMiddleware(tool_call_stage=held(), protect=protect, review=True)
    assert isinstance(reviewing, ProtectMiddleware) and reviewing.name == plain.name == "ProtectMiddleware"
    nodes = set(create_agent(chat("x"), Mail().tools, middleware=[plain]).get_graph().nodes)
    assert "ProtectMiddleware.after_model" not in nodes
    nodes = set(create_agent(chat("x"), Mail().tools, middleware=[reviewing]).get_graph().nodes)
    assert "ProtectMiddleware.after_model" in nodes

    class Mine(ProtectMiddleware):  # a subclass keeps its own name and methods
        pass

    mine = Mine(tool_call_stage=held(), protect=protect, review=True)
    assert isinstance(mine, Mine) and mine.name == "Mine"
    assert type(Mine(tool_call_stage=held(), protect=protect, review=True)) is type(mine)


@both
async def test_review_with_pseudonyms_shows_them_and_the_tool_gets_the_value(
    protect: Protect, chat: Any, metric: Any, use_async: bool
) -> None:
    """The request (checkpointed with the interrupt) holds the pseudonym; the approved call runs with
    the value from the thread's vault, which outlives the pause."""

    def emails(payload: Any) -> Any:
        from stageguard import ScoreResult, Span

        text = payload.input or ""
        start = text.find("alice@example.com")
        spans = [] if start < 0 else [Span(start=start, end=start + 17, label="email", field="input")]
        return ScoreResult(value=["email"] if spans else [], spans=spans)

    metric("lc_review_emails", emails, kind="categories")
    pii = [
        {
            "rules": [{"metric": "lc_review_emails", "operator": "not_empty"}],
            "action": {"type": "REDACT", "strategy": "pseudonym"},
        }
    ]
    mail = Mail()
    model = chat(calls(("send_email", {"to": "<EMAIL_1>", "body": "the secret plan"}, "c1")), "Done.")
    run = Run(agent_with(model, mail, protect, held(), input_stage=pii), use_async)
    [action] = request_of(await run.start("mail alice@example.com"))["action_requests"]
    assert action["args"]["to"] == "<EMAIL_1>" and "alice@" not in str(action)
    assert "alice@" not in str(run.agent.get_state(run.config).values)
    await run.resume({"decisions": [{"type": "approve"}]})
    assert mail.sent == [{"to": "alice@example.com", "body": "the secret plan"}]

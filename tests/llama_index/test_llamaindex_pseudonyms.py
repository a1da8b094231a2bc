"""Pseudonyms in a guarded agent run: the model sees <EMAIL_1>, the tool and the user get the value back."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ToolCallResult
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Context

from stageguard import Payload, Protect, ScoreResult, Span
from stageguard.llama_index import (
    AgentGuard,
    GuardedAgentMixin,
    GuardedFunctionAgent,
    GuardedFunctionTool,
    run_vault,
)

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect")]

EMAIL = re.compile(r"[\w.]+@[\w.]+\.\w+")
PSEUDONYMS = [
    {
        "rules": [{"metric": "li_emails", "operator": "not_empty"}],
        "action": {"type": "REDACT", "strategy": "pseudonym"},
    }
]


def emails(payload: Payload) -> ScoreResult:
    text = payload.output if payload.output is not None else (payload.input or "")
    spans = [
        Span(start=m.start(), end=m.end(), label="email", field=payload.text_field)
        for m in EMAIL.finditer(text)
    ]
    return ScoreResult(value=["email"] if spans else [], spans=spans)


@pytest.fixture(autouse=True)
def email_metric(metric: Any) -> None:
    metric("li_emails", emails, kind="categories")


class Mailer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, to: str, body: str) -> str:
        """Send an e-mail."""
        self.sent.append({"to": to, "body": body})
        return f"sent to {to}"


def mail_llm(scripted: Any, tool_call: Any) -> Any:
    """Echoes the first <EMAIL_n> of the user's message into a tool call, then reports the result."""

    def answer(messages: list[ChatMessage]) -> ChatMessage:
        last = messages[-1]
        if last.role.value == "tool":
            return ChatMessage(role="assistant", content=f"Done: {last.content}")
        found = re.search(r"<EMAIL_\d+>|\S+@\S+", last.content or "")
        return tool_call("send", call_id="m1", to=found.group() if found else "?", body="hi")

    return scripted(answer)


async def run(agent: Any, message: str) -> tuple[str, Context, list[Any]]:
    ctx = Context(agent)
    handler = agent.run(user_msg=message, ctx=ctx)
    results = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    return str(await handler), ctx, results


def guard(protect: Protect) -> AgentGuard:
    return AgentGuard(input_stage=PSEUDONYMS, output_stage=PSEUDONYMS, protect=protect)


@pytest.mark.parametrize("wrap_tool", [False, True], ids=["plain tool", "GuardedFunctionTool"])
async def test_tool_gets_the_value_the_model_never_saw(
    protect: Protect, scripted: Any, tool_call: Any, wrap_tool: bool
) -> None:
    mailer = Mailer()
    tool: Any = FunctionTool.from_defaults(mailer.send)
    if wrap_tool:  # its result is checked with the run's vault: the value keeps its pseudonym
        tool = GuardedFunctionTool(tool, output_stage=PSEUDONYMS, protect=protect)
    llm = mail_llm(scripted, tool_call)
    agent = GuardedFunctionAgent(llm=llm, tools=[tool], guard=guard(protect))
    answer, ctx, results = await run(agent, "Mail alice@example.com please")

    assert mailer.sent == [{"to": "alice@example.com", "body": "hi"}]  # restored right before it ran
    seen = json.dumps([[m.content for m in call] for call in llm.seen])
    assert "alice@example.com" not in seen.replace("sent to alice@example.com", "") or not wrap_tool
    assert "<EMAIL_1>" in seen
    assert results[0].tool_kwargs == {"to": "<EMAIL_1>", "body": "hi"}
    assert answer == "Done: sent to alice@example.com"  # restored for the user
    memory = await ctx.store.get("memory")
    history = [m.content or "" for m in await memory.aget_all()]
    assert history[0] == "Mail <EMAIL_1> please"  # memory keeps what the model saw
    assert "<EMAIL_1>" in history[-1]
    if wrap_tool:  # nothing of the run's state holds the value: the tool's result was pseudonymised too
        assert "alice@example.com" not in seen
        assert "alice@example.com" not in json.dumps(ctx.to_dict(), default=str)
    assert len(await run_vault(ctx)) == 1


async def test_a_reused_context_keeps_the_pseudonyms(protect: Protect, scripted: Any, tool_call: Any) -> None:
    mailer = Mailer()
    agent = GuardedFunctionAgent(llm=mail_llm(scripted, tool_call), tools=[mailer.send], guard=guard(protect))
    ctx = Context(agent)
    await agent.run(user_msg="Mail bob@example.org", ctx=ctx)
    second = await agent.run(user_msg="Mail carol@example.org, and bob@example.org", ctx=ctx)
    assert [m["to"] for m in mailer.sent] == ["bob@example.org", "carol@example.org"]
    assert (await run_vault(ctx)).pseudonyms == ["<EMAIL_1>", "<EMAIL_2>"]
    assert str(second) == "Done: sent to carol@example.org"


async def test_runs_have_their_own_vaults(protect: Protect, scripted: Any, tool_call: Any) -> None:
    mailer = Mailer()
    agent = GuardedFunctionAgent(llm=mail_llm(scripted, tool_call), tools=[mailer.send], guard=guard(protect))
    _, first, _ = await run(agent, "Mail dan@example.com")
    _, second, _ = await run(agent, "Mail erin@example.com")
    assert [m["to"] for m in mailer.sent] == ["dan@example.com", "erin@example.com"]
    assert (await run_vault(first)) is not (await run_vault(second))
    assert (await run_vault(first)).restore("<EMAIL_1>") == "dan@example.com"
    assert (await run_vault(second)).restore("<EMAIL_1>") == "erin@example.com"


async def test_pseudonyms_in_a_wrapped_workflow(protect: Protect, scripted: Any, tool_call: Any) -> None:
    mailer = Mailer()
    workflow = AgentWorkflow(
        agents=[FunctionAgent(name="m", llm=mail_llm(scripted, tool_call), tools=[mailer.send])]
    )
    answer, _, results = await run(guard(protect).wrap(workflow), "Mail fay@example.com")
    assert mailer.sent[0]["to"] == "fay@example.com"
    assert results[0].tool_kwargs["to"] == "<EMAIL_1>"
    assert answer == "Done: sent to fay@example.com"


async def test_a_run_without_tool_calls_restores_its_pseudonyms(protect: Protect, scripted: Any) -> None:
    """The vault of a run whose model answers at once (no tool step) still gives the user the value."""
    llm = scripted(lambda messages: ChatMessage(role="assistant", content=f"Noted: {messages[-1].content}"))
    agent = GuardedFunctionAgent(llm=llm, tools=[], guard=guard(protect))
    answer, ctx, _ = await run(agent, "Remember dan@example.com")
    seen = json.dumps([[m.content for m in call] for call in llm.seen])
    assert "dan@example.com" not in seen and "<EMAIL_1>" in seen
    assert answer == "Noted: Remember dan@example.com"  # restored for the user
    memory = await ctx.store.get("memory")
    assert [m.content for m in await memory.aget_all()] == ["Remember <EMAIL_1>", "Noted: Remember <EMAIL_1>"]
    assert (await run_vault(ctx)).restore("<EMAIL_1>") == "dan@example.com"


async def test_a_composed_guarded_agent_class_takes_a_guard(protect: Protect, scripted: Any) -> None:
    """``GuardedAgentMixin`` first among the bases of an agent class gives it the ``guard`` field."""

    class MailingAgent(GuardedAgentMixin, FunctionAgent):
        pass

    llm = scripted(lambda messages: ChatMessage(role="assistant", content=f"Noted: {messages[-1].content}"))
    agent = MailingAgent(llm=llm, tools=[], guard=guard(protect))
    assert isinstance(agent.guard, AgentGuard)
    answer, _, _ = await run(agent, "Remember erin@example.com")
    assert "erin@example.com" not in json.dumps([[m.content for m in call] for call in llm.seen])
    assert answer == "Noted: Remember erin@example.com"

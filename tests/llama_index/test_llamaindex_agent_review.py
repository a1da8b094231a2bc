"""AgentGuard(on_review=...): rule-driven review of tool calls before they run (approve/edit/...)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ToolCallResult
from llama_index.core.llms import ChatMessage
from llama_index.core.workflow import Context

from stageguard import Protect
from stageguard.llama_index import AgentGuard, GuardedFunctionAgent

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect"),
    pytest.mark.filterwarnings("ignore:is_running called from within a step:DeprecationWarning"),
]

REVIEWED = [
    {
        "rules": [{"metric": "li_deletes", "operator": "gt", "target_value": 0.5}],
        "action": {"type": "OVERRIDE", "choices": ["Deleting needs a person."], "review": True},
    }
]
REVIEWED_REDACT = [
    {
        "rules": [{"metric": "li_secret_spans", "operator": "not_empty"}],
        "action": {"type": "REDACT", "review": True},
    }
]


@pytest.fixture(autouse=True)
def delete_metric(metric: Any) -> None:
    metric(
        "li_deletes",
        # a call about to run (no result yet) to `delete`: the earlier calls of the run don't count
        lambda p: float(any(c.name == "delete" and c.status is None for c in p.tool_calls or [])),
        kind="score",
        required_fields=["tool_calls"],
    )


class Tools:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def delete(self, what: str) -> str:
        """Delete things."""
        self.calls.append(what)
        return f"deleted {what}"


def llm(scripted: Any, tool_call: Any) -> Any:
    """Asks to delete what the user names, then reports the tool's result (marking errors)."""

    def answer(messages: list[ChatMessage]) -> ChatMessage:
        last = messages[-1]
        if last.role.value == "tool":
            return ChatMessage(role="assistant", content=f"answer: {last.content}")
        return tool_call("delete", call_id="call-7", what=last.content or "")

    return scripted(answer)


class Reviewer:
    """An on_review hook answering from a script, keeping every request."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        return self.answers.pop(0)


async def run(agent: Any, message: str) -> tuple[str, list[Any]]:
    ctx = Context(agent)
    handler = agent.run(user_msg=message, ctx=ctx)
    results = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    return str(await handler), results


def agent_with(protect: Protect, scripted: Any, tool_call: Any, tools: Tools, **kwargs: Any) -> Any:
    guard = AgentGuard(output_stage=kwargs.pop("stage", REVIEWED), protect=protect, **kwargs)
    return GuardedFunctionAgent(llm=llm(scripted, tool_call), tools=[tools.delete], guard=guard)


async def test_approve_runs_the_call_and_the_request_says_why(
    protect: Protect, scripted: Any, tool_call: Any
) -> None:
    tools, reviewer = Tools(), Reviewer({"decisions": [{"type": "approve"}]})
    answer, _ = await run(agent_with(protect, scripted, tool_call, tools, on_review=reviewer), "old logs")
    assert tools.calls == ["old logs"] and answer == "answer: deleted old logs"
    (request,) = reviewer.requests
    (entry,) = request["action_requests"]
    assert entry["name"] == "delete" and entry["args"] == {"what": "old logs"}
    assert entry["tool_call_id"] == "call-7"
    assert [r["metric"] for r in entry["triggered_rules"]] == ["li_deletes"]
    assert entry["proposed_action"] == {"type": "OVERRIDE", "message": "Deleting needs a person."}
    assert request["review_configs"] == [
        {"action_name": "delete", "allowed_decisions": ["approve", "edit", "reject", "respond"]}
    ]


async def test_edit_runs_the_call_with_the_reviewers_arguments(
    protect: Protect, scripted: Any, tool_call: Any
) -> None:
    tools = Tools()
    edit = {"type": "edit", "edited_action": {"name": "delete", "args": {"what": "tmp files"}}}
    reviewer = Reviewer({"decisions": [edit]})
    answer, results = await run(
        agent_with(protect, scripted, tool_call, tools, on_review=reviewer), "everything"
    )
    assert tools.calls == ["tmp files"] and answer == "answer: deleted tmp files"
    assert results[0].tool_kwargs == {"what": "tmp files"}


async def test_reject_does_not_run_and_tells_the_model_with_an_error(
    protect: Protect, scripted: Any, tool_call: Any
) -> None:
    tools = Tools()
    reviewer = Reviewer({"decisions": [{"type": "reject", "message": "Not today."}]})
    answer, results = await run(
        agent_with(protect, scripted, tool_call, tools, on_review=reviewer), "everything"
    )
    assert tools.calls == []
    assert answer == "answer: Not today."  # the run went on: the model got the reviewer's message
    assert results[0].tool_output.is_error and results[0].tool_output.content == "Not today."


async def test_reject_without_message_tells_the_override(
    protect: Protect, scripted: Any, tool_call: Any
) -> None:
    tools = Tools()
    reviewer = Reviewer({"decisions": [{"type": "reject"}]})
    answer, _ = await run(agent_with(protect, scripted, tool_call, tools, on_review=reviewer), "everything")
    assert tools.calls == [] and answer == "answer: Deleting needs a person."


async def test_respond_answers_for_the_tool(protect: Protect, scripted: Any, tool_call: Any) -> None:
    tools = Tools()
    reviewer = Reviewer({"decisions": [{"type": "respond", "message": "Done by hand."}]})
    answer, results = await run(
        agent_with(protect, scripted, tool_call, tools, on_review=reviewer), "everything"
    )
    assert tools.calls == [] and answer == "answer: Done by hand."
    assert not results[0].tool_output.is_error


async def test_an_invalid_answer_is_asked_again_with_the_error(
    protect: Protect, scripted: Any, tool_call: Any
) -> None:
    tools = Tools()
    reviewer = Reviewer(
        "yes",
        {"decisions": [{"type": "edit", "edited_action": {"name": "other", "args": {}}}]},
        {"decisions": [{"type": "approve"}]},
    )
    await run(agent_with(protect, scripted, tool_call, tools, on_review=reviewer), "logs")
    assert tools.calls == ["logs"]
    first, second, third = reviewer.requests
    assert "error" not in first
    assert "expected a dict {'decisions': [...]}" in second["error"]
    assert "an edit keeps the tool ('delete')" in third["error"]


async def test_no_valid_answer_applies_the_action(protect: Protect, scripted: Any, tool_call: Any) -> None:
    tools = Tools()
    reviewer = Reviewer({"decisions": []}, {"decisions": [{"type": "maybe"}]})
    agent = agent_with(protect, scripted, tool_call, tools, on_review=reviewer, review_attempts=2)
    answer, _ = await run(agent, "everything")
    assert tools.calls == [] and answer == "Deleting needs a person."
    assert len(reviewer.requests) == 2


async def test_without_a_hook_the_action_applies(protect: Protect, scripted: Any, tool_call: Any) -> None:
    tools = Tools()
    answer, _ = await run(agent_with(protect, scripted, tool_call, tools), "everything")
    assert tools.calls == [] and answer == "Deleting needs a person."


async def test_sync_hook_and_redact_proposal(protect: Protect, scripted: Any, tool_call: Any) -> None:
    tools, seen = Tools(), []

    def approve(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request["action_requests"][0]["proposed_action"])
        return {"decisions": [{"type": "approve"}]}

    agent = agent_with(protect, scripted, tool_call, tools, on_review=approve, stage=REVIEWED_REDACT)
    await run(agent, "the secret file")
    assert seen == [{"type": "REDACT", "args": {"what": "the <SECRET> file"}}]
    assert tools.calls == ["the secret file"]  # approved: as the model asked


async def test_review_in_a_wrapped_agent_workflow(protect: Protect, scripted: Any, tool_call: Any) -> None:
    tools = Tools()
    reviewer = Reviewer({"decisions": [{"type": "reject", "message": "No."}]})
    workflow = AgentWorkflow(
        agents=[FunctionAgent(name="a", llm=llm(scripted, tool_call), tools=[tools.delete])]
    )
    guarded = AgentGuard(output_stage=REVIEWED, protect=protect, on_review=reviewer).wrap(workflow)
    answer, _ = await run(guarded, "everything")
    assert tools.calls == [] and answer == "answer: No." and len(reviewer.requests) == 1


def test_bad_review_options(protect: Protect) -> None:
    with pytest.raises(TypeError, match="on_review must be a callable"):
        AgentGuard(output_stage=REVIEWED, protect=protect, on_review="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="review_attempts"):
        AgentGuard(output_stage=REVIEWED, protect=protect, review_attempts=0)


async def test_review_in_a_react_agent(protect: Protect, scripted: Any) -> None:
    from stageguard.llama_index import GuardedReActAgent

    def answer(messages: list[ChatMessage]) -> ChatMessage:
        last = messages[-1].content or ""
        if "Observation:" in last:
            seen = last.split("Observation:")[-1].strip()
            return ChatMessage(role="assistant", content=f"Thought: done.\nAnswer: {seen}")
        return ChatMessage(
            role="assistant", content='Thought: x\nAction: delete\nAction Input: {"what": "all"}'
        )

    tools = Tools()
    edit = {"type": "edit", "edited_action": {"name": "delete", "args": {"what": "cache"}}}
    reviewer = Reviewer({"decisions": [edit]})
    guard = AgentGuard(output_stage=REVIEWED, protect=protect, on_review=reviewer)
    agent = GuardedReActAgent(llm=scripted(answer), tools=[tools.delete], guard=guard)
    answer_text, _ = await run(agent, "clean up")
    assert tools.calls == ["cache"] and answer_text == "deleted cache"
    assert reviewer.requests[0]["action_requests"][0]["args"] == {"what": "all"}


async def test_decisions_are_dispatched(
    protect: Protect, scripted: Any, tool_call: Any, events: list[Any]
) -> None:
    from stageguard.llama_index import GuardDecisionEvent

    reviewer = Reviewer({"decisions": [{"type": "respond", "message": "ok"}]})
    await run(agent_with(protect, scripted, tool_call, Tools(), on_review=reviewer), "x")
    reviews = [e for e in events if isinstance(e, GuardDecisionEvent) and e.hook == "tool_review"]
    assert [(e.details["tool"], e.details["id"], e.details["decision"]) for e in reviews] == [
        ("delete", "call-7", "respond")
    ]
    assert reviews[0].response.review_requested


async def test_several_calls_of_a_step_are_reviewed_together(protect: Protect, scripted: Any) -> None:
    from llama_index.core.base.llms.types import ToolCallBlock

    def answer(messages: list[ChatMessage]) -> ChatMessage:
        if messages[-1].role.value == "tool":
            results = sorted(m.content or "" for m in messages if m.role.value == "tool")
            return ChatMessage(role="assistant", content=" | ".join(results))
        blocks = [
            ToolCallBlock(tool_call_id=f"id-{w}", tool_name="delete", tool_kwargs={"what": w}) for w in "abc"
        ]
        return ChatMessage(role="assistant", blocks=blocks)

    tools = Tools()
    decisions = [
        {"type": "reject", "message": "no a"},
        {"type": "approve"},
        {"type": "respond", "message": "c by hand"},
    ]
    reviewer = Reviewer({"decisions": decisions})
    guard = AgentGuard(output_stage=REVIEWED, protect=protect, on_review=reviewer)
    agent = GuardedFunctionAgent(llm=scripted(answer), tools=[tools.delete], guard=guard)
    ctx = Context(agent)
    result = await agent.run(user_msg="clean", ctx=ctx)
    assert tools.calls == ["b"]
    assert str(result) == "c by hand | deleted b | no a"
    assert [e["tool_call_id"] for e in reviewer.requests[0]["action_requests"]] == ["id-a", "id-b", "id-c"]
    assert await ctx.store.get("stageguard_reviewed_calls") == []  # every answer was used once

"""AgentGuard: input and every step checked before tools run; an override ends the run, memory consistent."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.agent.workflow import (
    AgentStream,
    AgentWorkflow,
    CodeActAgent,
    FunctionAgent,
    ReActAgent,
    ToolCallResult,
)
from llama_index.core.llms import ChatMessage
from llama_index.core.workflow import Context

from stageguard import Payload, Protect
from stageguard.llama_index import (
    AgentGuard,
    GuardedCodeActAgent,
    GuardedFunctionAgent,
    GuardedReActAgent,
    guarded_class,
)

# LlamaIndex's own deprecations: the workflow runtime inspects agents with inspect.getmembers (pydantic
# warns), and ReActAgent still reads ctx.is_running inside a step.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect"),
    pytest.mark.filterwarnings("ignore:is_running called from within a step:DeprecationWarning"),
]


class Tools:
    """Tools that record their calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def lookup(self, query: str) -> str:
        """Look something up."""
        self.calls.append(f"lookup:{query}")
        return "the secret vault code" if "vault" in query else f"facts about {query}"

    def delete(self, what: str) -> str:
        """Delete things."""
        self.calls.append(f"delete:{what}")
        return "deleted"

    def broken(self, query: str) -> str:
        """Always fails."""
        self.calls.append("broken")
        raise RuntimeError("backend down")


def function_llm(scripted: Any, tool_call: Any, tool: str = "lookup") -> Any:
    """Asks for ``tool`` with the user's text, then answers with the tool's result."""

    def answer(messages: list[ChatMessage]) -> ChatMessage:
        last = messages[-1]
        if last.role.value == "tool":
            return ChatMessage(role="assistant", content=f"answer: {last.content}")
        text = last.content or ""
        name = "delete" if "delete" in text else tool
        return tool_call(
            name, text="let me check", **({"what": text} if name == "delete" else {"query": text})
        )

    return scripted(answer)


def react_llm(scripted: Any) -> Any:
    def answer(messages: list[ChatMessage]) -> ChatMessage:
        last = messages[-1].content or ""
        if "Observation:" in last:
            return ChatMessage(
                role="assistant", content=f"Thought: done.\nAnswer: {last.split('Observation:')[-1].strip()}"
            )
        if "delete" in last:
            return ChatMessage(
                role="assistant", content='Thought: x\nAction: delete\nAction Input: {"what": "all"}'
            )
        return ChatMessage(
            role="assistant", content='Thought: x\nAction: lookup\nAction Input: {"query": "cats"}'
        )

    return scripted(answer)


STEP_RULES = [
    {
        "rules": [{"metric": "li_calls_delete", "operator": "gt", "target_value": 0.5}],
        "action": {"type": "OVERRIDE", "choices": ["I can't delete things."]},
    },
    {
        "rules": [{"metric": "li_secret", "operator": "gt", "target_value": 0.5}],
        "action": {"type": "OVERRIDE", "choices": ["That's confidential."]},
    },
]


@pytest.fixture(autouse=True)
def tool_metrics(metric: Any) -> None:
    metric(
        "li_calls_delete",
        lambda p: float(any(c.name == "delete" for c in p.tool_calls or [])),
        kind="score",
        required_fields=["tool_calls"],
    )
    metric(
        "li_tool_errors",
        lambda p: float(sum(c.failed for c in p.tool_calls or [])),
        kind="number",
        required_fields=["tool_calls"],
    )


def guard(protect: Protect, rules: Any, **kwargs: Any) -> AgentGuard:
    return AgentGuard(
        input_stage=rules.block("Not allowed.", metric="li_input_secret"),
        output_stage=STEP_RULES,
        protect=protect,
        **kwargs,
    )


async def run(agent: Any, message: str) -> tuple[str, list[tuple[str, str]], list[Any]]:
    """Run once: the answer, the memory afterwards, and the streamed events."""
    ctx = Context(agent)
    handler = agent.run(user_msg=message, ctx=ctx)
    events = [ev async for ev in handler.stream_events() if isinstance(ev, (AgentStream, ToolCallResult))]
    result = await handler
    memory = await ctx.store.get("memory")
    messages = [(m.role.value, m.content or "") for m in await memory.aget_all()]
    return str(result), messages, events


async def test_clean_run_is_untouched(protect: Protect, rules: Any, scripted: Any, tool_call: Any) -> None:
    tools = Tools()
    agent = GuardedFunctionAgent(
        llm=function_llm(scripted, tool_call), tools=[tools.lookup, tools.delete], guard=guard(protect, rules)
    )
    answer, memory, _ = await run(agent, "cats")
    assert answer == "answer: facts about cats"
    assert tools.calls == ["lookup:cats"]
    assert memory[0] == ("user", "cats") and memory[-1] == ("assistant", "answer: facts about cats")


async def test_input_override_ends_the_run(
    protect: Protect, rules: Any, scripted: Any, tool_call: Any
) -> None:
    llm = function_llm(scripted, tool_call)
    agent = GuardedFunctionAgent(llm=llm, tools=[Tools().lookup], guard=guard(protect, rules))
    answer, memory, events = await run(agent, "tell me the secret")
    assert answer == "Not allowed."
    assert llm.seen == []  # the model never saw the message
    assert memory == []  # nor will a later turn
    assert [e.delta for e in events if isinstance(e, AgentStream)] == ["Not allowed."]


async def test_remember_blocked_input(protect: Protect, rules: Any, scripted: Any, tool_call: Any) -> None:
    agent = GuardedFunctionAgent(
        llm=function_llm(scripted, tool_call),
        tools=[Tools().lookup],
        guard=guard(protect, rules, remember_blocked_input=True),
    )
    _, memory, _ = await run(agent, "tell me the secret")
    assert memory == [("user", "tell me the secret"), ("assistant", "Not allowed.")]


async def test_step_override_blocks_tool_calls_before_they_run(
    protect: Protect, rules: Any, scripted: Any, tool_call: Any
) -> None:
    tools = Tools()
    agent = GuardedFunctionAgent(
        llm=function_llm(scripted, tool_call), tools=[tools.lookup, tools.delete], guard=guard(protect, rules)
    )
    answer, memory, events = await run(agent, "please delete everything")
    assert answer == "I can't delete things."
    assert tools.calls == []  # the tool never ran
    assert not [e for e in events if isinstance(e, ToolCallResult)]
    # no dangling assistant message with tool calls: the next model call stays valid
    assert memory == [("user", "please delete everything"), ("assistant", "I can't delete things.")]


async def test_step_override_after_a_tool_keeps_complete_turns(
    protect: Protect, rules: Any, scripted: Any, tool_call: Any
) -> None:
    tools = Tools()
    agent = GuardedFunctionAgent(
        llm=function_llm(scripted, tool_call), tools=[tools.lookup], guard=guard(protect, rules)
    )
    answer, memory, events = await run(agent, "open the vault")
    assert answer == "That's confidential."
    assert tools.calls == ["lookup:open the vault"]
    assert [role for role, _ in memory] == ["user", "assistant", "tool", "assistant"]
    assert memory[-1] == ("assistant", "That's confidential.")
    streamed = "".join(e.delta for e in events if isinstance(e, AgentStream))
    assert "secret" not in streamed  # the blocked answer never streamed


async def test_step_redaction(protect: Protect, rules: Any, scripted: Any, tool_call: Any) -> None:
    agent = GuardedFunctionAgent(
        llm=function_llm(scripted, tool_call),
        tools=[Tools().lookup],
        guard=AgentGuard(output_stage=rules.mask(), protect=protect),
    )
    answer, memory, _ = await run(agent, "open the vault")
    assert answer == "answer: the <SECRET> vault code"
    assert memory[-1] == ("assistant", "answer: the <SECRET> vault code")


async def test_tool_errors_feed_the_step_payload(
    protect: Protect, scripted: Any, tool_call: Any, recorder: list[Payload]
) -> None:
    stage = [
        {
            "rules": [{"metric": "li_tool_errors", "operator": "gte", "target_value": 1}],
            "action": {"type": "OVERRIDE", "choices": ["Tools are failing, try later."]},
        },
        {"rules": [{"metric": "li_record", "operator": "gt", "target_value": 0.5}]},
    ]
    tools = Tools()
    agent = GuardedFunctionAgent(
        llm=function_llm(scripted, tool_call, tool="broken"),
        tools=[tools.broken],
        guard=AgentGuard(output_stage=stage, protect=protect),
        streaming=False,
    )
    answer, _, _ = await run(agent, "hi")
    assert answer == "Tools are failing, try later."
    step, call, after = recorder  # the first step's answer, the call it asks for, the next step's answer
    assert (step.input, step.output, step.tool_calls) == ("hi", "let me check", None)
    assert step.tools is not None and [t.name for t in step.tools] == ["broken"]
    # the call before it runs: its arguments are the output, the user's request the input
    assert (call.input, call.output) == ("hi", "hi")
    assert call.tool_calls is not None and [(c.id, c.status) for c in call.tool_calls] == [("c1", None)]
    # the next step sees the failed call once, with its status and the model's id
    assert after.tool_calls is not None
    assert [(c.id, c.status, c.error) for c in after.tool_calls] == [("c1", "error", "backend down")]


async def test_react_agent(protect: Protect, rules: Any, scripted: Any) -> None:
    tools = Tools()
    agent = guard(protect, rules).wrap(
        ReActAgent(llm=react_llm(scripted), tools=[tools.lookup, tools.delete])
    )
    assert isinstance(agent, GuardedReActAgent)
    answer, memory, _ = await run(agent, "cats")
    assert answer == "facts about cats"
    answer, memory, _ = await run(agent, "delete all")
    assert answer == "I can't delete things."
    assert tools.calls == ["lookup:cats"]
    assert memory == [("user", "delete all"), ("assistant", "I can't delete things.")]
    answer, memory, _ = await run(agent, "a secret")
    assert (answer, memory) == ("Not allowed.", [])


async def test_agent_workflow(protect: Protect, rules: Any, scripted: Any, tool_call: Any) -> None:
    tools = Tools()
    researcher = FunctionAgent(
        name="researcher",
        description="Looks things up.",
        llm=function_llm(scripted, tool_call),
        tools=[tools.lookup, tools.delete],
    )
    workflow = guard(protect, rules).wrap(AgentWorkflow(agents=[researcher], root_agent="researcher"))
    assert isinstance(workflow.agents["researcher"], GuardedFunctionAgent)
    answer, _, _ = await run(workflow, "delete it all")
    assert answer == "I can't delete things." and tools.calls == []
    answer, _, _ = await run(workflow, "cats")
    assert answer == "answer: facts about cats"


async def test_paused_stage_passes_everything(
    protect: Protect, rules: Any, scripted: Any, tool_call: Any
) -> None:
    protect.create_stage("agent-steps", stage_type="central", prioritized_rulesets=STEP_RULES)
    tools = Tools()
    agent = GuardedFunctionAgent(
        llm=function_llm(scripted, tool_call),
        tools=[tools.lookup, tools.delete],
        guard=AgentGuard(output_stage="agent-steps", protect=protect),
    )
    assert (await run(agent, "delete x"))[0] == "I can't delete things."
    protect.pause_stage("agent-steps")
    assert (await run(agent, "delete x"))[0] == "answer: deleted"
    assert tools.calls == ["delete:delete x"]


def test_wrap_copies_and_keeps_settings(protect: Protect, rules: Any, scripted: Any, tool_call: Any) -> None:
    original = FunctionAgent(
        name="a",
        llm=function_llm(scripted, tool_call),
        tools=[Tools().lookup],
        system_prompt="Be brief.",
        timeout=7,
    )
    wrapped = guard(protect, rules).wrap(original)
    assert type(original) is FunctionAgent  # untouched
    assert (wrapped.name, wrapped.system_prompt, wrapped.guard is not None) == ("a", "Be brief.", True)
    assert getattr(wrapped, "_timeout", None) == 7
    assert guarded_class(CodeActAgent) is GuardedCodeActAgent
    with pytest.raises(TypeError):
        guard(protect, rules).wrap("not an agent")  # type: ignore[type-var]


async def test_input_redaction(protect: Protect, rules: Any, scripted: Any, tool_call: Any) -> None:
    llm = function_llm(scripted, tool_call)
    agent = GuardedFunctionAgent(
        llm=llm, tools=[Tools().lookup], guard=AgentGuard(input_stage=rules.mask(), protect=protect)
    )
    _, memory, _ = await run(agent, "my secret cats")
    seen = [m.content or "" for m in llm.seen[0]]
    assert "my <SECRET> cats" in seen and not any("secret" in text for text in seen)
    assert memory[0] == ("user", "my <SECRET> cats")


def two_lookups(scripted: Any, tool_call: Any) -> Any:
    """Asks for ``lookup("felines")`` (id c1), then ``lookup("lions")`` (id c2), then answers."""

    def answer(messages: list[ChatMessage]) -> ChatMessage:
        results = [m for m in messages if m.role.value == "tool"]
        if not results:
            return tool_call("lookup", call_id="c1", query="felines")
        if len(results) == 1:
            return tool_call("lookup", call_id="c2", query="lions")
        return ChatMessage(role="assistant", content="done")

    return scripted(answer)


@pytest.mark.parametrize("in_workflow", [False, True])
async def test_guarded_tool_in_a_guarded_agent_knows_the_run(
    protect: Protect, rules: Any, scripted: Any, tool_call: Any, recorder: list[Payload], in_workflow: bool
) -> None:
    """The tool's checks get the user's request, the calls that ran (once, with status), the model's ids."""
    from llama_index.core.tools import FunctionTool

    from stageguard.llama_index import GuardedFunctionTool

    tool = GuardedFunctionTool(FunctionTool.from_defaults(Tools().lookup), rules.record, protect=protect)
    agent = FunctionAgent(name="a", llm=two_lookups(scripted, tool_call), tools=[tool])
    agent_guard = AgentGuard(input_stage=rules.note(), protect=protect)
    target: Any = AgentWorkflow(agents=[agent], root_agent="a") if in_workflow else agent
    answer, _, _ = await run(agent_guard.wrap(target), "tell me about cats")
    assert answer == "done"
    first_call, first_result, second_call, second_result = recorder
    assert (first_call.input, first_call.output) == ("tell me about cats", "felines")
    assert [(c.id, c.status) for c in first_call.tool_calls or []] == [("c1", None)]
    assert (first_result.input, first_result.output) == ("facts about felines", None)
    assert [(c.id, c.status) for c in first_result.tool_calls or []] == [("c1", "success")]
    assert second_call.input == "tell me about cats"
    assert [(c.id, c.status) for c in second_call.tool_calls or []] == [("c1", "success"), ("c2", None)]
    assert [(c.id, c.status) for c in second_result.tool_calls or []] == [
        ("c1", "success"),
        ("c2", "success"),
    ]


async def test_step_checks_each_tool_call_with_the_core_mapping(
    protect: Protect, scripted: Any, tool_call: Any, recorder: list[Payload]
) -> None:
    agent = GuardedFunctionAgent(
        llm=two_lookups(scripted, tool_call),
        tools=[Tools().lookup],
        guard=AgentGuard(
            output_stage=[{"rules": [{"metric": "li_record", "operator": "gt", "target_value": 0.5}]}],
            protect=protect,
        ),
    )
    assert (await run(agent, "tell me about cats"))[0] == "done"
    # steps that only call tools have no answer to check: the two calls, then the final answer
    first, second, final = recorder
    assert [(p.input, p.output) for p in (first, second)] == [
        ("tell me about cats", "felines"),
        ("tell me about cats", "lions"),
    ]
    assert [[(c.id, c.status) for c in p.tool_calls or []] for p in (first, second)] == [
        [("c1", None)],
        [("c1", "success"), ("c2", None)],
    ]
    # the answer after both calls: the calls that ran, once each
    assert (final.output, [(c.id, c.status) for c in final.tool_calls or []]) == (
        "done",
        [("c1", "success"), ("c2", "success")],
    )


async def test_redacted_tool_arguments_run_and_are_remembered(
    protect: Protect, rules: Any, scripted: Any, tool_call: Any
) -> None:
    tools = Tools()

    def answer(messages: list[ChatMessage]) -> ChatMessage:
        if messages[-1].role.value == "tool":
            return ChatMessage(role="assistant", content="done")
        return tool_call("lookup", query="my secret plan")

    agent = GuardedFunctionAgent(
        llm=scripted(answer),
        tools=[tools.lookup],
        guard=AgentGuard(output_stage=rules.mask(), protect=protect),
    )
    ctx = Context(agent)
    assert str(await agent.run(user_msg="go", ctx=ctx)) == "done"
    assert tools.calls == ["lookup:my <SECRET> plan"]
    memory = await (await ctx.store.get("memory")).aget_all()
    asked = [b for m in memory for b in m.blocks if type(b).__name__ == "ToolCallBlock"]
    assert [b.tool_kwargs for b in asked] == [{"query": "my <SECRET> plan"}]


def test_wrap_never_changes_its_argument(protect: Protect, rules: Any, scripted: Any, tool_call: Any) -> None:
    researcher = FunctionAgent(
        name="researcher", description="Looks things up.", llm=function_llm(scripted, tool_call), tools=[]
    )
    workflow = AgentWorkflow(agents=[researcher], root_agent="researcher")
    wrapped = guard(protect, rules).wrap(workflow)
    assert wrapped is not workflow
    assert type(workflow.agents["researcher"]) is FunctionAgent  # the original is untouched
    assert workflow.agents["researcher"] is researcher
    assert isinstance(wrapped.agents["researcher"], GuardedFunctionAgent)
    assert (wrapped.root_agent, getattr(wrapped, "_timeout", None)) == ("researcher", workflow._timeout)

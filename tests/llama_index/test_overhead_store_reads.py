"""Agent guards read the workflow store as little as they can: each ``store.get`` loads the whole state.

A guarded step reads once (one snapshot) beyond what the agent itself reads, a run whose process holds no
vault ends without reading the store, and a tool call an agent runs reads it once for everything its
guarded tool must know. The values read are the same as before (the tool still learns the run).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.agent.workflow.agent_context import SimpleAgentContext
from llama_index.core.llms import ChatMessage
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.tools import FunctionTool, ToolOutput

from stageguard import Payload, Protect
from stageguard.llama_index import AgentGuard, GuardedFunctionTool, _agents
from stageguard.llama_index._tools import _AGENT_CALL, AgentCall

# LlamaIndex inspects the agent's attributes, some of which pydantic marks deprecated (not ours)
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning")

QUESTION = "What is the capital of France?"


class Reads:
    """Counts the reads of one store (``get`` and ``get_state`` each load the whole state)."""

    def __init__(self, store: Any) -> None:
        self.count = 0
        get, get_state = store.get, store.get_state

        async def counted_get(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await get(*args, **kwargs)

        async def counted_state(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await get_state(*args, **kwargs)

        store.get, store.get_state = counted_get, counted_state


def _answer(messages: Any, **kwargs: Any) -> ChatMessage:
    return ChatMessage(role="assistant", content="Paris.")


def capital(country: str) -> str:
    """The capital of a country."""
    return "Paris"


async def _step_reads(agent: FunctionAgent) -> tuple[int, AgentOutput]:
    ctx = SimpleAgentContext()
    await ctx.store.set("scratchpad", [])
    await ctx.store.set("user_msg_str", QUESTION)
    reads = Reads(ctx.store)
    memory = ChatMemoryBuffer.from_defaults(token_limit=200)
    output = await agent.take_step(ctx, [ChatMessage(role="user", content=QUESTION)], [], memory)
    return reads.count, output


async def test_a_guarded_step_reads_the_store_once_more_than_the_agent(
    protect: Protect, rules: Any, recorder: list[Payload]
) -> None:
    def agent() -> FunctionAgent:
        return FunctionAgent(
            llm=MockFunctionCallingLLM(response_generator=_answer), tools=[], streaming=False
        )

    plain, _ = await _step_reads(agent())
    guarded, output = await _step_reads(AgentGuard(rules.record, protect=protect).wrap(agent()))
    assert guarded - plain == 1
    assert output.response.content == "Paris."
    assert [(p.input, p.output) for p in recorder] == [(QUESTION, None), (QUESTION, "Paris.")]


async def test_finalize_reads_no_store_when_no_vault_is_kept(
    protect: Protect, rules: Any, recorder: list[Payload], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_agents, "_VAULTS", OrderedDict())
    agent = AgentGuard(rules.record, protect=protect).wrap(
        FunctionAgent(llm=MockFunctionCallingLLM(response_generator=_answer), tools=[], streaming=False)
    )
    ctx = SimpleAgentContext()
    await ctx.store.set("scratchpad", [])
    reads = Reads(ctx.store)
    output = AgentOutput(response=ChatMessage(role="assistant", content="Paris."), current_agent_name="a")
    plain = FunctionAgent(llm=MockFunctionCallingLLM(response_generator=_answer), tools=[], streaming=False)
    plain_ctx = SimpleAgentContext()
    await plain_ctx.store.set("scratchpad", [])
    plain_reads = Reads(plain_ctx.store)  # what FunctionAgent.finalize reads by itself
    await plain.finalize(plain_ctx, output, ChatMemoryBuffer.from_defaults(token_limit=200))
    finished = await agent.finalize(ctx, output, ChatMemoryBuffer.from_defaults(token_limit=200))
    assert finished.response.content == "Paris."
    assert reads.count == plain_reads.count


async def test_an_agent_tool_call_reads_the_store_once_and_the_tool_learns_the_run(
    protect: Protect, rules: Any, recorder: list[Payload]
) -> None:
    tool = GuardedFunctionTool(FunctionTool.from_defaults(capital), rules.record, protect=protect)
    ctx = SimpleAgentContext()
    earlier = ToolCallResult(
        tool_name="capital",
        tool_kwargs={"country": "Spain"},
        tool_id="c0",
        tool_output=ToolOutput(content="Madrid", tool_name="capital", raw_input={}, raw_output="Madrid"),
        return_direct=False,
    )
    await ctx.store.set("user_msg_str", QUESTION)
    await ctx.store.set("current_tool_calls", [earlier])
    pending = [{"id": "c1", "name": "capital", "arguments": {"country": "France"}}]
    await ctx.store.set(_agents.PENDING_KEY, pending)
    await _agents.run_vault(ctx)  # the step that asked for the call registered the run's vault
    seen: list[AgentCall | None] = []

    async def call(ctx: Any, tool: Any, tool_input: dict[str, Any]) -> ToolOutput:
        seen.append(_AGENT_CALL.get())
        output: ToolOutput = await tool.acall(**tool_input)
        return output

    reads = Reads(ctx.store)
    output = await _agents._call_guarded(ctx, tool, {"country": "France"}, call)
    assert reads.count == 1
    assert output.content == "Paris"
    [run] = seen
    assert run is not None and run.vault is not None
    assert (run.request, run.call_id) == (QUESTION, "c1")
    assert [(c.id, c.status) for c in run.calls] == [("c0", "success")]
    arguments, result = recorder  # the tool's two checks, with what it learnt of the run
    assert (arguments.input, [c.id for c in arguments.tool_calls or []]) == (QUESTION, ["c0", "c1"])
    assert (result.input, [c.id for c in result.tool_calls or []]) == ("Paris", ["c0", "c1"])

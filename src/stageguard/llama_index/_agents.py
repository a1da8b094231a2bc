"""Guards for the workflow agents (``FunctionAgent``, ``ReActAgent``, ``CodeActAgent``, ``AgentWorkflow``).

Every agent step goes through ``take_step``, also inside an ``AgentWorkflow``, which is why the guard
lives there: it checks the user's message once per run (``input`` hook), then every step's answer
(``step`` hook) and each tool call it asks for (``tool_call`` hook) before any tool runs. Payloads come from
:mod:`stageguard.checkpoints`, as in LangChain. An override ends the run: the step comes back as a final
answer without tool calls, and the agent's scratch state is rewritten so memory holds the override, never
the blocked text.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from llama_index.core.agent.react.types import ActionReasoningStep, BaseReasoningStep
from llama_index.core.agent.workflow import (
    AgentOutput,
    AgentStream,
    AgentWorkflow,
    CodeActAgent,
    FunctionAgent,
    ReActAgent,
)
from llama_index.core.agent.workflow.agent_context import AgentContext, SimpleAgentContext
from llama_index.core.agent.workflow.base_agent import BaseWorkflowAgent
from llama_index.core.agent.workflow.workflow_events import ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, ToolCallBlock
from llama_index.core.bridge.pydantic import Field
from llama_index.core.memory import BaseMemory
from llama_index.core.tools import AsyncBaseTool, BaseTool, ToolOutput, ToolSelection
from llama_index.core.workflow import Context

from ..checkpoints import Turn, arguments_from_text, input_payload, output_payload, tool_call_payload
from ..protect import Protect
from ..response import Response
from ..stage_ref import RulesetsLike, StageLike
from ..status import FailPolicy
from . import _memory
from ._convert import assistant, result_call, selection_call, to_messages, tool_specs, with_text
from ._guard import Guard, changed, is_override
from ._tools import AgentCall, GuardedFunctionTool, agent_call

logger = logging.getLogger("stageguard.llama_index")

Step = Callable[[AgentContext, list[ChatMessage], Sequence[BaseTool], BaseMemory], Awaitable[AgentOutput]]
AgentT = TypeVar("AgentT", bound="BaseWorkflowAgent | AgentWorkflow")

# Where a guarded step leaves the calls it let through, so a GuardedFunctionTool learns the model's id.
PENDING_KEY = "stageguard_pending_calls"
_UNREDACTABLE = "This tool call was blocked: its arguments had to be redacted and could not be rebuilt."


class AgentGuard:
    """The stages of an agent: ``input`` (the user's message, first step of a run) and ``output_stage``
    (each step: its answer at the ``step`` hook, then each tool call it asks for at the ``tool_call`` hook,
    with the run's earlier calls and their errors, which feeds ``tool_error_rate`` and
    ``tool_selection_quality``).

    Use it as the ``guard=`` of :class:`GuardedFunctionAgent`/:class:`GuardedReActAgent`/
    :class:`GuardedCodeActAgent`, or :meth:`wrap` an existing agent or ``AgentWorkflow``. With
    ``buffer_stream`` (default) a guarded step does not stream tokens: it calls the model without
    streaming and writes one ``AgentStream`` event with the checked text, so no unchecked text leaves.
    """

    def __init__(
        self,
        stage: StageLike | None = None,
        *,
        input_stage: StageLike | None = None,
        output_stage: StageLike | None = None,
        prioritized_rulesets: RulesetsLike | None = None,
        stage_version: int | None = None,
        project_name: str | None = None,
        project_id: str | None = None,
        protect: Protect | None = None,
        timeout: float = 300.0,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
        metadata: dict[str, Any] | None = None,
        remember_blocked_input: bool = False,
        buffer_stream: bool = True,
    ) -> None:
        self.guard = Guard.build(
            "agent",
            ("input", "step", "tool_call"),
            stage,
            {"input": input_stage, "step": output_stage, "tool_call": output_stage},
            prioritized_rulesets=prioritized_rulesets,
            stage_version=stage_version,
            project_name=project_name,
            project_id=project_id,
            protect=protect,
            timeout=timeout,
            fail_policy=fail_policy,
            shadow=shadow,
            metadata=metadata,
        )
        self.remember_blocked_input = remember_blocked_input
        self.buffer_stream = buffer_stream

    @property
    def buffers(self) -> bool:
        """Whether guarded steps must not stream raw tokens."""
        return self.buffer_stream and self.checks_steps

    @property
    def checks_steps(self) -> bool:
        return self.guard.has("step") or self.guard.has("tool_call")

    def wrap(self, target: AgentT) -> AgentT:
        """A guarded copy of an agent, or a copy of the workflow with each of its agents guarded.

        The argument is left as it was.
        """
        if isinstance(target, AgentWorkflow):
            # A shallow copy keeps the workflow's settings; its class also passes agent runs to tools.
            guarded: AgentWorkflow = copy.copy(target)
            guarded.__class__ = guarded_workflow_class(type(target))
            guarded.agents = {name: self.wrap(agent) for name, agent in target.agents.items()}
            return cast(AgentT, guarded)
        if isinstance(target, BaseWorkflowAgent):
            cls = guarded_class(type(target))
            fields = {name: getattr(target, name) for name in type(target).model_fields if name != "guard"}
            workflow = {
                "timeout": getattr(target, "_timeout", None),
                "verbose": getattr(target, "_verbose", False),
            }
            return cast(AgentT, cls(**fields, **workflow, guard=self))
        raise TypeError(f"AgentGuard.wrap takes a workflow agent or an AgentWorkflow, not {type(target)!r}")

    # -- the step

    async def take_step(
        self,
        agent: BaseWorkflowAgent,
        inner: Step,
        ctx: AgentContext,
        llm_input: list[ChatMessage],
        tools: Sequence[BaseTool],
        memory: BaseMemory,
    ) -> AgentOutput:
        store = ctx.store
        user_text: str | None = await store.get("user_msg_str", default=None)
        if self.guard.has("input") and user_text and await store.get("num_iterations", default=0) == 0:
            payload = input_payload(user_text, Turn(messages=to_messages(llm_input) or ()))
            decision = await self.guard.acheck("input", payload, agent=agent.name)
            if is_override(decision):
                await self._input_blocked(memory, decision.text)
                blocked = AgentOutput(
                    response=assistant(decision.text), current_agent_name=agent.name, raw=None
                )
                return self._emit(agent, ctx, blocked, always=True)
            if changed(decision):
                llm_input = await self._input_redacted(ctx, memory, llm_input, user_text, decision.text)
                user_text = decision.text

        key = _scratch_key(agent) if self.checks_steps else None
        before = len(await store.get(key, default=[])) if key else 0
        output = await inner(ctx, llm_input, tools, memory)

        if self.checks_steps:
            calls = [result_call(r) for r in await store.get("current_tool_calls", default=[])]
            turn = Turn(messages=to_messages(llm_input) or (), tools=tool_specs(tools) or (), calls=calls)
            output = await self._check_step(agent, ctx, memory, output, turn, user_text, key, before)
        if output.tool_calls:
            pending = [
                {"id": c.tool_id, "name": c.tool_name, "arguments": c.tool_kwargs} for c in output.tool_calls
            ]
            await store.set(PENDING_KEY, pending)
        return self._emit(agent, ctx, output)

    async def _check_step(
        self,
        agent: BaseWorkflowAgent,
        ctx: AgentContext,
        memory: BaseMemory,
        output: AgentOutput,
        turn: Turn,
        request: str | None,
        key: str | None,
        before: int,
    ) -> AgentOutput:
        """The step's answer (``step`` hook), then each tool call it asks for (``tool_call`` hook)."""
        text = output.response.content or ""
        if text:  # a step that only calls tools has no answer to check
            payload = output_payload(text, turn, request=request)
            decision = await self.guard.acheck("step", payload, agent=agent.name)
            if is_override(decision):
                return await self._step_blocked(agent, ctx, memory, decision.text, key, before)
            if changed(decision):
                output = await self._step_redacted(agent, ctx, memory, output, decision.text, key, before)
        selections: list[ToolSelection | None] = []
        for selection in output.tool_calls:
            call = selection_call(selection)
            payload = tool_call_payload(call, turn, request=request)
            checked = await self.guard.acheck(
                "tool_call", payload, agent=agent.name, tool=call.name, id=call.id
            )
            if is_override(checked):
                return await self._step_blocked(agent, ctx, memory, checked.text, key, before)
            selections.append(self._call_redacted(selection, checked) if changed(checked) else selection)
        kept = [s for s in selections if s is not None]
        if len(kept) < len(selections):
            return await self._step_blocked(agent, ctx, memory, _UNREDACTABLE, key, before)
        if all(new is old for new, old in zip(kept, output.tool_calls, strict=True)):
            return output
        await _rewrite_calls(ctx, key, before, kept)
        return output.model_copy(update={"tool_calls": kept})

    @staticmethod
    def _call_redacted(selection: ToolSelection, decision: Response) -> ToolSelection | None:
        """The call with redacted arguments (``None``: the redaction can't be read back as arguments)."""
        arguments = arguments_from_text(dict(selection.tool_kwargs), decision.text)
        return None if arguments is None else selection.model_copy(update={"tool_kwargs": arguments})

    def _emit(
        self, agent: BaseWorkflowAgent, ctx: AgentContext, output: AgentOutput, *, always: bool = False
    ) -> AgentOutput:
        """Stream consumers get the checked text in one ``AgentStream`` event (raw tokens were held back)."""
        # Outside a workflow (predict_and_call) events are discarded; inside a step it is always running.
        running = not isinstance(ctx, SimpleAgentContext)
        if agent.streaming and running and (always or self.buffers):
            text = output.response.content or ""
            if text or output.tool_calls:
                ctx.write_event_to_stream(
                    AgentStream(
                        delta=text,
                        response=text,
                        tool_calls=output.tool_calls,
                        current_agent_name=agent.name,
                        raw=output.raw,
                    )
                )
        return output

    # -- actions

    async def _input_blocked(self, memory: BaseMemory, text: str) -> None:
        """The run added the user's message to memory already: keep it with the override, or drop it."""
        if self.remember_blocked_input:
            await memory.aput(assistant(text))
        else:
            await _memory.arewrite(memory, _memory.drop_from_last_user())

    @staticmethod
    async def _input_redacted(
        ctx: AgentContext, memory: BaseMemory, llm_input: list[ChatMessage], original: str, text: str
    ) -> list[ChatMessage]:
        await _memory.arewrite(memory, _memory.replace_last_user(original, text))
        await ctx.store.set("user_msg_str", text)
        edited = _memory.replace_last_user(original, text)(list(llm_input))
        return edited if edited is not None else llm_input

    @staticmethod
    async def _step_blocked(
        agent: BaseWorkflowAgent,
        ctx: AgentContext,
        memory: BaseMemory,
        text: str,
        key: str | None,
        before: int,
    ) -> AgentOutput:
        """End the run with the override; the blocked message and its tool calls never reach memory."""
        message = assistant(text)
        if isinstance(agent, (FunctionAgent, CodeActAgent)) and key:
            # finalize() writes the scratchpad to memory: earlier (complete) tool turns, then the override.
            scratch: list[ChatMessage] = list(await ctx.store.get(key, default=[]))
            await ctx.store.set(key, [*scratch[:before], message])
        else:
            if isinstance(agent, ReActAgent) and key:
                await ctx.store.set(key, [])
            await memory.aput(message)
        return AgentOutput(response=message, current_agent_name=agent.name, raw=None)

    async def _step_redacted(
        self,
        agent: BaseWorkflowAgent,
        ctx: AgentContext,
        memory: BaseMemory,
        output: AgentOutput,
        text: str,
        key: str | None,
        before: int,
    ) -> AgentOutput:
        """Keep the step with its text redacted, in the output and in the agent's scratch state."""
        message = with_text(output.response, text)
        tool_calls = list(output.tool_calls)
        if key:
            scratch: list[Any] = list(await ctx.store.get(key, default=[]))
            if len(scratch) > before:
                if isinstance(agent, ReActAgent):
                    step = _parse_react(agent, text)
                    if step is None:  # the redacted text no longer parses: end the run with it instead
                        return await self._step_blocked(agent, ctx, memory, text, key, before)
                    scratch[-1] = step
                    if isinstance(step, ActionReasoningStep) and tool_calls:
                        tool_calls = [
                            ToolSelection(
                                tool_id=tool_calls[0].tool_id,
                                tool_name=step.action,
                                tool_kwargs=step.action_input,
                            )
                        ]
                else:
                    scratch[-1] = message
                await ctx.store.set(key, scratch)
        retry = [message, *output.retry_messages[1:]] if output.retry_messages else []
        return output.model_copy(
            update={"response": message, "tool_calls": tool_calls, "retry_messages": retry}
        )


async def _rewrite_calls(ctx: AgentContext, key: str | None, before: int, calls: list[ToolSelection]) -> None:
    """Redacted arguments in the agent's scratch state too, so memory keeps the arguments that ran."""
    scratch: list[Any] = list(await ctx.store.get(key, default=[])) if key else []
    if len(scratch) <= before:
        return
    last = scratch[-1]
    by_id = {c.tool_id: c.tool_kwargs for c in calls}
    if isinstance(last, ActionReasoningStep) and len(calls) == 1:  # ReAct: one action per step
        scratch[-1] = last.model_copy(update={"action_input": calls[0].tool_kwargs})
    elif isinstance(last, ChatMessage):  # function calling: the assistant message's tool-call blocks
        blocks = [
            b.model_copy(update={"tool_kwargs": by_id[b.tool_call_id]})
            if isinstance(b, ToolCallBlock) and b.tool_call_id in by_id
            else b
            for b in last.blocks
        ]
        scratch[-1] = last.model_copy(update={"blocks": blocks})
    else:
        return
    assert key is not None
    await ctx.store.set(key, scratch)


def _scratch_key(agent: BaseWorkflowAgent) -> str | None:
    """Where the agent keeps the current run's messages (function/CodeAct) or reasoning (ReAct)."""
    if isinstance(agent, ReActAgent):
        return agent.reasoning_key
    key = getattr(agent, "scratchpad_key", None)
    return key if isinstance(key, str) else None


def _parse_react(agent: ReActAgent, text: str) -> BaseReasoningStep | None:
    try:
        return agent.output_parser.parse(text, is_streaming=False)
    except ValueError:
        return None


class GuardedAgentMixin(BaseWorkflowAgent):
    """Adds an :class:`AgentGuard` to a workflow agent class (put it first among the bases)."""

    guard: AgentGuard | None = Field(default=None, exclude=True, description="The agent's guard.")

    async def take_step(
        self,
        ctx: AgentContext,
        llm_input: list[ChatMessage],
        tools: Sequence[BaseTool],
        memory: BaseMemory,
    ) -> AgentOutput:
        inner: Step = getattr(super(), "take_step")  # noqa: B009 - abstract on the base, real on the agent
        if self.guard is None:
            return await inner(ctx, llm_input, tools, memory)
        return await self.guard.take_step(self, inner, ctx, llm_input, tools, memory)

    async def _get_streaming_response(self, ctx: AgentContext, *args: Any, **kwargs: Any) -> Any:
        """A guarded step must not stream raw tokens: ask the model without streaming instead."""
        if self.guard is not None and self.guard.buffers:
            get: Callable[..., Awaitable[ChatResponse]] = getattr(self, "_get_response")  # noqa: B009
            response = await get(*args, **kwargs)
            if isinstance(self, CodeActAgent):  # its streaming variant also returns the full text
                return response, response.message.content or ""
            return response
        streaming: Callable[..., Awaitable[Any]] = getattr(super(), "_get_streaming_response")  # noqa: B009
        return await streaming(ctx, *args, **kwargs)

    async def _call_tool(self, ctx: Context, tool: AsyncBaseTool, tool_input: dict[str, Any]) -> ToolOutput:
        async with _as_agent_call(ctx, tool, tool_input):
            return await super()._call_tool(ctx, tool, tool_input)


class GuardedAgentWorkflow(AgentWorkflow):
    """An ``AgentWorkflow`` (made by :meth:`AgentGuard.wrap`) that tells guarded tools about the run."""

    async def _call_tool(self, ctx: Context, tool: AsyncBaseTool, tool_input: dict[str, Any]) -> ToolOutput:
        async with _as_agent_call(ctx, tool, tool_input):
            return await super()._call_tool(ctx, tool, tool_input)


@contextlib.asynccontextmanager
async def _as_agent_call(
    ctx: Context, tool: AsyncBaseTool, tool_input: dict[str, Any]
) -> AsyncIterator[None]:
    """Around an agent's tool call: a :class:`GuardedFunctionTool` learns the run's request, the calls
    that ran and the model's id for this call (tools are called in their own workflow step)."""
    if not isinstance(tool, GuardedFunctionTool):
        yield
        return
    store = ctx.store
    name = tool.metadata.get_name()
    pending: list[dict[str, Any]] = await store.get(PENDING_KEY, default=[])
    call_id = next((p["id"] for p in pending if p["name"] == name and p["arguments"] == tool_input), None)
    ran: list[ToolCallResult] = await store.get("current_tool_calls", default=[])
    request: str | None = await store.get("user_msg_str", default=None)
    with agent_call(AgentCall(request=request, calls=tuple(result_call(r) for r in ran), call_id=call_id)):
        yield


class GuardedFunctionAgent(GuardedAgentMixin, FunctionAgent):
    """A ``FunctionAgent`` with a ``guard=AgentGuard(...)``."""


class GuardedReActAgent(GuardedAgentMixin, ReActAgent):
    """A ``ReActAgent`` with a ``guard=AgentGuard(...)``."""


class GuardedCodeActAgent(GuardedAgentMixin, CodeActAgent):
    """A ``CodeActAgent`` with a ``guard=AgentGuard(...)``."""


_KNOWN: dict[type[BaseWorkflowAgent], type[GuardedAgentMixin]] = {
    FunctionAgent: GuardedFunctionAgent,
    ReActAgent: GuardedReActAgent,
    CodeActAgent: GuardedCodeActAgent,
}


@functools.cache
def guarded_workflow_class(cls: type[AgentWorkflow]) -> type[GuardedAgentWorkflow]:
    """The guarded version of an ``AgentWorkflow`` class (made once per class)."""
    if issubclass(cls, GuardedAgentWorkflow):
        return cls
    if cls is AgentWorkflow:
        return GuardedAgentWorkflow
    return cast(
        type[GuardedAgentWorkflow], types.new_class(f"Guarded{cls.__name__}", (GuardedAgentWorkflow, cls))
    )


@functools.cache
def guarded_class(cls: type[BaseWorkflowAgent]) -> type[GuardedAgentMixin]:
    """The guarded version of a workflow agent class (made once per class)."""
    if issubclass(cls, GuardedAgentMixin):
        return cls
    known = _KNOWN.get(cls)
    if known is not None:
        return known
    made = types.new_class(f"Guarded{cls.__name__}", (GuardedAgentMixin, cls))
    return cast(type[GuardedAgentMixin], made)

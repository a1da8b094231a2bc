"""Guards for the workflow agents (``FunctionAgent``, ``ReActAgent``, ``CodeActAgent``, ``AgentWorkflow``).

Every agent step goes through ``take_step``, also inside an ``AgentWorkflow``, which is why the guard
lives there: it checks the user's message once per run (``input`` hook), then every step's answer
(``step`` hook) and each tool call it asks for (``tool_call`` hook) before any tool runs. Payloads come from
:mod:`stageguard.checkpoints`, as in LangChain. An override ends the run: the step comes back as a final
answer without tool calls, and the agent's scratch state is rewritten so memory holds the override, never
the blocked text.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import secrets
import threading
import types
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

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
from workflows.context.state_store import DictState

from .._review import (
    InvalidToolReview,
    parse_tool_decisions,
    rejected_message,
    review_request,
    tool_review_entry,
)
from ..checkpoints import Turn, arguments_from_text, input_payload, output_payload, tool_call_payload
from ..payload import Message
from ..protect import Protect
from ..redaction import Vault
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
# Calls a reviewer answered for (reject, respond): the tool is not run, this is its result.
REVIEWED_KEY = "stageguard_reviewed_calls"

ReviewHook: TypeAlias = Callable[[dict[str, Any]], Any]
"""``on_review(request)``: gets the review request, returns (or awaits to) ``{"decisions": [...]}``."""

# One vault per run. Workflow steps get different Context objects, and a Context reused for the next
# run has its state serialised and restored, so the vault can neither hang off the Context nor live in
# its store: the store keeps only a random id (no value, safe to serialise), and the vaults stay in
# this process's memory, the most recent MAX_VAULTS of them.
VAULT_KEY = "stageguard_vault_id"
MAX_VAULTS = 10_000
_UNREDACTABLE = "This tool call was blocked: its arguments had to be redacted and could not be rebuilt."
_VAULTS: OrderedDict[str, Vault] = OrderedDict()
_VAULTS_LOCK = threading.Lock()


async def run_vault(ctx: Any) -> Vault:
    """The :class:`~stageguard.redaction.Vault` of the agent run (or conversation, when the workflow
    ``Context`` is reused) that ``ctx`` belongs to, created on first use. It lives in this process's
    memory only; the Context's store holds a random id for it, never a value."""
    vault_id: str | None = await ctx.store.get(VAULT_KEY, default=None)
    vault = _known_vault(vault_id)
    if vault is None:
        if vault_id is not None:  # restored in another process, or forgotten: earlier pseudonyms are lost
            logger.warning("the vault of this run is gone: pseudonyms of earlier turns can't be restored")
        vault = Vault()
        await _register(ctx.store, vault)
    return vault


def _known_vault(vault_id: str | None) -> Vault | None:
    """The vault registered under ``vault_id``, if it is still in memory."""
    if vault_id is None:
        return None
    with _VAULTS_LOCK:
        vault = _VAULTS.get(vault_id)
        if vault is not None:
            _VAULTS.move_to_end(vault_id)
    return vault


async def _register(store: Any, vault: Vault) -> None:
    """Keep ``vault`` in memory and its id in the run's store."""
    vault_id = secrets.token_hex(16)
    with _VAULTS_LOCK:
        _VAULTS[vault_id] = vault
        while len(_VAULTS) > MAX_VAULTS:
            _VAULTS.popitem(last=False)
    await store.set(VAULT_KEY, vault_id)


async def _read(store: Any, defaults: Mapping[str, Any]) -> list[Any]:
    """The values at several keys of a workflow store (``defaults`` gives each key's default), read from
    one snapshot of the state: each ``store.get`` loads the whole state again."""
    state = await store.get_state()
    if not isinstance(state, DictState):  # a typed state: paths are the store's to resolve
        return [await store.get(key, default=default) for key, default in defaults.items()]
    return [
        state.get(key, default) if "." not in key else await store.get(key, default=default)
        for key, default in defaults.items()
    ]


class AgentGuard:
    """The stages of an agent: ``input`` (the user's message, first step of a run) and ``output_stage``
    (each step: its answer at the ``step`` hook, then each tool call it asks for at the ``tool_call`` hook,
    with the run's earlier calls and their errors, which feeds ``tool_error_rate`` and
    ``tool_selection_quality``).

    Use it as the ``guard=`` of :class:`GuardedFunctionAgent`/:class:`GuardedReActAgent`/
    :class:`GuardedCodeActAgent`, or :meth:`wrap` an existing agent or ``AgentWorkflow``. With
    ``buffer_stream`` (default) a guarded step does not stream tokens: it calls the model without
    streaming and writes one ``AgentStream`` event with the checked text, so no unchecked text leaves.

    ``on_review``: a tool call whose triggered ruleset asks for review (``review: true`` on its action)
    waits, before any tool runs, for ``await on_review(request)``: ``request`` lists the flagged calls of
    the step (name, arguments as the model wrote them, the model's id, the triggered rules, the proposed
    action) in the shape of LangChain's ``HumanInTheLoopMiddleware``, and the answer is
    ``{"decisions": [...]}`` (approve / edit / reject / respond, see ``stageguard._review``). An invalid
    answer is asked again with ``request["error"]``, up to ``review_attempts`` times; then, and without
    ``on_review``, the stage's action applies (fail safe). Each decision is dispatched as a
    ``GuardDecisionEvent`` at the ``tool_review`` hook (``details["decision"]``).

    Every check of a run uses the run's :class:`~stageguard.redaction.Vault` (:func:`run_vault`): a
    ``pseudonym`` REDACT keeps values from the model, tools get them back in their arguments and the
    final answer is restored for the user.
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
        on_review: ReviewHook | None = None,
        review_attempts: int = 3,
    ) -> None:
        if on_review is not None and not callable(on_review):
            raise TypeError(f"on_review must be a callable (sync or async), got {type(on_review).__name__}")
        if isinstance(review_attempts, bool) or not isinstance(review_attempts, int) or review_attempts < 1:
            raise ValueError(f"review_attempts must be an int >= 1, got {review_attempts!r}")
        self.on_review = on_review
        self.review_attempts = review_attempts
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
            workflow: dict[str, Any] = {
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
        key = _scratch_key(agent) if self.checks_steps else None
        wanted: dict[str, Any] = {
            VAULT_KEY: None,
            "user_msg_str": None,
            "num_iterations": 0,
            "current_tool_calls": [],  # the calls that ran before this step (the step adds none)
        }
        if key:
            wanted[key] = []
        vault_id, user_text, iterations, ran, *scratch = await _read(ctx.store, wanted)
        vault = _known_vault(vault_id)
        if vault is None and vault_id is not None:
            vault = await run_vault(ctx)  # gone: says so, and a new one takes its place
        # A new vault is registered (a store write) only once something needs it: pseudonyms to keep,
        # or tool calls, whose tools run in steps of their own and must all find the same vault.
        fresh = vault is None
        vault = vault if vault is not None else Vault()
        before = len(scratch[0]) if scratch else 0
        output = await self._guarded_step(
            agent, inner, ctx, llm_input, tools, memory, vault, user_text, iterations == 0, key, before, ran
        )
        if fresh and (len(vault) or output.tool_calls):
            await _register(ctx.store, vault)
        return output

    async def _guarded_step(
        self,
        agent: BaseWorkflowAgent,
        inner: Step,
        ctx: AgentContext,
        llm_input: list[ChatMessage],
        tools: Sequence[BaseTool],
        memory: BaseMemory,
        vault: Vault,
        user_text: str | None,
        first: bool,
        key: str | None,
        before: int,
        ran: Sequence[ToolCallResult],
    ) -> AgentOutput:
        """The step with the input check (on the run's first step), then the step's answer and calls
        (``ran``: the run's calls before this step)."""
        messages: list[Message] | None = None  # llm_input converted once for both checks
        if self.guard.has("input") and user_text and first:
            messages = to_messages(llm_input) if "messages" in self.guard.fields_read("input") else []
            payload = input_payload(user_text, Turn(messages=messages or ()))
            decision = await self.guard.acheck("input", payload, vault=vault, agent=agent.name)
            if is_override(decision):
                await self._input_blocked(memory, decision.text)
                blocked = AgentOutput(
                    response=assistant(decision.text), current_agent_name=agent.name, raw=None
                )
                return self._emit(agent, ctx, blocked, vault, always=True)
            if changed(decision):
                llm_input = await self._input_redacted(ctx, memory, llm_input, user_text, decision.text)
                messages = None
                user_text = decision.text

        output = await inner(ctx, llm_input, tools, memory)

        if self.checks_steps:
            fields = self.guard.fields_read("step", "tool_call")
            if "messages" not in fields:
                messages = []
            elif not messages:
                messages = to_messages(llm_input)
            turn = Turn(
                messages=messages or (),
                tools=(tool_specs(tools) or ()) if "tools" in fields else (),
                calls=[result_call(r) for r in ran] if "tool_calls" in fields else [],
            )
            output = await self._check_step(agent, ctx, memory, output, turn, user_text, key, before, vault)
        if output.tool_calls:
            pending = [
                {"id": c.tool_id, "name": c.tool_name, "arguments": c.tool_kwargs} for c in output.tool_calls
            ]
            await ctx.store.set(PENDING_KEY, pending)
        return self._emit(agent, ctx, output, vault)

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
        vault: Vault,
    ) -> AgentOutput:
        """The step's answer (``step`` hook), then each tool call it asks for (``tool_call`` hook)."""
        text = output.response.content or ""
        if text:  # a step that only calls tools has no answer to check
            payload = output_payload(text, turn, request=request)
            decision = await self.guard.acheck("step", payload, vault=vault, agent=agent.name)
            if is_override(decision):
                return await self._step_blocked(agent, ctx, memory, decision.text, key, before)
            if changed(decision):
                output = await self._step_redacted(agent, ctx, memory, output, decision.text, key, before)
        selections: list[ToolSelection | None] = []
        flagged: list[tuple[int, Response]] = []  # calls put to a reviewer: index, decision
        for selection in output.tool_calls:
            call = selection_call(selection)
            payload = tool_call_payload(call, turn, request=request)
            checked = await self.guard.acheck(
                "tool_call", payload, vault=vault, agent=agent.name, tool=call.name, id=call.id
            )
            if checked is not None and checked.review_requested and self.on_review is not None:
                flagged.append((len(selections), checked))
                selections.append(selection)  # as the model made it, until the reviewer decides
                continue
            if is_override(checked):
                return await self._step_blocked(agent, ctx, memory, checked.text, key, before)
            selections.append(self._call_redacted(selection, checked) if changed(checked) else selection)
        if flagged:
            reviewed = await self._review(ctx, output.tool_calls, flagged, selections)
            if isinstance(reviewed, str):  # no valid answer: the (first) override applies
                return await self._step_blocked(agent, ctx, memory, reviewed, key, before)
        kept = [s for s in selections if s is not None]
        if len(kept) < len(selections):
            return await self._step_blocked(agent, ctx, memory, _UNREDACTABLE, key, before)
        if all(new is old for new, old in zip(kept, output.tool_calls, strict=True)):
            return output
        await _rewrite_calls(ctx, key, before, kept)
        return output.model_copy(update={"tool_calls": kept})

    async def _review(
        self,
        ctx: AgentContext,
        calls: list[ToolSelection],
        flagged: list[tuple[int, Response]],
        selections: list[ToolSelection | None],
    ) -> str | None:
        """Ask ``on_review`` about the flagged calls and apply its decisions to ``selections`` (in place).

        A rejected or answered call stays in the step (the model gets a result for its id) but never
        runs: its result waits under ``REVIEWED_KEY`` for the tool-call step. Without a valid answer
        after ``review_attempts`` tries the stage's action applies: the override text is returned (it
        ends the run), a redaction is applied to the arguments.
        """
        assert self.on_review is not None
        stage = self.guard.stages["tool_call"]
        entries = [
            tool_review_entry(
                calls[i].tool_name,
                dict(calls[i].tool_kwargs),
                calls[i].tool_id,
                checked,
                stage.label if stage else None,
            )
            for i, checked in flagged
        ]
        request = review_request(entries)
        decisions: list[dict[str, Any]] | None = None
        for _ in range(self.review_attempts):
            answer = self.on_review(request)
            if inspect.isawaitable(answer):
                answer = await answer
            try:
                decisions = parse_tool_decisions(answer, [e["name"] for e in entries])
                break
            except InvalidToolReview as exc:  # asked again, with what was wrong
                request = {**request, "error": str(exc)}
        if decisions is None:
            logger.warning(
                "no valid review after %d answer(s): the stage's action applies", self.review_attempts
            )
            for i, checked in flagged:
                if is_override(checked):
                    return checked.text
                selections[i] = self._call_redacted(calls[i], checked)
            return None
        answered: list[dict[str, Any]] = list(await ctx.store.get(REVIEWED_KEY, default=[]))
        for (i, checked), entry, decision in zip(flagged, entries, decisions, strict=True):
            selection = calls[i]
            if stage is not None:  # the audit trail: a GuardDecisionEvent at the ``tool_review`` hook
                details = {"tool": selection.tool_name, "id": selection.tool_id, "decision": decision["type"]}
                self.guard.report("tool_review", stage, checked, details)
            if decision["type"] == "edit":
                selections[i] = selection.model_copy(
                    update={"tool_kwargs": decision["edited_action"]["args"]}
                )
            elif decision["type"] in ("reject", "respond"):
                rejected = decision["type"] == "reject"
                answered.append(
                    {
                        "name": selection.tool_name,
                        "arguments": selection.tool_kwargs,
                        "content": rejected_message(entry, decision) if rejected else decision["message"],
                        "is_error": rejected,
                    }
                )
        await ctx.store.set(REVIEWED_KEY, answered)
        return None

    @staticmethod
    def _call_redacted(selection: ToolSelection, decision: Response) -> ToolSelection | None:
        """The call with redacted arguments (``None``: the redaction can't be read back as arguments)."""
        arguments = arguments_from_text(dict(selection.tool_kwargs), decision.text)
        return None if arguments is None else selection.model_copy(update={"tool_kwargs": arguments})

    def _emit(
        self,
        agent: BaseWorkflowAgent,
        ctx: AgentContext,
        output: AgentOutput,
        vault: Vault,
        *,
        always: bool = False,
    ) -> AgentOutput:
        """Stream consumers get the checked text in one ``AgentStream`` event (raw tokens were held back)."""
        # Outside a workflow (predict_and_call) events are discarded; inside a step it is always running.
        running = not isinstance(ctx, SimpleAgentContext)
        if agent.streaming and running and (always or self.buffers):
            text = output.response.content or ""
            if not output.tool_calls:  # a final answer: the reader gets the values behind pseudonyms
                text = vault.restore(text)
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


if TYPE_CHECKING:
    _MixinBase: TypeAlias = BaseWorkflowAgent
else:
    # A plain class, not a model: ``dir()`` walks each base's classes again (a second BaseModel there costs
    # 5 µs a walk), and the workflow runtime lists an agent's steps with ``dir()`` 7 times per run. The
    # agent class the mixin goes with is a model (with arbitrary types allowed), so ``guard`` is a field.
    _MixinBase = object


class GuardedAgentMixin(_MixinBase):
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
        return await _call_guarded(ctx, tool, tool_input, super()._call_tool)

    async def finalize(self, ctx: Context, output: AgentOutput, memory: BaseMemory) -> AgentOutput:
        """Memory keeps the answer as checked (pseudonyms); the user gets the values behind them."""
        inner: Callable[..., Awaitable[AgentOutput]] = getattr(super(), "finalize")  # noqa: B009 - as take_step
        output = await inner(ctx, output, memory)
        if not _VAULTS:  # no run of this process has a vault: nothing to restore (and no store read)
            return output
        vault = _known_vault(await ctx.store.get(VAULT_KEY, default=None))  # none: nothing to restore
        text = output.response.content or ""
        if vault is None or not len(vault) or (restored := vault.restore(text)) == text:
            return output
        return output.model_copy(update={"response": with_text(output.response, restored)})


class GuardedAgentWorkflow(AgentWorkflow):
    """An ``AgentWorkflow`` (made by :meth:`AgentGuard.wrap`) that tells guarded tools about the run."""

    async def _call_tool(self, ctx: Context, tool: AsyncBaseTool, tool_input: dict[str, Any]) -> ToolOutput:
        return await _call_guarded(ctx, tool, tool_input, super()._call_tool)


async def _call_guarded(
    ctx: Context,
    tool: AsyncBaseTool,
    tool_input: dict[str, Any],
    call: Callable[[Context, AsyncBaseTool, dict[str, Any]], Awaitable[ToolOutput]],
) -> ToolOutput:
    """An agent's tool call: a reviewer's answer instead of the tool, or the tool on the values behind
    the run's pseudonyms (a :class:`GuardedFunctionTool` restores them itself, after its checks)."""
    name = tool.metadata.get_name()
    wanted: dict[str, Any] = {
        REVIEWED_KEY: None,
        VAULT_KEY: None,
        PENDING_KEY: [],
        "current_tool_calls": [],
        "user_msg_str": None,
    }
    reviewed, vault_id, pending, ran, request = await _read(ctx.store, wanted)
    if reviewed:
        entry = await _take_answer(ctx, name, tool_input)
        if entry is not None:
            content = str(entry["content"])
            return ToolOutput(
                content=content,
                tool_name=name,
                raw_input={"args": (), "kwargs": tool_input},
                raw_output=content,
                is_error=bool(entry["is_error"]),
            )
    vault = _known_vault(vault_id)
    if vault is None:
        vault = await run_vault(ctx)  # none yet (or gone): made and registered
    if isinstance(tool, GuardedFunctionTool):
        # the tool learns the run's request, the calls that ran, the model's id for this call and the
        # run's vault (tools run in a workflow step of their own)
        call_id = next((p["id"] for p in pending if p["name"] == name and p["arguments"] == tool_input), None)
        run = AgentCall(
            request=request, calls=tuple(result_call(r) for r in ran), call_id=call_id, vault=vault
        )
        with agent_call(run):
            return await call(ctx, tool, tool_input)
    if not len(vault):
        return await call(ctx, tool, tool_input)
    restored = vault.restore_json(tool_input)  # right before the tool runs
    output = await call(ctx, tool, restored)
    if restored == tool_input:
        return output
    # the agent's state (which may be serialised) keeps the arguments as the model wrote them
    return output.model_copy(update={"raw_input": {"args": (), "kwargs": tool_input}})


async def _take_answer(ctx: Context, name: str, tool_input: dict[str, Any]) -> dict[str, Any] | None:
    """Remove and return the reviewer's answer for this call, if any (one edit of the store: a step's
    calls run concurrently)."""
    async with ctx.store.edit_state() as state:
        answered: list[dict[str, Any]] = list(state.get(REVIEWED_KEY, None) or [])
        for i, entry in enumerate(answered):
            if entry["name"] == name and entry["arguments"] == tool_input:
                state[REVIEWED_KEY] = answered[:i] + answered[i + 1 :]
                return entry
    return None


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

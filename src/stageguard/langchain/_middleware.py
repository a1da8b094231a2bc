"""``ProtectMiddleware``: guardrails for ``langchain.agents.create_agent`` agents.

Four checkpoints, each an optional stage:

- ``input_stage``: the user's message, before the turn's first model call. An override ends the run
  with that answer and the model is never called; a redaction is what the model sees and what the
  conversation keeps.
- ``output_stage``: every model answer with text. An override replaces it (and drops its tool calls,
  which ends the loop); a redaction masks it. The model is told not to stream tokens, so a blocked
  answer never reaches ``stream_mode="messages"`` or ``astream_events``.
- ``tool_call_stage``: each tool call's arguments, before any tool runs. A blocked call gets an error
  ``ToolMessage`` the model sees, or ends the run (``on_blocked_tool="end"``); redacted arguments are
  what the tool gets.
- ``tool_result_stage``: each tool's result (``wrap_tool_call``): redact it, or block it like a call.

The first three run inside ``wrap_model_call``: node hooks (``before_agent``, ``after_model``) would
each add a graph step, about a millisecond per run. Payloads carry the conversation, the tools, every
tool call with its result or error, and the results of ``context_tools`` as context, so
``tool_error_rate``, ``tool_selection_quality`` and ``context_adherence`` work on agents.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse, PrivateStateAttr
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.tool import ToolCall as LCToolCall
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from ..payload import Payload, ToolCall, ToolSpec
from ..protect import Protect
from ..response import Response
from ..rules import ActionType
from ..stage_ref import StageLike
from ..status import FailPolicy
from ._convert import (
    arguments_text,
    last_user_text,
    message_text,
    replace_text,
    to_messages,
    tool_calls_of,
    tool_spec,
)
from ._errors import GuardrailTriggered
from ._stage import checker

ModelResult = ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]
ToolResult = ToolMessage | Command[Any]
NOT_RUN = "Not run: another tool call in this step was blocked."


class ProtectState(AgentState[Any]):
    """Agent state plus the override that ends the run after a blocked tool result."""

    stageguard_halt: NotRequired[Annotated[str | None, PrivateStateAttr]]


def _config() -> RunnableConfig | None:
    try:
        return get_config()
    except RuntimeError:  # called outside a graph run (hooks called directly)
        return None


@dataclass
class _Turn:
    """The user message that starts this turn, and where it is in the request's messages."""

    index: int
    text: str
    payload: Payload


@dataclass
class _Outcome:
    """What the checks around one model call decided (applied by :meth:`ProtectMiddleware._finish`)."""

    state: dict[str, Any] = field(default_factory=dict)  # extra state updates (redacted input, jump)
    answer: Response | None = None
    calls: list[Response] = field(default_factory=list)


class ProtectMiddleware(AgentMiddleware[ProtectState, Any, Any]):
    """Checks an agent's input, model answers, tool calls and tool results against stages.

    Stages are names, :class:`StageRef` objects or lists of rulesets. ``on_trigger="raise"`` raises
    :class:`GuardrailTriggered` instead of applying a decision. ``context_tools`` names the tools whose
    results are context for the answer (default: every successful tool result). With
    ``stream_model_tokens=True`` the model streams even when answers are checked (they can then leak
    through ``stream_mode="messages"`` before the check).
    """

    state_schema = ProtectState

    def __init__(
        self,
        *,
        input_stage: StageLike | None = None,
        output_stage: StageLike | None = None,
        tool_call_stage: StageLike | None = None,
        tool_result_stage: StageLike | None = None,
        protect: Protect | None = None,
        project_name: str | None = None,
        timeout: float = 300.0,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
        metadata: dict[str, Any] | None = None,
        on_trigger: Literal["apply", "raise"] = "apply",
        on_blocked_tool: Literal["error", "end"] = "error",
        context_tools: Collection[str] | None = None,
        stream_model_tokens: bool = False,
    ) -> None:
        super().__init__()
        options: dict[str, Any] = {
            "protect": protect,
            "timeout": timeout,
            "fail_policy": fail_policy,
            "shadow": shadow,
            "metadata": metadata,
            "project_name": project_name,
        }
        self.input = checker(input_stage, **options)
        self.output = checker(output_stage, **options)
        self.tool_call = checker(tool_call_stage, **options)
        self.tool_result = checker(tool_result_stage, **options)
        if not (self.input or self.output or self.tool_call or self.tool_result):
            raise ValueError("ProtectMiddleware needs at least one stage")
        self.on_trigger = on_trigger
        self.on_blocked_tool = on_blocked_tool
        self.context_tools = set(context_tools) if context_tools is not None else None
        self.stream_model_tokens = stream_model_tokens
        self._specs: dict[int, tuple[object, ToolSpec]] = {}
        self._quiet_models: dict[int, tuple[BaseChatModel, BaseChatModel]] = {}

    # -- payload pieces

    def _tool_specs(self, tools: Sequence[BaseTool | dict[str, Any]]) -> list[ToolSpec]:
        specs = []
        for tool in tools:
            cached = self._specs.get(id(tool))
            if cached is None or cached[0] is not tool:
                cached = self._specs[id(tool)] = (tool, tool_spec(tool))
            specs.append(cached[1])
        return specs

    def _context(self, messages: Sequence[BaseMessage]) -> list[str] | None:
        context = [
            message_text(m)
            for m in messages
            if isinstance(m, ToolMessage)
            and m.status != "error"
            and (self.context_tools is None or m.name in self.context_tools)
        ]
        return [c for c in context if c] or None

    def _decided(self, response: Response, where: str, text: str) -> bool:
        """Whether the decision changes something (raising instead, when configured to)."""
        if not response.applied:
            return False
        if self.on_trigger == "raise":
            raise GuardrailTriggered(response, where=where, text=text)
        return True

    # -- before the model: a halted run, and the turn's user message

    def _halted(self, request: ModelRequest[Any]) -> ModelResult | None:
        halt = request.state.get("stageguard_halt") if isinstance(request.state, dict) else None
        if not isinstance(halt, str) or not halt:
            return None
        return ExtendedModelResponse(
            model_response=ModelResponse(result=[AIMessage(content=halt)]),
            command=Command(update={"stageguard_halt": None, "jump_to": "end"}),
        )

    def _turn(self, request: ModelRequest[Any]) -> _Turn | None:
        """The user message to check: the last message, i.e. this is the turn's first model call."""
        if self.input is None or not request.messages or request.messages[-1].type != "human":
            return None
        index = len(request.messages) - 1
        text = message_text(request.messages[index])
        if not text:
            return None
        payload = Payload(input=text, messages=to_messages(request.messages))
        return _Turn(index, text, payload)

    def _after_input(
        self, request: ModelRequest[Any], turn: _Turn, response: Response, outcome: _Outcome
    ) -> tuple[ModelRequest[Any], ModelResult | None]:
        """The request to send on, or the answer that ends the run without calling the model."""
        if not self._decided(response, "input", turn.text):
            return request, None
        if response.action_result.type is ActionType.OVERRIDE:
            answer = ModelResponse(result=[AIMessage(content=response.text)])
            return request, ExtendedModelResponse(
                model_response=answer, command=Command(update={"jump_to": "end"})
            )
        redacted = replace_text(request.messages[turn.index], (), response.text, response.action_result.type)
        outcome.state["messages"] = [redacted]  # same id: the conversation keeps the redacted text
        messages = [*request.messages[: turn.index], redacted, *request.messages[turn.index + 1 :]]
        return request.override(messages=messages), None

    def _quiet(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        """The model, told not to stream tokens, so an answer is seen only after it is checked."""
        if self.output is None or self.stream_model_tokens:
            return request
        model = request.model
        cached = self._quiet_models.get(id(model))
        if cached is None or cached[0] is not model:
            tags = [*(model.tags or []), "nostream"]
            cached = (model, model.model_copy(update={"tags": tags, "disable_streaming": True}))
            self._quiet_models[id(model)] = cached
        return request.override(model=cached[1])

    # -- after the model: the answer and its tool calls

    @staticmethod
    def _as_response(result: ModelResult) -> ModelResponse[Any]:
        if isinstance(result, ExtendedModelResponse):
            return result.model_response
        return result if isinstance(result, ModelResponse) else ModelResponse(result=[result])

    @staticmethod
    def _answer_of(response: ModelResponse[Any]) -> AIMessage | None:
        return next((m for m in reversed(response.result) if isinstance(m, AIMessage)), None)

    def _answer_payload(self, request: ModelRequest[Any], answer: AIMessage) -> Payload | None:
        text = message_text(answer)
        if self.output is None or not text:
            return None
        messages = request.messages
        return Payload(
            input=last_user_text(messages),
            output=text,
            context=self._context(messages),
            messages=to_messages([*messages, answer]),
            tools=self._tool_specs(request.tools) or None,
            tool_calls=tool_calls_of(messages) or None,
        )

    def _call_payloads(self, request: ModelRequest[Any], answer: AIMessage) -> list[Payload]:
        if self.tool_call is None or not answer.tool_calls:
            return []
        messages = request.messages
        user = last_user_text(messages)
        # earlier calls that ran (their results ground argument values); blocked or failed ones are left
        # out, so one bad call does not count against every call after it
        ran = [c for c in tool_calls_of(messages) if c.status == "success"]
        specs = self._tool_specs(request.tools) or None
        conversation = to_messages([*messages, answer])
        return [
            Payload(
                input=user,
                output=arguments_text(call["args"]),
                messages=conversation,
                tools=specs,
                tool_calls=[*ran, ToolCall(name=call["name"], arguments=dict(call["args"]), id=call["id"])],
                metadata={"tool": call["name"]},
            )
            for call in answer.tool_calls
        ]

    def _overridden(self, outcome: _Outcome) -> bool:
        answer = outcome.answer
        return answer is not None and answer.applied and answer.action_result.type is ActionType.OVERRIDE

    def _finish(self, result: ModelResult, outcome: _Outcome) -> ModelResult:
        """The model's result with every decision applied (the original object when nothing changed)."""
        response = self._as_response(result)
        answer = self._answer_of(response)
        if answer is None:
            return result
        new, end = answer, False
        extra: list[BaseMessage] = []
        text = message_text(answer)
        if outcome.answer is not None and self._decided(outcome.answer, "output", text):
            action = outcome.answer.action_result.type
            new = replace_text(answer, (), outcome.answer.text, action)
            end = action is ActionType.OVERRIDE  # a final answer: no tool calls, no structured output
        if not end and outcome.calls:
            new, extra, end = self._apply_calls(new, outcome.calls)
        if new is answer and not extra and not outcome.state:
            return result
        messages = [new if m is answer else m for m in response.result] + extra
        structured = None if end else response.structured_response
        update = {**outcome.state, **({"jump_to": "end"} if end else {})}
        changed = ModelResponse(result=messages, structured_response=structured)
        return (
            ExtendedModelResponse(model_response=changed, command=Command(update=update))
            if update
            else changed
        )

    def _apply_calls(
        self, answer: AIMessage, responses: list[Response]
    ) -> tuple[AIMessage, list[BaseMessage], bool]:
        """Redacted arguments rewritten, blocked calls answered with error ToolMessages."""
        calls: list[LCToolCall] = []
        blocked: list[tuple[LCToolCall, str]] = []
        rewritten = False
        for call, response in zip(answer.tool_calls, responses, strict=True):
            if not self._decided(response, f"tool_call:{call['name']}", arguments_text(call["args"])):
                calls.append(call)
                continue
            args = _parse_args(response.text) if response.action_result.type is ActionType.REDACT else None
            if args is None:
                blocked.append((call, response.text))
                calls.append(call)
            else:
                calls.append({**call, "args": args})
                rewritten = True
        new = answer.model_copy(update={"tool_calls": calls}) if rewritten else answer
        extra: list[BaseMessage] = [_tool_error(call, text) for call, text in blocked]
        if not blocked or self.on_blocked_tool == "error":
            return new, extra, False
        blocked_ids = {call["id"] for call, _ in blocked}
        extra += [_tool_error(call, NOT_RUN) for call in calls if call["id"] not in blocked_ids]
        extra.append(AIMessage(content=blocked[0][1]))
        return new, extra, True

    # -- the hooks

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResult:
        halted = self._halted(request)
        if halted is not None:
            return halted
        outcome, config = _Outcome(), _config()
        turn = self._turn(request)
        if turn is not None and self.input is not None:
            response = self.input.check(turn.payload, config, where="input")
            request, early = self._after_input(request, turn, response, outcome)
            if early is not None:
                return early
        result: ModelResult = handler(self._quiet(request))
        answer = self._answer_of(self._as_response(result))
        if answer is None:
            return self._finish(result, outcome)
        payload = self._answer_payload(request, answer)
        if payload is not None and self.output is not None:
            outcome.answer = self.output.check(payload, config, where="output")
        if not self._overridden(outcome) and self.tool_call is not None:
            calls = self._call_payloads(request, answer)
            outcome.calls = [self.tool_call.check(p, config, where="tool_call") for p in calls]
        return self._finish(result, outcome)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResult:
        halted = self._halted(request)
        if halted is not None:
            return halted
        outcome, config = _Outcome(), _config()
        turn = self._turn(request)
        if turn is not None and self.input is not None:
            response = await self.input.acheck(turn.payload, config, where="input")
            request, early = self._after_input(request, turn, response, outcome)
            if early is not None:
                return early
        result: ModelResult = await handler(self._quiet(request))
        answer = self._answer_of(self._as_response(result))
        if answer is None:
            return self._finish(result, outcome)
        payload = self._answer_payload(request, answer)
        if payload is not None and self.output is not None:
            outcome.answer = await self.output.acheck(payload, config, where="output")
        if not self._overridden(outcome) and self.tool_call is not None:
            calls = self._call_payloads(request, answer)
            outcome.calls = [await self.tool_call.acheck(p, config, where="tool_call") for p in calls]
        return self._finish(result, outcome)

    # -- tool results: after the tool ran, before the model sees them

    def _result_payload(self, request: ToolCallRequest, result: ToolMessage, text: str) -> Payload:
        state = request.state if isinstance(request.state, dict) else {}
        messages: list[BaseMessage] = list(state.get("messages", []))
        call = request.tool_call
        failed = result.status == "error"
        this = ToolCall(
            name=call["name"],
            arguments=dict(call["args"]),
            id=call["id"],
            result=None if failed else text,
            error=text if failed else None,
            status="error" if failed else "success",
        )
        return Payload(
            input=text,
            messages=to_messages(messages) or None,
            tool_calls=[*tool_calls_of(messages), this],
            metadata={"tool": call["name"]},
        )

    def _result_update(self, result: ToolMessage, response: Response, text: str) -> ToolResult:
        if not self._decided(response, f"tool_result:{result.name}", text):
            return result
        if response.action_result.type is ActionType.REDACT:
            redacted: ToolMessage = replace_text(result, (), response.text, ActionType.REDACT)
            return redacted
        blocked = result.model_copy(update={"content": response.text, "status": "error", "artifact": None})
        if self.on_blocked_tool == "end":  # the next model call answers with the override instead
            return Command(update={"messages": [blocked], "stageguard_halt": response.text})
        return blocked

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolResult]
    ) -> ToolResult:
        result = handler(request)
        if self.tool_result is None or not isinstance(result, ToolMessage):
            return result
        text = message_text(result)
        if not text:
            return result
        payload = self._result_payload(request, result, text)
        response = self.tool_result.check(payload, _config(), where="tool_result")
        return self._result_update(result, response, text)

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[ToolResult]]
    ) -> ToolResult:
        result = await handler(request)
        if self.tool_result is None or not isinstance(result, ToolMessage):
            return result
        text = message_text(result)
        if not text:
            return result
        payload = self._result_payload(request, result, text)
        response = await self.tool_result.acheck(payload, _config(), where="tool_result")
        return self._result_update(result, response, text)


def _tool_error(call: LCToolCall, text: str) -> ToolMessage:
    return ToolMessage(content=text, tool_call_id=call["id"] or "", name=call["name"], status="error")


def _parse_args(text: str) -> dict[str, Any] | None:
    """Redacted arguments read back (``None``: the redaction broke the JSON, so the call is blocked)."""
    try:
        args = json.loads(text)
    except ValueError:
        return None
    return args if isinstance(args, dict) else None

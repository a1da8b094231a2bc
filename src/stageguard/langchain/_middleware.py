"""``ProtectMiddleware``: guardrails for ``langchain.agents.create_agent`` agents.

Four checkpoints, each an optional stage:

- ``input_stage``: the turn's new user messages, before its first model call. An override ends the run
  with that answer and the model is never called; a redaction is what the model sees and what the
  conversation keeps.
- ``output_stage``: every model answer with text. An override replaces it (and drops its tool calls,
  which ends the loop); a redaction masks it. The model call is buffered: its tokens are not streamed
  and its callbacks (``astream_events``, ``stream_mode="messages"``, user handlers) see the model run
  only after the check, ending with the checked answer. Without a ``tool_call_stage`` it also checks
  each tool call's arguments, so a tool-call-only answer is checked too.
- ``tool_call_stage``: each tool call's arguments, before any tool runs. A blocked call gets an error
  ``ToolMessage`` the model sees, or ends the run (``on_blocked_tool="end"``); redacted arguments are
  what the tool gets.
- ``tool_result_stage``: each tool's result (``wrap_tool_call``): redact it, or block it like a call.

With ``review=True`` a tool call whose triggered ruleset asks for review (``review: true`` on its action)
is put to a person before it runs (``interrupt()`` in ``after_model``, as ``HumanInTheLoopMiddleware``
does, with its request and decision shapes). Every check numbers pseudonyms (``strategy: pseudonym``) in
the conversation's :class:`~stageguard.redaction.Vault`, kept in this process's memory only; tools get
the values back in their arguments, and :meth:`ProtectMiddleware.restore` gives them back to the user.

The first three run inside ``wrap_model_call``: node hooks (``before_agent``, ``after_model``) would
each add a graph step, about a millisecond per run. Payloads come from the core mapping
(:mod:`stageguard.checkpoints`): the conversation, the tools, every tool call that ran (once, with its
result or error) plus the checked one, and the results of ``context_tools`` as context, so
``tool_error_rate``, ``tool_selection_quality`` and ``context_adherence`` work on agents.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, NotRequired, TypeVar, cast

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse, PrivateStateAttr
from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.callbacks.manager import ahandle_event, handle_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.tool import ToolCall as LCToolCall
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tools import BaseTool
from langchain_core.tracers.langchain import LangChainTracer
from langgraph.config import get_config
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from .._review import (
    InvalidToolReview,
    parse_tool_decisions,
    rejected_message,
    review_request,
    tool_review_entry,
)
from ..checkpoints import (
    Turn,
    arguments_from_text,
    arguments_text,
    input_payload,
    output_payload,
    tool_call_payload,
    tool_result_payload,
)
from ..payload import ALL_FIELDS, Payload, ToolCall, ToolSpec
from ..protect import Protect
from ..redaction import Vault
from ..response import Response
from ..rules import ActionType
from ..stage_ref import StageLike
from ..status import FailPolicy
from ._convert import message_text, replace_text, to_turn, tool_spec
from ._errors import GuardrailTriggered
from ._events import unobserved
from ._stage import Checker, checker

ModelResult = ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]
ToolResult = ToolMessage | Command[Any]
NOT_RUN = "Not run: another tool call in this step was blocked."
BLOCKED = "stageguard_blocked"
"""``response_metadata`` key of the error ``ToolMessage`` that answers a call this middleware stopped."""
InputMessages = Literal["last", "new", "all"]


class ProtectState(AgentState[Any]):
    """Agent state plus the override that ends the run after a blocked tool result, and the tool calls
    waiting for a person's review (JSON; never a vault or a restored value)."""

    stageguard_halt: NotRequired[Annotated[str | None, PrivateStateAttr]]
    stageguard_review: NotRequired[Annotated[list[dict[str, Any]] | None, PrivateStateAttr]]


def _turn_of(
    messages: Sequence[BaseMessage],
    *,
    context: Sequence[str] | None = None,
    tools: Sequence[ToolSpec] = (),
    metadata: Mapping[str, Any] | None = None,
    fields: Container[str] = ALL_FIELDS,
) -> Turn:
    """The core turn for a conversation (the parts ``fields`` names), without the calls this middleware
    stopped: they never ran, and counting them would block every later call (a rule on
    ``tool_selection_quality`` or ``tool_error_rate`` would keep failing on the call it blocked)."""
    turn = to_turn(messages, context=context, metadata=metadata, fields=fields)
    stopped = {
        m.tool_call_id
        for m in messages
        if turn.calls and isinstance(m, ToolMessage) and m.response_metadata.get(BLOCKED)
    }
    if not stopped and not tools:
        return turn
    return replace(turn, tools=tuple(tools), calls=tuple(c for c in turn.calls if c.id not in stopped))


def _fields(*checkers: Checker | None) -> frozenset[str]:
    """The payload fields the stages of ``checkers`` read (see :meth:`Checker.fields_read`)."""
    unique = {id(c): c for c in checkers if c is not None}  # the output stage may check calls too
    return frozenset().union(*(c.fields_read() for c in unique.values()))


def _config() -> RunnableConfig | None:
    try:
        return get_config()
    except RuntimeError:  # called outside a graph run (hooks called directly)
        return None


# -- pseudonyms: one vault per conversation, in this process's memory only

ConversationKey = tuple[str, str]


def _conversation(
    config: RunnableConfig | None, messages: Sequence[BaseMessage] | None
) -> ConversationKey | None:
    """Which conversation a run belongs to: its thread, or without one (no checkpointer) the id of its
    first message, which the state keeps for the whole run (``add_messages`` gives every message one)."""
    configurable = (config or {}).get("configurable") or {}
    thread = configurable.get("thread_id")
    if thread is not None:
        return ("thread", str(thread))
    first = messages[0].id if messages else None
    return ("conversation", first) if first else None


class _Vaults:
    """The vault of each conversation, never in the graph's state (checkpoints are serialised): the
    least recently used are dropped beyond ``limit``, and any left unused for ``ttl`` seconds."""

    def __init__(self, limit: int, ttl: float) -> None:
        if limit < 1 or ttl <= 0:
            raise ValueError("max_vaults must be at least 1 and vault_ttl positive")
        self.limit, self.ttl = limit, ttl
        self._lock = threading.Lock()
        self._vaults: OrderedDict[ConversationKey, tuple[Vault, float]] = OrderedDict()

    def get(self, key: ConversationKey | None, *, create: bool = True) -> Vault | None:
        """The conversation's vault (a new one if ``create``; a throw-away one when there is no key)."""
        if key is None:
            return Vault() if create else None
        now = time.monotonic()
        with self._lock:
            found = self._vaults.pop(key, None)
            if found is not None and now - found[1] > self.ttl:
                found = None
            while self._vaults:  # the oldest first: drop the expired
                oldest, (_, used) = next(iter(self._vaults.items()))
                if now - used <= self.ttl:
                    break
                del self._vaults[oldest]
            if found is None and not create:
                return None
            vault = found[0] if found is not None else Vault()
            self._vaults[key] = (vault, now)
            while len(self._vaults) > self.limit:
                self._vaults.popitem(last=False)
            return vault


def _restoring(tool: BaseTool, vault: Vault, keys: Collection[str]) -> BaseTool:
    """A copy of ``tool`` that gets the values behind the pseudonyms of the model's arguments (``keys``)
    once its run has started: callbacks, ``astream_events`` and traces see the arguments as the model
    wrote them; only the tool's function sees the values."""
    copy = tool.model_copy()
    parse = copy._to_args_and_kwargs

    def to_args_and_kwargs(
        tool_input: Any, tool_call_id: str | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = parse(tool_input, tool_call_id)
        restored = {k: vault.restore_json(v) if k in keys else v for k, v in kwargs.items()}
        return vault.restore_json(args), restored

    object.__setattr__(copy, "_to_args_and_kwargs", to_args_and_kwargs)  # an instance attribute
    return copy


M = TypeVar("M")


def _restore_message(message: BaseMessage, vault: Vault) -> BaseMessage:
    update: dict[str, Any] = {"content": vault.restore_json(message.content)}
    if isinstance(message, AIMessage) and message.tool_calls:
        update["tool_calls"] = [{**c, "args": vault.restore_json(c["args"])} for c in message.tool_calls]
    return message.model_copy(update=update)


# -- review of tool calls: LangChain's HumanInTheLoopMiddleware request and decisions


@dataclass
class _Outcome:
    """What the checks around one model call decided (applied by :meth:`ProtectMiddleware._finish`)."""

    state: dict[str, Any] = field(default_factory=dict)  # extra state updates (redacted input, jump)
    answer: Response | None = None
    calls: list[Response | None] = field(default_factory=list)


# -- buffered callbacks: a model call's run events wait for the check of its answer

_IGNORE = {  # the handler attribute that opts out of each event (as LangChain's managers use them)
    "on_llm_start": "ignore_llm",
    "on_chat_model_start": "ignore_chat_model",
    "on_llm_new_token": "ignore_llm",
    "on_llm_end": "ignore_llm",
    "on_llm_error": "ignore_llm",
    "on_stream_event": "ignore_llm",
    "on_chain_start": "ignore_chain",
    "on_chain_end": "ignore_chain",
    "on_chain_error": "ignore_chain",
    "on_agent_action": "ignore_agent",
    "on_agent_finish": "ignore_agent",
    "on_tool_start": "ignore_agent",
    "on_tool_end": "ignore_agent",
    "on_tool_error": "ignore_agent",
    "on_retriever_start": "ignore_retriever",
    "on_retriever_end": "ignore_retriever",
    "on_retriever_error": "ignore_retriever",
    "on_retry": "ignore_retry",
    "on_custom_event": "ignore_custom_event",
    "on_text": None,
}
Event = tuple[str, tuple[Any, ...], dict[str, Any]]


class _Recorder(BaseCallbackHandler):
    """Stands in for the real handlers during a model call and records every event, in order."""

    run_inline = True

    def __init__(self) -> None:
        self.events: list[Event] = []


def _recording(name: str) -> Callable[..., None]:
    def record(self: _Recorder, *args: Any, **kwargs: Any) -> None:
        self.events.append((name, args, kwargs))

    return record


for _name in _IGNORE:
    setattr(_Recorder, _name, _recording(_name))


class _Hold:
    """Holds back a model call's callback events until its answer is checked.

    LangChain reports a model run to its handlers (``astream_events``, ``stream_mode="messages"``, a
    user's handler) as it happens, before this middleware sees the answer. So the call runs with a
    recorder in place of those handlers, and :meth:`release` replays the events afterwards with the
    checked answer in ``on_llm_end`` (or an ``on_llm_error`` when the check raised). LangSmith tracers
    stay live: a trace keeps what the model really said (and the decision next to it).
    """

    def __init__(self, config: RunnableConfig | None) -> None:
        self.config: RunnableConfig | None = None
        self.handlers: list[BaseCallbackHandler] = []
        self.recorder = _Recorder()
        callbacks = config.get("callbacks") if config is not None else None
        if config is None or not isinstance(callbacks, BaseCallbackManager):
            return  # no run, no handlers to hold back
        live = [h for h in callbacks.handlers if isinstance(h, LangChainTracer)]
        self.handlers = [h for h in callbacks.handlers if h not in live]
        if not self.handlers:
            return
        manager = callbacks.copy()
        manager.handlers = [*live, self.recorder]
        manager.inheritable_handlers = [
            *(h for h in manager.inheritable_handlers if h in live),
            self.recorder,
        ]
        self.config = {**config, "callbacks": manager}

    @contextmanager
    def holding(self) -> Iterator[None]:
        if self.config is None:
            yield
            return
        token = var_child_runnable_config.set(self.config)  # what the model call reads its config from
        try:
            yield
        finally:
            var_child_runnable_config.reset(token)

    def _events(self, original: AIMessage | None, final: AIMessage | BaseException | None) -> list[Event]:
        """The recorded events, the model run of ``original`` ending with ``final`` instead."""
        events = self.recorder.events
        self.recorder.events = []
        if original is None or final is None or final is original:
            return events
        ends = [i for i, (name, args, _) in enumerate(events) if name == "on_llm_end" and args]
        target = next((i for i in ends if _generated(events[i][1][0], original)), ends[-1] if ends else None)
        if target is None:
            return events
        name, args, kwargs = events[target]
        if isinstance(final, BaseException):
            events[target] = ("on_llm_error", (final, *args[1:]), kwargs)
        else:
            events[target] = (name, (_answered(args[0], original, final), *args[1:]), kwargs)
        return events

    def release(
        self, original: AIMessage | None = None, final: AIMessage | BaseException | None = None
    ) -> None:
        for name, args, kwargs in self._events(original, final):
            handle_event(self.handlers, name, _IGNORE[name], *args, **kwargs)

    async def arelease(
        self, original: AIMessage | None = None, final: AIMessage | BaseException | None = None
    ) -> None:
        for name, args, kwargs in self._events(original, final):
            await ahandle_event(self.handlers, name, _IGNORE[name], *args, **kwargs)


def _generated(result: Any, message: AIMessage) -> bool:
    """Whether an ``on_llm_end`` result is the model run that produced ``message``."""
    return isinstance(result, LLMResult) and any(
        isinstance(g, ChatGeneration) and g.message.id is not None and g.message.id == message.id
        for row in result.generations
        for g in row
    )


def _answered(result: Any, original: AIMessage, final: AIMessage) -> Any:
    """The model run's result with its answer replaced by the checked one."""
    if not isinstance(result, LLMResult):
        return result
    only_it = _generated(result, original)  # else: the result of the run, whatever its message ids
    generations = [
        [
            ChatGeneration(message=final, generation_info=g.generation_info)
            if isinstance(g, ChatGeneration) and (not only_it or g.message.id == original.id)
            else g
            for g in row
        ]
        for row in result.generations
    ]
    return result.model_copy(update={"generations": generations})


class ProtectMiddleware(AgentMiddleware[ProtectState, Any, Any]):
    """Checks an agent's input, model answers, tool calls and tool results against stages.

    Stages are names, :class:`StageRef` objects or lists of rulesets. ``on_trigger="raise"`` raises
    :class:`GuardrailTriggered` instead of applying a decision. ``context_tools`` names the tools whose
    results are context for the answer (default: every successful tool result). ``input_messages`` says
    which user messages the input stage checks at a turn's first model call: ``"new"`` (default) every
    user message since the last model answer, ``"last"`` only the latest, ``"all"`` every one in the
    conversation (a history the caller passes in). Without a ``tool_call_stage`` the output stage also
    checks each tool call's arguments (text the model produced) unless ``output_checks_tool_calls`` is
    false. With ``stream_model_tokens=True`` the model streams and its run is reported as it happens,
    even when answers are checked (a blocked answer can then leak through streams and events).

    ``review=True``: a tool call whose triggered ruleset has ``review: true`` waits for a person's
    decision (``interrupt()``; the agent needs a checkpointer) instead of the action applying; see
    ``docs/langchain.md``. Pseudonyms (``strategy: pseudonym``) are numbered in one vault per thread
    (or, without a thread, per conversation), at most ``max_vaults`` of them, each dropped after
    ``vault_ttl`` seconds unused.
    """

    state_schema = ProtectState

    def __new__(cls, *args: Any, review: bool = False, **kwargs: Any) -> ProtectMiddleware:
        # create_agent adds a graph node for a middleware whose class defines after_model (a step of
        # about 0.1-0.2 ms on every model call): only a reviewing middleware gets such a class
        if review and not issubclass(cls, _ReviewHooks):
            cls = _reviewing(cls)
        return super().__new__(cls)

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
        input_messages: InputMessages = "new",
        output_checks_tool_calls: bool = True,
        stream_model_tokens: bool = False,
        review: bool = False,
        max_vaults: int = 10_000,
        vault_ttl: float = 86_400.0,
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
        if input_messages not in ("last", "new", "all"):
            raise ValueError(f"input_messages must be 'last', 'new' or 'all', not {input_messages!r}")
        self.on_trigger = on_trigger
        self.on_blocked_tool = on_blocked_tool
        self.context_tools = set(context_tools) if context_tools is not None else None
        self.input_messages = input_messages
        # the tool-call arguments are model output: the output stage checks them when nothing else does
        self.call_checker: Checker | None = self.tool_call or (
            self.output if output_checks_tool_calls else None
        )
        self.stream_model_tokens = stream_model_tokens
        self.review = review
        self._vaults = _Vaults(max_vaults, vault_ttl)
        self._specs: dict[int, tuple[object, ToolSpec]] = {}
        self._quiet_models: dict[int, tuple[BaseChatModel, BaseChatModel]] = {}

    # -- payload pieces

    def _tool_specs(self, tools: Sequence[BaseTool | dict[str, Any]]) -> tuple[ToolSpec, ...]:
        specs = []
        for tool in tools:
            cached = self._specs.get(id(tool))
            if cached is None or cached[0] is not tool:
                cached = self._specs[id(tool)] = (tool, tool_spec(tool))
            specs.append(cached[1])
        return tuple(specs)

    def _context(self, messages: Sequence[BaseMessage]) -> list[str]:
        context = [
            message_text(m)
            for m in messages
            if isinstance(m, ToolMessage)
            and m.status != "error"
            and (self.context_tools is None or m.name in self.context_tools)
        ]
        return [c for c in context if c]

    def _turn(self, request: ModelRequest[Any]) -> Turn:
        """The conversation before the model's answer, as the core mapping sees it (the parts the output
        and tool-call stages read)."""
        fields = _fields(self.output, self.call_checker)
        messages = request.messages
        return _turn_of(
            messages,
            context=self._context(messages) if "context" in fields else None,
            tools=self._tool_specs(request.tools) if "tools" in fields else (),
            fields=fields,
        )

    def _decided(self, response: Response, where: str, text: str) -> bool:
        """Whether the decision changes something (raising instead, when configured to)."""
        if not response.applied:
            return False
        if self.on_trigger == "raise":
            raise GuardrailTriggered(response, where=where, text=text)
        return True

    # -- before the model: a halted run, and the turn's user messages

    def _halted(self, request: ModelRequest[Any]) -> ModelResult | None:
        halt = request.state.get("stageguard_halt") if isinstance(request.state, dict) else None
        if not isinstance(halt, str) or not halt:
            return None
        return ExtendedModelResponse(
            model_response=ModelResponse(result=[AIMessage(content=halt)]),
            command=Command(update={"stageguard_halt": None, "jump_to": "end"}),
        )

    def _inputs(self, request: ModelRequest[Any]) -> list[tuple[int, str, Payload]]:
        """The user messages to check, with their index: none unless this is the turn's first model call
        (the last message is the user's)."""
        messages = request.messages
        if self.input is None or not messages or not isinstance(messages[-1], HumanMessage):
            return []
        start = len(messages) - 1  # "last"
        if self.input_messages == "all":
            start = 0
        elif self.input_messages == "new":  # after the last model answer or tool result
            start = next(
                (i + 1 for i in range(start, -1, -1) if isinstance(messages[i], (AIMessage, ToolMessage))), 0
            )
        indexes = [i for i in range(start, len(messages)) if isinstance(messages[i], HumanMessage)]
        found = []
        fields = self.input.fields_read()
        for index in indexes:
            text = message_text(messages[index])
            payload = input_payload(text, _turn_of(messages[:index], fields=fields)) if text else None
            if payload is not None:
                found.append((index, text, payload))
        return found

    def _after_input(
        self, request: ModelRequest[Any], index: int, text: str, response: Response, outcome: _Outcome
    ) -> tuple[ModelRequest[Any], ModelResult | None]:
        """The request to send on, or the answer that ends the run without calling the model."""
        if not self._decided(response, "input", text):
            return request, None
        if response.action_result.type is ActionType.OVERRIDE:
            answer = ModelResponse(result=[AIMessage(content=response.text)])
            return request, ExtendedModelResponse(
                model_response=answer, command=Command(update={"jump_to": "end"})
            )
        redacted = replace_text(request.messages[index], (), response.text, response.action_result.type)
        # same id: the conversation keeps the redacted text
        outcome.state["messages"] = [*outcome.state.get("messages", []), redacted]
        messages = [*request.messages[:index], redacted, *request.messages[index + 1 :]]
        return request.override(messages=messages), None

    def _quiet(self, request: ModelRequest[Any], config: RunnableConfig | None) -> ModelRequest[Any]:
        """The model, told not to stream tokens, so an answer is seen only after it is checked. When no
        callback handler listens, no token can be seen: the request goes as it is (LangChain's
        ``ModelRequest.override`` costs about 20 µs)."""
        if not self._buffered or unobserved(config) is not None:
            return request
        model = request.model
        cached = self._quiet_models.get(id(model))
        if cached is None or cached[0] is not model:
            tags = [*(model.tags or []), "nostream"]
            cached = (model, model.model_copy(update={"tags": tags, "disable_streaming": True}))
            self._quiet_models[id(model)] = cached
        return request.override(model=cached[1])

    @property
    def _buffered(self) -> bool:
        return self.output is not None and not self.stream_model_tokens

    def _hold(self, config: RunnableConfig | None) -> _Hold:
        return _Hold(config if self._buffered else None)

    # -- after the model: the answer and its tool calls

    @staticmethod
    def _as_response(result: ModelResult) -> ModelResponse[Any]:
        if isinstance(result, ExtendedModelResponse):
            return result.model_response
        return result if isinstance(result, ModelResponse) else ModelResponse(result=[result])

    @classmethod
    def _answer_of(cls, result: ModelResult) -> AIMessage | None:
        return next((m for m in reversed(cls._as_response(result).result) if isinstance(m, AIMessage)), None)

    def _answer_payload(self, turn: Turn, answer: AIMessage) -> Payload | None:
        text = message_text(answer)
        return output_payload(text, turn) if self.output is not None and text else None

    def _call_payloads(self, turn: Turn, answer: AIMessage) -> list[Payload | None]:
        if self.call_checker is None:
            return []
        return [
            tool_call_payload(
                ToolCall(name=call["name"], arguments=dict(call["args"]), id=call["id"]),
                replace(turn, metadata={"tool": call["name"]}),
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
            new, extra, end = self._apply_calls(new, outcome)
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

    def _apply_calls(self, answer: AIMessage, outcome: _Outcome) -> tuple[AIMessage, list[BaseMessage], bool]:
        """Redacted arguments rewritten, blocked calls answered with error ToolMessages, calls flagged
        for review left as they are (``outcome.state`` lists them for :meth:`_review_calls`)."""
        calls: list[LCToolCall] = []
        blocked: list[tuple[LCToolCall, str]] = []
        reviews: list[dict[str, Any]] = []
        rewritten = False
        for call, response in zip(answer.tool_calls, outcome.calls, strict=True):
            where, text = f"tool_call:{call['name']}", arguments_text(call["args"])
            if response is None or not self._decided(response, where, text):
                calls.append(call)
                continue
            if self.review and response.review_requested:
                assert self.call_checker is not None  # a response to a call comes from its checker
                reviews.append(
                    tool_review_entry(
                        call["name"], call["args"], call["id"], response, self.call_checker.stage.label
                    )
                )
                calls.append(call)
                continue
            redacted = response.action_result.type is ActionType.REDACT
            args = arguments_from_text(call["args"], response.text) if redacted else None
            if args is None:  # blocked, or a redaction that can't be read back as arguments
                blocked.append((call, response.text))
                calls.append(call)
            else:
                calls.append({**call, "args": args})
                rewritten = True
        new = answer.model_copy(update={"tool_calls": calls}) if rewritten else answer
        extra: list[BaseMessage] = [_tool_error(call, text) for call, text in blocked]
        if not blocked or self.on_blocked_tool == "error":
            if reviews:
                outcome.state["stageguard_review"] = reviews
            return new, extra, False
        blocked_ids = {call["id"] for call, _ in blocked}
        extra += [_tool_error(call, NOT_RUN) for call in calls if call["id"] not in blocked_ids]
        extra.append(AIMessage(content=blocked[0][1]))
        return new, extra, True

    # -- pseudonyms

    def vault(
        self, config: RunnableConfig | None = None, messages: Sequence[BaseMessage] | None = None
    ) -> Vault | None:
        """The vault of a conversation (``None`` if it has none yet): its thread's, from ``config``
        (``{"configurable": {"thread_id": ...}}``), or without a thread the one of the run whose state
        holds ``messages``."""
        return self._vaults.get(_conversation(config, messages), create=False)

    def _vault_of(self, config: RunnableConfig | None, state: Any) -> Vault:
        messages = state.get("messages") if isinstance(state, dict) else None
        vault = self._vaults.get(_conversation(config, messages))
        assert vault is not None  # get() creates one
        return vault

    def restore(self, value: M, config: RunnableConfig | None = None) -> M:
        """``value`` with the pseudonyms of its conversation put back for the user: an agent's result
        (a dict with ``messages``), a list of messages, a message, or a string (which needs ``config``).

        The conversation is ``config``'s thread (pass the config of the run), or without a thread the
        run whose messages ``value`` holds. A copy is returned (the agent's state keeps the pseudonyms,
        which is what the model must see next turn); without a vault, ``value`` itself.
        """
        messages: Any = value.get("messages") if isinstance(value, dict) else value
        if isinstance(messages, BaseMessage):
            messages = [messages]
        if not isinstance(messages, list) or not all(isinstance(m, BaseMessage) for m in messages):
            messages = None
        if messages is None and not (config or {}).get("configurable", {}).get("thread_id"):
            raise ValueError(
                "restore() finds the conversation by the thread_id in config, or by the messages of the "
                f"agent's result: pass the run's config to restore a {type(value).__name__}"
            )
        vault = self.vault(config, messages)
        if vault is None or not len(vault):
            return value
        if isinstance(value, str):
            return cast(M, vault.restore(value))
        if isinstance(value, BaseMessage):
            return cast(M, _restore_message(value, vault))
        if isinstance(value, list):
            return cast(M, [_restore_message(m, vault) for m in value])
        if isinstance(value, dict) and isinstance(value.get("messages"), list):
            return cast(M, {**value, "messages": [_restore_message(m, vault) for m in value["messages"]]})
        return value

    # -- the hooks

    def _need_checkpointer(self, config: RunnableConfig | None) -> None:
        if (
            self.review
            and config is not None
            and config.get("configurable", {}).get(CONFIG_KEY_CHECKPOINTER) is None
        ):
            # interrupt() needs one; LangGraph would only notice when a call is first put to review
            raise ValueError(
                "ProtectMiddleware(review=True) pauses the agent with interrupt() for tool calls a stage "
                "flags for review, which needs a checkpointer: create_agent(..., checkpointer=...) "
                "(e.g. InMemorySaver())"
            )

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResult:
        halted = self._halted(request)
        if halted is not None:
            return halted
        outcome, config = _Outcome(), _config()
        self._need_checkpointer(config)
        vault = self._vault_of(config, request.state)
        for index, text, payload in self._inputs(request):
            assert self.input is not None  # there are inputs to check only with an input stage
            response = self.input.check(payload, config, where="input", vault=vault)
            request, early = self._after_input(request, index, text, response, outcome)
            if early is not None:
                return early
        hold = self._hold(config)
        answer: AIMessage | None = None
        try:
            with hold.holding():
                result: ModelResult = handler(self._quiet(request, config))
            answer = self._answer_of(result)
            if answer is not None:
                turn = self._turn(request)
                checked = self._answer_payload(turn, answer)
                if checked is not None and self.output is not None:
                    outcome.answer = self.output.check(checked, config, where="output", vault=vault)
                if not self._overridden(outcome) and self.call_checker is not None:
                    payloads = self._call_payloads(turn, answer)
                    outcome.calls = [
                        None
                        if p is None
                        else self.call_checker.check(p, config, where="tool_call", vault=vault)
                        for p in payloads
                    ]
            final = self._finish(result, outcome)
        except BaseException as exc:
            hold.release(answer, exc)
            raise
        hold.release(answer, self._answer_of(final))
        return final

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResult:
        halted = self._halted(request)
        if halted is not None:
            return halted
        outcome, config = _Outcome(), _config()
        self._need_checkpointer(config)
        vault = self._vault_of(config, request.state)
        for index, text, payload in self._inputs(request):
            assert self.input is not None  # there are inputs to check only with an input stage
            response = await self.input.acheck(payload, config, where="input", vault=vault)
            request, early = self._after_input(request, index, text, response, outcome)
            if early is not None:
                return early
        hold = self._hold(config)
        answer: AIMessage | None = None
        try:
            with hold.holding():
                result: ModelResult = await handler(self._quiet(request, config))
            answer = self._answer_of(result)
            if answer is not None:
                turn = self._turn(request)
                checked = self._answer_payload(turn, answer)
                if checked is not None and self.output is not None:
                    outcome.answer = await self.output.acheck(checked, config, where="output", vault=vault)
                if not self._overridden(outcome) and self.call_checker is not None:
                    payloads = self._call_payloads(turn, answer)
                    outcome.calls = [
                        None
                        if p is None
                        else await self.call_checker.acheck(p, config, where="tool_call", vault=vault)
                        for p in payloads
                    ]
            final = self._finish(result, outcome)
        except BaseException as exc:
            await hold.arelease(answer, exc)
            raise
        await hold.arelease(answer, self._answer_of(final))
        return final

    # -- review: after the model node, before any tool runs (only with review=True: see __new__)

    def _review_calls(self, state: Mapping[str, Any]) -> dict[str, Any] | None:
        """Put the flagged calls to a person (one interrupt for all of them), apply the decisions."""
        entries: list[dict[str, Any]] = list(state.get("stageguard_review") or [])
        if not entries:
            return None
        messages: Sequence[BaseMessage] = state.get("messages") or []
        answer = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
        by_id = {e["tool_call_id"]: e for e in entries}
        if answer is None or not any(c["id"] in by_id for c in answer.tool_calls):
            return {"stageguard_review": None}  # nothing left to review (the state was edited)
        entries = [by_id[c["id"]] for c in answer.tool_calls if c["id"] in by_id]
        request = review_request(entries)
        while True:  # an invalid answer is put back with the error: the thread can't get stuck
            answer_value = interrupt(request)
            try:
                decisions = parse_tool_decisions(answer_value, [e["name"] for e in entries])
                break
            except InvalidToolReview as exc:
                request = {**request, "error": str(exc)}
        decided: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
            e["tool_call_id"]: (e, d) for e, d in zip(entries, decisions, strict=True)
        }
        calls: list[LCToolCall] = []
        replies: list[BaseMessage] = []
        for call in answer.tool_calls:
            entry, decision = decided.get(call["id"] or "", ({}, {"type": "approve"}))
            if decision["type"] == "edit":
                call = {**call, "args": decision["edited_action"]["args"]}
            elif decision["type"] == "respond":  # the person answers for the tool, as a result
                replies.append(
                    ToolMessage(content=decision["message"], tool_call_id=call["id"] or "", name=call["name"])
                )
            elif decision["type"] == "reject":  # never ran: marked like a blocked call
                replies.append(_tool_error(call, rejected_message(entry, decision)))
            calls.append(call)
        revised = answer.model_copy(update={"tool_calls": calls}) if calls != answer.tool_calls else answer
        update_messages = ([revised] if revised is not answer else []) + replies
        return {"stageguard_review": None, **({"messages": update_messages} if update_messages else {})}

    # -- tool calls and results: the values behind pseudonyms, the result's check

    def _restored(self, request: ToolCallRequest, vault: Vault) -> ToolCallRequest:
        """The request, its tool getting the values behind the pseudonyms in its arguments."""
        args = request.tool_call["args"]
        if not len(vault) or request.tool is None or vault.restore_json(args) == args:
            return request
        return request.override(tool=_restoring(request.tool, vault, args.keys()))

    def _result_payload(self, request: ToolCallRequest, result: ToolMessage, text: str) -> Payload | None:
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
        turn = _turn_of(messages, metadata={"tool": call["name"]}, fields=_fields(self.tool_result))
        return tool_result_payload(this, turn)

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
        config = _config()
        vault = self._vault_of(config, request.state)
        result = handler(self._restored(request, vault))
        if self.tool_result is None or not isinstance(result, ToolMessage):
            return result
        text = message_text(result)
        payload = self._result_payload(request, result, text) if text else None
        if payload is None:
            return result
        response = self.tool_result.check(payload, config, where="tool_result", vault=vault)
        return self._result_update(result, response, text)

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[ToolResult]]
    ) -> ToolResult:
        config = _config()
        vault = self._vault_of(config, request.state)
        result = await handler(self._restored(request, vault))
        if self.tool_result is None or not isinstance(result, ToolMessage):
            return result
        text = message_text(result)
        payload = self._result_payload(request, result, text) if text else None
        if payload is None:
            return result
        response = await self.tool_result.acheck(payload, config, where="tool_result", vault=vault)
        return self._result_update(result, response, text)


class _ReviewHooks(ProtectMiddleware):
    """The ``after_model`` hook of a reviewing :class:`ProtectMiddleware` (see ``__new__``)."""

    def after_model(self, state: ProtectState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self._review_calls(state)

    async def aafter_model(self, state: ProtectState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self._review_calls(state)


_REVIEWING: dict[type[ProtectMiddleware], type[ProtectMiddleware]] = {}


def _reviewing(cls: type[ProtectMiddleware]) -> type[ProtectMiddleware]:
    """``cls`` with the review hook, under the same name (node names come from it); made once."""
    made = _REVIEWING.get(cls)
    if made is None:
        bases = (_ReviewHooks,) if cls is ProtectMiddleware else (cls, _ReviewHooks)
        namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        made = _REVIEWING.setdefault(cls, type(cls.__name__, bases, namespace))
    return made


def _tool_error(call: LCToolCall, text: str) -> ToolMessage:
    """The answer to a call that was stopped before it ran (marked, so later payloads leave it out)."""
    return ToolMessage(
        content=text,
        tool_call_id=call["id"] or "",
        name=call["name"],
        status="error",
        response_metadata={BLOCKED: True},
    )

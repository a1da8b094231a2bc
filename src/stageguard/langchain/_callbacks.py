"""``ProtectCallbackHandler``: guardrails for chains and agents that can't take a Guard or middleware.

Callbacks only observe: they see model inputs and outputs, tool calls, tool results and errors and
retrieved documents, but **cannot replace any output**. In observe mode every decision is recorded
(audit, shadow roll-outs); in enforce mode a decision that would change text raises
:class:`GuardrailTriggered`, which aborts the run (the handler sets ``raise_error``). An answer is
checked in ``on_llm_end``, after the model finished: every streamed token has already reached the
consumer. To hold back or change text use ``ProtectMiddleware`` (agents) or a buffered ``Guard`` /
``protect()`` (chains). Payloads come from the core mapping (:mod:`stageguard.checkpoints`), with the
model's ``tool_call_id`` as each call's id.
"""

from __future__ import annotations

import ast
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from ..checkpoints import (
    Turn,
    arguments_text,
    input_payload,
    output_payload,
    tool_call_payload,
    tool_result_payload,
)
from ..payload import Payload, ToolCall
from ..protect import Protect
from ..response import Response
from ..stage_ref import StageLike
from ..status import FailPolicy
from ._convert import message_text, texts_of, to_messages
from ._documents import UNCHECKED_TAG
from ._errors import GuardrailTriggered
from ._stage import Checker, checker


@dataclass
class Decision:
    """One recorded decision: where it was taken, for which run, and the full response."""

    where: Literal["input", "output", "tool_call", "tool_result"]
    run_id: UUID
    text: str
    response: Response

    @property
    def triggered(self) -> bool:
        return self.response.triggered


@dataclass
class _Root:
    """What one top-level run has seen so far (the surroundings of later payloads)."""

    input: str | None = None
    context: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    checked_inputs: set[str] = field(default_factory=set)


class _QuietAbort(logging.Filter):
    """Drops LangChain's "Error in ProtectCallbackHandler.on_... callback" warning for an enforce abort.

    LangChain logs every exception a handler raises, even one it then re-raises because the handler
    has ``raise_error``: the abort reaches the caller as :class:`GuardrailTriggered`, the log line is
    noise. Other handlers' errors, and this handler's other errors, are still logged.
    """

    MESSAGE = "Error in %s.%s callback: %s"
    handlers: set[str] = set()  # class names of the handlers whose aborts are quiet

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.msg == self.MESSAGE
            and isinstance(args, tuple)
            and len(args) == 3
            and args[0] in self.handlers
            and str(args[2]).startswith(f"{GuardrailTriggered.__name__}(")
        )


_QUIET_ABORT = _QuietAbort()


def _parse_tool_input(input_str: str, inputs: dict[str, Any] | None) -> dict[str, Any]:
    if inputs:
        return dict(inputs)
    for parse in (json.loads, ast.literal_eval):  # LangChain passes str(dict), not JSON
        try:
            value = parse(input_str)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return value
    return {"input": input_str}


def _last_human(messages: Sequence[BaseMessage]) -> int:
    """Index of the last user message (``len(messages)`` when there is none)."""
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return i
    return len(messages)


class ProtectCallbackHandler(BaseCallbackHandler):
    """Maps model, tool and retriever callbacks to payloads and checks them against stages.

    ``mode="observe"`` records decisions in :attr:`decisions` (and calls ``on_decision``);
    ``mode="enforce"`` also raises :class:`GuardrailTriggered` when a decision would change text (an
    answer only after all its tokens were streamed). ``context_tools`` names the tools whose results
    count as context (default: all). Without a ``tool_call_stage`` the output stage also checks the
    tool calls of each model answer (``output_checks_tool_calls``), before any of them runs.
    """

    run_inline = True  # decide in order, on the caller's thread or loop

    def __init__(
        self,
        *,
        input_stage: StageLike | None = None,
        output_stage: StageLike | None = None,
        tool_call_stage: StageLike | None = None,
        tool_result_stage: StageLike | None = None,
        mode: Literal["observe", "enforce"] = "observe",
        protect: Protect | None = None,
        project_name: str | None = None,
        timeout: float = 300.0,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
        metadata: dict[str, Any] | None = None,
        context_tools: Collection[str] | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        max_decisions: int | None = 10_000,
        output_checks_tool_calls: bool = True,
    ) -> None:
        options: dict[str, Any] = {
            "protect": protect,
            "timeout": timeout,
            "fail_policy": fail_policy,
            "shadow": shadow,
            "metadata": metadata,
            "project_name": project_name,
            "events": False,  # a callback has no run of its own to attach an event to
        }
        self.input = checker(input_stage, **options)
        self.output = checker(output_stage, **options)
        self.tool_call = checker(tool_call_stage, **options)
        self.tool_result = checker(tool_result_stage, **options)
        if not (self.input or self.output or self.tool_call or self.tool_result):
            raise ValueError("ProtectCallbackHandler needs at least one stage")
        self.mode = mode
        if mode == "enforce":
            _QuietAbort.handlers.add(type(self).__name__)
            logging.getLogger("langchain_core.callbacks.manager").addFilter(_QUIET_ABORT)  # added once
        self.output_checks_tool_calls = output_checks_tool_calls
        self.context_tools = set(context_tools) if context_tools is not None else None
        self.on_decision = on_decision
        self.decisions: deque[Decision] = deque(maxlen=max_decisions)
        self._lock = threading.Lock()
        self._parents: dict[UUID, UUID | None] = {}
        self._roots: dict[UUID, _Root] = {}
        self._llm_inputs: dict[UUID, tuple[str | None, list[BaseMessage]]] = {}
        self._tools: dict[UUID, ToolCall] = {}

    @property
    def raise_error(self) -> bool:  # type: ignore[override]
        """Only an exception of a handler with ``raise_error`` aborts the run."""
        return self.mode == "enforce"

    # -- run bookkeeping

    def _start(self, run_id: UUID, parent_run_id: UUID | None) -> _Root:
        with self._lock:
            # a run whose parent this handler never saw (attached to an inner step only) is a top-level
            # run here: its end is the one this handler will see, so its state is dropped then
            self._parents[run_id] = parent_run_id if parent_run_id in self._parents else None
            return self._root(run_id)

    def _root(self, run_id: UUID) -> _Root:
        root = run_id
        while (parent := self._parents.get(root)) is not None:
            root = parent
        return self._roots.setdefault(root, _Root())

    def _root_of(self, run_id: UUID) -> _Root:
        with self._lock:
            return self._root(run_id)

    def _end(self, run_id: UUID) -> None:
        with self._lock:
            if self._parents.get(run_id, False) is None:  # a top-level run ended: forget it all
                self._roots.pop(run_id, None)
                stale = [r for r in self._parents if r == run_id or not self._reaches_root(r)]
                for r in stale:
                    self._parents.pop(r, None)
                    self._llm_inputs.pop(r, None)
                    self._tools.pop(r, None)

    def _reaches_root(self, run_id: UUID) -> bool:
        root = run_id
        while (parent := self._parents.get(root)) is not None:
            root = parent
        return root in self._roots

    def _decide(self, check: Checker, payload: Payload, where: Any, run_id: UUID, text: str) -> Response:
        response = check.check(payload, where=where)
        decision = Decision(where=where, run_id=run_id, text=text, response=response)
        self.decisions.append(decision)
        if self.on_decision is not None:
            self.on_decision(decision)
        if self.mode == "enforce" and response.applied:
            raise GuardrailTriggered(response, where=where, text=text)
        return response

    # -- chains: only to know which runs belong together

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    # -- models

    def _model_input(
        self, run_id: UUID, parent_run_id: UUID | None, text: str | None, messages: list[BaseMessage]
    ) -> None:
        root = self._start(run_id, parent_run_id)
        self._llm_inputs[run_id] = (text, messages)
        if not text:
            return
        root.input = text
        if self.input is None or text in root.checked_inputs:
            return  # an agent sends the same user message to every model call: check it once
        root.checked_inputs.add(text)
        turn = Turn()
        if "messages" in self.input.fields_read():  # the conversation before the checked message
            turn = Turn(messages=to_messages(messages[: _last_human(messages)]))
        payload = input_payload(text, turn)
        if payload is not None:
            self._decide(self.input, payload, "input", run_id, text)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        conversation = messages[0] if messages else []
        index = _last_human(conversation)
        text = message_text(conversation[index]) if index < len(conversation) else None
        self._model_input(run_id, parent_run_id, text, conversation)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._model_input(run_id, parent_run_id, prompts[0] if prompts else None, [])

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        text_input, messages = self._llm_inputs.pop(run_id, (None, []))
        try:
            generation = (
                response.generations[0][0] if response.generations and response.generations[0] else None
            )
            if generation is None or self.output is None:
                return
            message = generation.message if isinstance(generation, ChatGeneration) else None
            text = message_text(message) if message is not None else generation.text
            root = self._root_of(run_id)
            fields = self.output.fields_read()
            turn = Turn(
                messages=to_messages(messages) if "messages" in fields else (),
                context=root.context if "context" in fields else (),
                calls=root.tool_calls if "tool_calls" in fields else (),
            )
            request = text_input or root.input
            payload = output_payload(text, turn, request=request) if text else None
            if payload is not None:
                self._decide(self.output, payload, "output", run_id, text)
            if isinstance(message, AIMessage) and self.tool_call is None and self.output_checks_tool_calls:
                self._answer_calls(message, turn, request, run_id)
        finally:
            self._end(run_id)

    def _answer_calls(self, message: AIMessage, turn: Turn, request: str | None, run_id: UUID) -> None:
        """The tool calls of an answer, checked by the output stage before any of them runs."""
        assert self.output is not None
        for call in message.tool_calls:
            checked = ToolCall(name=call["name"], arguments=dict(call["args"]), id=call.get("id"))
            meta = replace(turn, metadata={"tool": checked.name})
            payload = tool_call_payload(checked, meta, request=request)
            if payload is not None:
                text = arguments_text(checked.arguments)
                self._decide(self.output, payload, "tool_call", run_id, text)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._llm_inputs.pop(run_id, None)
        self._end(run_id)

    # -- tools

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        root = self._start(run_id, parent_run_id)
        name = str(serialized.get("name") or kwargs.get("name") or "tool")
        arguments = _parse_tool_input(input_str, inputs)
        # the model's id for the call (LangChain passes it when a tool runs a model's tool call)
        tool_call_id = kwargs.get("tool_call_id")
        call = ToolCall(
            name=name, arguments=arguments, id=tool_call_id if isinstance(tool_call_id, str) else None
        )
        self._tools[run_id] = call
        if self.tool_call is None:
            return
        turn = Turn(calls=root.tool_calls, metadata={"tool": name})
        payload = tool_call_payload(call, turn, request=root.input)
        if payload is not None:
            self._decide(self.tool_call, payload, "tool_call", run_id, arguments_text(arguments))

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        started = self._tools.pop(run_id, None)
        try:
            text = message_text(output) if isinstance(output, BaseMessage) else str(output)
            failed = isinstance(output, ToolMessage) and output.status == "error"
            root = self._root_of(run_id)
            if started is None:  # its start was not seen (the handler was attached to this run only)
                started = ToolCall(name=str(kwargs.get("name") or "tool"), arguments={})
            call = started.model_copy(
                update={
                    "result": None if failed else text,
                    "error": text if failed else None,
                    "status": "error" if failed else "success",
                }
            )
            earlier = Turn(calls=tuple(root.tool_calls), metadata={"tool": call.name})
            root.tool_calls.append(call)
            if not failed and text and (self.context_tools is None or call.name in self.context_tools):
                root.context.append(text)
            payload = tool_result_payload(call, earlier) if self.tool_result is not None and text else None
            if payload is not None and self.tool_result is not None:
                self._decide(self.tool_result, payload, "tool_result", run_id, text)
        finally:
            self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._tools.pop(run_id, None)
        if call is not None:
            failed = call.model_copy(update={"error": f"{type(error).__name__}: {error}", "status": "error"})
            self._root_of(run_id).tool_calls.append(failed)
        self._end(run_id)

    # -- retrievers

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, parent_run_id)

    def on_retriever_end(self, documents: Sequence[Document], *, run_id: UUID, **kwargs: Any) -> None:
        # a GuardedRetriever's inner run returns the documents before its guard dropped or redacted
        # them: its own run, which ends next, reports what the model gets
        if UNCHECKED_TAG not in (kwargs.get("tags") or ()):
            self._root_of(run_id).context.extend(texts_of(documents))
        self._end(run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

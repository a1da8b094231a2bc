"""What each check point sends: one framework-neutral mapping from a moment of an LLM app to a payload.

Adapters (LangChain, LlamaIndex) only translate their objects into a :class:`Turn` and call the builder
for the check point, so one stage behaves the same in every framework. The rule of thumb:

- text that goes **into** the model (the user's turn, a tool's result, a retrieved document) is ``input``;
- text the model **produced** (its answer, a tool call's arguments) is ``output``, with the user's latest
  request as ``input`` (what agent metrics compare it with);
- ``tool_calls`` lists the calls that ran, each once with its status (failed ones included), then the call
  being checked; calls the model asked for in the same turn that have not run yet are left out.

``docs/checkpoints.md`` has the table of what each check point sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import ValidationError

from .payload import Message, Payload, ToolCall, ToolSpec, text_payload
from .response import Response
from .rules import ActionType

CheckPoint = Literal["input", "output", "tool_call", "tool_result", "document"]
CHECK_POINTS: tuple[CheckPoint, ...] = ("input", "output", "tool_call", "tool_result", "document")


@dataclass(frozen=True)
class Turn:
    """What an adapter knows at a check point, in framework-neutral terms.

    ``messages`` is the conversation *before* the checked text; ``calls`` every tool call seen so far
    (pending ones, without a status, are dropped by the builders); ``context`` the retrieved documents.
    Adapters leave out the parts no scorer of the stage reads (``StageRef.fields_read``); without the
    messages, ``latest_request`` keeps the user's latest request, which output payloads send as input.
    """

    messages: Sequence[Message] = ()
    context: Sequence[str] = ()
    tools: Sequence[ToolSpec] = ()
    calls: Sequence[ToolCall] = ()
    metadata: Mapping[str, Any] | None = None
    latest_request: str | None = None

    @property
    def request(self) -> str | None:
        """The user's latest request: ``latest_request``, else the last user message with text."""
        if self.latest_request is not None:
            return self.latest_request
        return latest_request(reversed(self.messages))


def latest_request(newest_first: Iterable[Message | None]) -> str | None:
    """The user's latest request: the first user message with text in ``newest_first`` (``None`` entries,
    messages an adapter doesn't convert, are skipped). Lazy, so an adapter converts only the messages
    after it."""
    for message in newest_first:
        if message is not None and message.role == "user" and message.content.strip():
            return message.content
    return None


def ran(calls: Iterable[ToolCall], *, excluding: ToolCall | None = None) -> list[ToolCall]:
    """The calls that ran (success or error), each once (the latest record of an id wins), in order.

    ``excluding`` drops the record(s) of the call being checked, which the builders append themselves.
    """
    skip = excluding.id if excluding is not None and excluding.id else None
    latest: dict[str, ToolCall] = {}
    anonymous: list[ToolCall] = []
    order: list[str | int] = []
    for call in calls:
        if call.status is None and call.result is None and call.error is None:
            continue  # asked for, not run (yet)
        if call is excluding or (skip is not None and call.id == skip):
            continue
        if call.id:
            if call.id not in latest:
                order.append(call.id)
            latest[call.id] = call
        else:
            order.append(len(anonymous))
            anonymous.append(call)
    return [latest[key] if isinstance(key, str) else anonymous[key] for key in order]


def _payload(**fields: Any) -> Payload | None:
    """A validated payload from the non-empty fields, or ``None`` when nothing could be checked."""
    given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items() if v}
    payload = text_payload(given)
    if payload is not None:
        return payload
    try:
        return Payload(**given)
    except ValidationError:
        return None


def input_payload(text: str, turn: Turn = Turn()) -> Payload | None:
    """A user turn, before the model sees it."""
    return _payload(
        input=text,
        context=turn.context,
        messages=turn.messages,
        tools=turn.tools,
        tool_calls=ran(turn.calls),
        metadata=turn.metadata,
    )


def output_payload(text: str, turn: Turn = Turn(), *, request: str | None = None) -> Payload | None:
    """The model's answer, before the user sees it; ``request`` defaults to the turn's last user message."""
    return _payload(
        input=request if request is not None else turn.request,
        output=text,
        context=turn.context,
        messages=turn.messages,
        tools=turn.tools,
        tool_calls=ran(turn.calls),
        metadata=turn.metadata,
    )


def tool_call_payload(call: ToolCall, turn: Turn = Turn(), *, request: str | None = None) -> Payload | None:
    """A call the model asked for, before it runs: its arguments are the checked text."""
    pending = call.model_copy(update={"result": None, "error": None, "status": None})
    return _payload(
        input=request if request is not None else turn.request,
        output=arguments_text(call.arguments),
        messages=turn.messages,
        tools=turn.tools,
        tool_calls=[*ran(turn.calls, excluding=call), pending],
        metadata=turn.metadata,
    )


def tool_result_payload(call: ToolCall, turn: Turn = Turn()) -> Payload | None:
    """A call that ran (``result`` or ``error`` set), before the model sees what it returned."""
    if call.status is None:
        call = call.model_copy(update={"status": "error" if call.error is not None else "success"})
    text = call.error if call.failed else call.result
    return _payload(
        input=text,
        messages=turn.messages,
        tools=turn.tools,
        tool_calls=[*ran(turn.calls, excluding=call), call],
        metadata=turn.metadata,
    )


def document_payload(
    text: str, *, query: str | None = None, metadata: Mapping[str, Any] | None = None
) -> Payload | None:
    """A retrieved document, before it joins the prompt (indirect prompt injection, PII); ``None`` for a
    blank one (the query alone is not the document's to judge)."""
    if not text.strip():
        return None
    return _payload(
        input=text,
        messages=[Message(role="user", content=query)] if query else None,
        metadata=metadata,
    )


DocumentAction = Literal["kept", "dropped", "redacted", "replaced"]


def document_action(response: Response | None, *, on_override: Literal["drop", "replace"]) -> DocumentAction:
    """What a document guard does with a document after ``response``: an applied OVERRIDE drops it (or
    replaces its text), an applied REDACT redacts it, anything else (a PASSTHROUGH, shadow mode, no
    decision) keeps it. A failed check under ``fail_closed`` is an applied override, so it is dropped."""
    if response is None or not response.applied:
        return "kept"
    if response.action_result.type is ActionType.OVERRIDE:
        return "dropped" if on_override == "drop" else "replaced"
    return "redacted"


class DocumentDecisionBase:
    """What a document guard did with one retrieved item (a LangChain document, a LlamaIndex node) and
    the stage's response (``None``: the item had no text). The adapters' decision dataclasses add how
    they name the item."""

    action: DocumentAction
    response: Response | None

    @property
    def triggered(self) -> bool:
        return self.response is not None and self.response.triggered

    @property
    def failed(self) -> bool:
        """The check could not finish (scorer error, time-out): the fail policy decided."""
        return self.response is not None and self.response.failure is not None


D = TypeVar("D", bound=DocumentDecisionBase)


class DocumentReportBase(Generic[D]):
    """What one pass of a document guard did, item by item in retrieval order (the adapters' report
    dataclasses add their views of it)."""

    query: str | None
    decisions: tuple[D, ...]

    def having(self, action: DocumentAction) -> list[D]:
        return [d for d in self.decisions if d.action == action]

    def failed_decisions(self) -> list[D]:
        """Items whose check failed; ``fail_closed`` dropped them, ``fail_open`` kept them."""
        return [d for d in self.decisions if d.failed]

    @property
    def changed(self) -> bool:
        return any(d.action != "kept" for d in self.decisions)


def document_mark(response: Response, stage_label: str | None) -> dict[str, Any]:
    """The metadata entry of a changed document: what was done, by which stage version, to which labels."""
    result, meta = response.action_result, response.stage_metadata
    return {
        "action": result.type.value,
        "stage": meta.stage_name if meta else stage_label,
        "stage_version": meta.stage_version if meta else None,
        "labels": sorted({span.label for span in result.spans if span.label}),
        "trace_id": response.trace_metadata.id,
    }


def arguments_text(arguments: Mapping[str, Any]) -> str:
    """A tool call's arguments as the text a stage checks: a single string argument as is, else JSON."""
    if not arguments:
        return ""
    if len(arguments) == 1:
        (value,) = arguments.values()
        if isinstance(value, str):
            return value
    return json.dumps(arguments, ensure_ascii=False, default=str)


def arguments_from_text(arguments: Mapping[str, Any], text: str) -> dict[str, Any] | None:
    """The arguments after a redaction of :func:`arguments_text`, or ``None`` if they can't be rebuilt."""
    if len(arguments) == 1:
        ((key, value),) = arguments.items()
        if isinstance(value, str):
            return {key: text}
    try:
        rebuilt = json.loads(text)
    except ValueError:
        return None
    return rebuilt if isinstance(rebuilt, dict) and rebuilt.keys() == arguments.keys() else None

"""Value <-> payload mapping: find the text a guard checks in a LangChain value and write the decision back.

A replacement always keeps the type it replaces (a ``str`` stays a ``str``, an ``AIMessageChunk`` stays a
chunk), because downstream steps break on mixed types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.messages.tool import ToolCall as LCToolCall
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from .. import checkpoints
from ..checkpoints import Turn, arguments_from_text
from ..payload import ALL_FIELDS, Message, ToolCall, ToolSpec
from ..rules import ActionType

Field = Literal["input", "output"]
Path = tuple[str | int, ...]
"""Where a text sits in a value: dict keys and message indexes, ``()`` for the value itself."""

_ROLES: dict[str, Literal["system", "user", "assistant", "tool"]] = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
}


def message_text(message: BaseMessage) -> str:
    """The text of a message, whether its content is a string or a list of blocks."""
    content = message.content
    return content if isinstance(content, str) else str(message.text)


def _wanted(message: BaseMessage, field: Field) -> bool:
    return isinstance(message, AIMessage) if field == "output" else isinstance(message, HumanMessage)


def _last_index(messages: Sequence[BaseMessage], field: Field) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if _wanted(messages[i], field):
            return i
    return None


MessageScope = Literal["all", "last"]
"""Which human messages of a message list an input guard checks: every one, or only the last."""


@dataclass(frozen=True)
class Spot:
    """One text a guard checks: where it sits in the value, and the conversation before it."""

    path: Path
    text: str
    before: Sequence[BaseMessage] = ()
    """The messages before the text in its conversation (a message list, or a dict's history)."""
    call: ToolCall | None = None
    """Set when ``text`` is the arguments of this tool call of the AI message at ``path``."""
    call_index: int = 0


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, BaseMessage) for m in value)


def _message_spots(
    message: BaseMessage, field: Field, path: Path, before: Sequence[BaseMessage]
) -> list[Spot]:
    """The message's text, and for an answer each tool call's arguments (what the tool would get)."""
    spots = [Spot(path, text, before)] if (text := message_text(message)) else []
    if field == "output" and isinstance(message, AIMessage):
        for i, call in enumerate(message.tool_calls):
            arguments = dict(call.get("args") or {})
            if text := checkpoints.arguments_text(arguments):
                spots.append(Spot(path, text, before, _tool_call(call), i))
    return spots


def _list_spots(messages: Sequence[BaseMessage], field: Field, scope: MessageScope, path: Path) -> list[Spot]:
    """Input: the human messages (every one, or the last); output: the last AI message (the answer)."""
    if field == "input" and scope == "all":
        indexes = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    else:
        last = _last_index(messages, field)
        indexes = [] if last is None else [last]
    return [spot for i in indexes for spot in _message_spots(messages[i], field, (*path, i), messages[:i])]


def find_spots(
    value: Any,
    field: Field,
    *,
    keys: Sequence[str] | None = None,
    skip: Iterable[str] = (),
    messages: MessageScope = "all",
) -> list[Spot]:
    """The non-empty texts to check in ``value``, where they are and what came before them.

    A dict gives ``keys`` (default: every string value except ``skip``, plus the messages of message
    and message-list values such as a ``history``); a prompt value or message list gives its human
    messages (input, ``messages="all"`` or ``"last"``) or its last AI message (output). An AI message
    checked as output also gives each tool call's arguments.
    """
    if isinstance(value, str):
        return [Spot((), value)] if value else []
    if isinstance(value, BaseMessage):
        return _message_spots(value, field, (), ())
    if isinstance(value, StringPromptValue):
        return [Spot((), value.text)] if value.text else []
    if isinstance(value, ChatPromptValue):
        return _list_spots(value.messages, field, messages, ())
    if isinstance(value, Mapping):
        return _dict_spots(value, field, keys, set(skip), messages)
    if isinstance(value, Sequence) and all(isinstance(m, BaseMessage) for m in value):
        return _list_spots(value, field, messages, ())
    raise TypeError(
        f"a guard cannot read {type(value).__name__}: it checks str, dict, StringPromptValue, "
        "ChatPromptValue, a list of messages or a message (pass keys= for nested dict values)"
    )


def _dict_spots(
    value: Mapping[str, Any],
    field: Field,
    keys: Sequence[str] | None,
    skip: set[str],
    scope: MessageScope,
) -> list[Spot]:
    if keys is not None:
        return [
            Spot((key, *spot.path), spot.text, spot.before, spot.call, spot.call_index)
            for key in keys
            if key in value
            for spot in find_spots(value[key], field, messages=scope)
        ]
    # a dict's strings come after its conversation (a MessagesPlaceholder's history)
    history: Sequence[BaseMessage] = next((v for v in value.values() if _is_messages(v)), ())
    spots: list[Spot] = []
    for key, item in value.items():
        if key in skip:
            continue
        if isinstance(item, str):
            if item:
                spots.append(Spot((key,), item, history))
        elif isinstance(item, BaseMessage):
            spots.extend(_message_spots(item, field, (key,), history))
        elif _is_messages(item):
            spots.extend(_list_spots(item, field, scope, (key,)))
    return spots


def _replace_message(message: BaseMessage, text: str, action: ActionType) -> BaseMessage:
    update: dict[str, Any] = {"content": text}
    if not isinstance(message.content, str) and action is not ActionType.OVERRIDE:
        # keep non-text blocks (images, audio) when only the text is masked
        others = [b for b in message.content if isinstance(b, dict) and b.get("type") != "text"]
        update["content"] = [{"type": "text", "text": text}, *others] if others else text
    if action is ActionType.OVERRIDE and isinstance(message, AIMessage):
        update.update(tool_calls=[], invalid_tool_calls=[])
        if isinstance(message, AIMessageChunk):
            update["tool_call_chunks"] = []
    return message.model_copy(update=update)


def _replace_leaf(value: Any, text: str, action: ActionType) -> Any:
    if isinstance(value, str):
        return text
    if isinstance(value, BaseMessage):
        return _replace_message(value, text, action)
    if isinstance(value, StringPromptValue):
        return StringPromptValue(text=text)
    raise TypeError(f"no text to replace in {type(value).__name__}")


def _drop_calls(message: AIMessage) -> AIMessage:
    update: dict[str, Any] = {"tool_calls": [], "invalid_tool_calls": []}
    if isinstance(message, AIMessageChunk):
        update["tool_call_chunks"] = []
    return message.model_copy(update=update)


def _replace_call(message: Any, index: int, text: str, action: ActionType) -> Any:
    """The AI message after a decision on its ``index``-th tool call's arguments."""
    if not isinstance(message, AIMessage) or index >= len(message.tool_calls):
        return message  # an earlier override already dropped the calls
    if action is ActionType.OVERRIDE:
        return _replace_message(message, text, action)  # the override is the answer: no tool runs
    call = message.tool_calls[index]
    arguments = arguments_from_text(dict(call.get("args") or {}), text)
    if arguments is None:  # a redaction that can't be read back as arguments: no call runs
        return _drop_calls(message)
    calls = list(message.tool_calls)
    calls[index] = {**call, "args": arguments}
    update: dict[str, Any] = {"tool_calls": calls}
    if isinstance(message, AIMessageChunk):  # chunks are re-parsed from these when added up
        update["tool_call_chunks"] = [
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c.get("id"), index=i)
            for i, c in enumerate(calls)
        ]
    return message.model_copy(update=update)


def _update_at(value: Any, path: Path, change: Callable[[Any], Any]) -> Any:
    """``value`` with ``change`` applied to what sits at ``path``, containers copied (same types)."""
    if isinstance(value, ChatPromptValue):
        return ChatPromptValue(messages=_update_at(list(value.messages), path, change))
    if not path:
        return change(value)
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        return {**value, head: _update_at(value[head], rest, change)}
    items = list(value)
    assert isinstance(head, int)
    items[head] = _update_at(items[head], rest, change)
    return items if isinstance(value, list) else type(value)(items)


def replace_text(value: Any, path: Path, text: str, action: ActionType) -> Any:
    """``value`` with the text at ``path`` replaced, same type as before."""
    return _update_at(value, path, lambda leaf: _replace_leaf(leaf, text, action))


def replace_spot(value: Any, spot: Spot, text: str, action: ActionType) -> Any:
    """``value`` with the decision on ``spot`` applied: its text, or the tool call it is."""
    if spot.call is None:
        return replace_text(value, spot.path, text, action)
    return _update_at(value, spot.path, lambda message: _replace_call(message, spot.call_index, text, action))


# -- surroundings: context, conversation, tools


def texts_of(obj: Any) -> list[str]:
    """Context strings from a str, a Document, or a list of them (anything else: its ``str``)."""
    if obj is None:
        return []
    if isinstance(obj, str):
        return [obj] if obj else []
    if isinstance(obj, Document):
        return [obj.page_content] if obj.page_content else []
    if isinstance(obj, BaseMessage):
        return [message_text(obj)]
    if isinstance(obj, Iterable) and not isinstance(obj, Mapping):
        return [text for item in obj for text in texts_of(item)]
    return [str(obj)]


def context_of(value: Any, key: str | None) -> list[str] | None:
    """The context strings under ``key`` of a dict value, if there are any."""
    if key is None or not isinstance(value, Mapping) or key not in value:
        return None
    return texts_of(value[key]) or None


def to_message(message: BaseMessage) -> Message | None:
    """A payload message (``None`` for roles a payload has no place for)."""
    role = message.role if isinstance(message, ChatMessage) else message.type
    mapped = _ROLES.get(role)
    if mapped is None:
        return None
    tool_call_id = message.tool_call_id if isinstance(message, ToolMessage) else None
    return Message(role=mapped, content=message_text(message), name=message.name, tool_call_id=tool_call_id)


def to_messages(messages: Iterable[BaseMessage]) -> list[Message]:
    return [m for m in (to_message(message) for message in messages) if m is not None]


def _tool_call(call: LCToolCall, result: ToolMessage | None = None) -> ToolCall:
    """A LangChain tool call as the payload describes it, with its result or error if it ran."""
    text = message_text(result) if result is not None else None
    failed = result is not None and result.status == "error"
    return ToolCall(
        name=call["name"],
        arguments=dict(call.get("args") or {}),
        id=call.get("id"),
        result=None if failed else text,
        error=text if failed else None,
        status=None if result is None else ("error" if failed else "success"),
    )


def tool_calls_of(messages: Sequence[BaseMessage]) -> list[ToolCall]:
    """Every tool call in the conversation with its result or error (from the matching ToolMessage)."""
    results = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
    return [
        _tool_call(call, results.get(call.get("id") or ""))
        for message in messages
        if isinstance(message, AIMessage)
        for call in message.tool_calls
    ]


def to_turn(
    messages: Sequence[BaseMessage] = (),
    *,
    context: Sequence[str] | None = None,
    tools: Sequence[BaseTool | Mapping[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    fields: Container[str] = ALL_FIELDS,
) -> Turn:
    """The core :class:`~stageguard.checkpoints.Turn` for a conversation (see ``docs/checkpoints.md``),
    with only the parts ``fields`` names (the payload fields the stage reads: ``StageRef.fields_read``)."""
    read_messages = "messages" in fields
    return Turn(
        messages=to_messages(messages) if read_messages else (),
        context=tuple(context or ()) if "context" in fields else (),
        tools=tuple(tool_spec(t) for t in tools or ()) if "tools" in fields else (),
        calls=tuple(tool_calls_of(messages)) if "tool_calls" in fields else (),
        metadata=metadata,
        latest_request=None if read_messages else latest_request(messages),
    )


def latest_request(messages: Sequence[BaseMessage]) -> str | None:
    """The user's latest request (``Turn.request``), converting only the messages after it."""
    return checkpoints.latest_request(map(to_message, reversed(messages)))


def tool_spec(tool: BaseTool | Mapping[str, Any]) -> ToolSpec:
    """A tool as the payload describes it: name, description, JSON-schema arguments."""
    if isinstance(tool, BaseTool):
        schema = convert_to_openai_tool(tool)["function"]
    else:
        schema = dict(tool.get("function", tool))
    return ToolSpec(
        name=str(schema.get("name", "")),
        description=str(schema.get("description") or ""),
        parameters=dict(schema.get("parameters") or {}),
    )

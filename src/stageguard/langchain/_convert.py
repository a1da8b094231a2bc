"""Value <-> payload mapping: find the text a guard checks in a LangChain value and write the decision back.

A replacement always keeps the type it replaces (a ``str`` stays a ``str``, an ``AIMessageChunk`` stays a
chunk), because downstream steps break on mixed types.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
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
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from ..checkpoints import Turn
from ..payload import Message, Payload, ToolCall, ToolSpec
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


def find_texts(
    value: Any,
    field: Field,
    *,
    keys: Sequence[str] | None = None,
    skip: Iterable[str] = (),
) -> list[tuple[Path, str]]:
    """The texts to check in ``value`` and where they are.

    A dict gives ``keys`` (default: every string value except ``skip``); prompt values and message lists
    give their last human message (input) or last AI message (output).
    """
    if isinstance(value, str):
        return [((), value)]
    if isinstance(value, BaseMessage):
        return [((), message_text(value))]
    if isinstance(value, StringPromptValue):
        return [((), value.text)]
    if isinstance(value, ChatPromptValue):
        value = value.messages
    if isinstance(value, Mapping):
        found: list[tuple[Path, str]] = []
        if keys is None:
            skipped = set(skip)
            return [((k,), v) for k, v in value.items() if isinstance(v, str) and k not in skipped]
        for key in keys:
            if key in value:
                found.extend(((key, *path), text) for path, text in find_texts(value[key], field))
        return found
    if isinstance(value, Sequence) and all(isinstance(m, BaseMessage) for m in value):
        index = _last_index(value, field)
        return [] if index is None else [((index,), message_text(value[index]))]
    raise TypeError(
        f"a guard cannot read {type(value).__name__}: it checks str, dict, StringPromptValue, "
        "ChatPromptValue, a list of messages or a message (pass keys= for nested dict values)"
    )


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


def replace_text(value: Any, path: Path, text: str, action: ActionType) -> Any:
    """``value`` with the text at ``path`` replaced, same type as before."""
    if isinstance(value, str):
        return text
    if isinstance(value, BaseMessage):
        return _replace_message(value, text, action)
    if isinstance(value, StringPromptValue):
        return StringPromptValue(text=text)
    if isinstance(value, ChatPromptValue):
        return ChatPromptValue(messages=replace_text(list(value.messages), path, text, action))
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        return {**value, head: replace_text(value[head], rest, text, action)}
    items = list(value)
    assert isinstance(head, int)
    items[head] = replace_text(items[head], rest, text, action)
    return items if isinstance(value, list) else type(value)(items)


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


def messages_of(value: Any) -> list[BaseMessage] | None:
    if isinstance(value, ChatPromptValue):
        return list(value.messages)
    if isinstance(value, list) and value and all(isinstance(m, BaseMessage) for m in value):
        return value
    return None


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


def last_user_text(messages: Sequence[BaseMessage]) -> str | None:
    """The user's latest request: what agent metrics compare the tool calls and answer with."""
    index = _last_index(messages, "input")
    return message_text(messages[index]) if index is not None else None


def tool_calls_of(messages: Sequence[BaseMessage]) -> list[ToolCall]:
    """Every tool call in the conversation with its result or error (from the matching ToolMessage)."""
    results = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
    calls: list[ToolCall] = []
    for message in messages:
        if not isinstance(message, AIMessage):
            continue
        for call in message.tool_calls:
            result = results.get(call.get("id") or "")
            text = message_text(result) if result is not None else None
            failed = result is not None and result.status == "error"
            calls.append(
                ToolCall(
                    name=call["name"],
                    arguments=dict(call.get("args") or {}),
                    id=call.get("id"),
                    result=None if failed else text,
                    error=text if failed else None,
                    status=None if result is None else ("error" if failed else "success"),
                )
            )
    return calls


def to_turn(
    messages: Sequence[BaseMessage] = (),
    *,
    context: Sequence[str] | None = None,
    tools: Sequence[BaseTool | Mapping[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Turn:
    """The core :class:`~stageguard.checkpoints.Turn` for a conversation (see ``docs/checkpoints.md``)."""
    return Turn(
        messages=to_messages(messages),
        context=tuple(context or ()),
        tools=tuple(tool_spec(t) for t in tools or ()),
        calls=tuple(tool_calls_of(messages)),
        metadata=metadata,
    )


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


def arguments_text(arguments: Mapping[str, Any]) -> str:
    """Tool call arguments as the text a stage checks (JSON, so a redaction can be read back)."""
    return json.dumps(arguments, ensure_ascii=False, default=str)


def make_payload(
    field: Field,
    text: str,
    *,
    input_text: str | None = None,
    context: list[str] | None = None,
    messages: Sequence[BaseMessage] | None = None,
) -> Payload:
    """The payload for one checked text and what surrounds it (``model_construct``: this is hot)."""
    return Payload.model_construct(
        input=text if field == "input" else input_text,
        output=text if field == "output" else None,
        context=context or None,
        messages=to_messages(messages) if messages else None,
        tools=None,
        tool_calls=None,
        metadata=None,
    )

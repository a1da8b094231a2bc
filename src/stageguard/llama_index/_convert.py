"""LlamaIndex objects to the core's terms (nodes, chat messages, tools, tool calls).

Payloads themselves are built by :mod:`stageguard.checkpoints`, the one mapping shared with LangChain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from llama_index.core.agent.workflow.workflow_events import ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore
from llama_index.core.tools import BaseTool, ToolMetadata, ToolOutput, ToolSelection

from .. import checkpoints
from ..payload import Message, ToolCall, ToolSpec

Role = Literal["system", "user", "assistant", "tool"]
_ROLES: dict[str, Role] = {
    MessageRole.SYSTEM.value: "system",
    MessageRole.DEVELOPER.value: "system",
    MessageRole.USER.value: "user",
    MessageRole.ASSISTANT.value: "assistant",
    MessageRole.CHATBOT.value: "assistant",
    MessageRole.MODEL.value: "assistant",
    MessageRole.TOOL.value: "tool",
    MessageRole.FUNCTION.value: "tool",
}


def node_text(node: NodeWithScore | BaseNode) -> str:
    """The node's own text, without metadata (what redaction spans index into)."""
    base = node.node if isinstance(node, NodeWithScore) else node
    return base.get_content(metadata_mode=MetadataMode.NONE)


def node_id(node: NodeWithScore | BaseNode) -> str:
    base = node.node if isinstance(node, NodeWithScore) else node
    return base.node_id


def without_nodes(metadata: dict[str, Any] | None, nodes: Iterable[NodeWithScore]) -> dict[str, Any] | None:
    """Response metadata without the source nodes' entries (engines key them by node id)."""
    if not metadata:
        return metadata
    ids = {node_id(n) for n in nodes}
    return {key: value for key, value in metadata.items() if key not in ids}


def context_of(nodes: Iterable[NodeWithScore] | None) -> list[str] | None:
    """Source nodes as payload context, so context adherence and completeness can run."""
    texts = [text for text in (node_text(n) for n in nodes or ()) if text]
    return texts or None


def to_message(message: ChatMessage) -> Message:
    role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    tool_call_id = message.additional_kwargs.get("tool_call_id")
    return Message(
        role=_ROLES.get(role, "user"),
        content=message.content or "",
        name=message.additional_kwargs.get("name"),
        tool_call_id=str(tool_call_id) if tool_call_id is not None else None,
    )


def to_messages(messages: Sequence[ChatMessage] | None) -> list[Message] | None:
    return [to_message(m) for m in messages] if messages else None


def latest_request(messages: Sequence[ChatMessage] | None) -> str | None:
    """The user's latest request (``Turn.request`` of the converted messages), converting only the
    messages after it."""
    return checkpoints.latest_request(map(to_message, reversed(messages or ())))


def with_text(message: ChatMessage, text: str) -> ChatMessage:
    """A copy of ``message`` whose text is ``text``; tool-call and other non-text blocks are kept."""
    others = [block for block in message.blocks if not isinstance(block, TextBlock)]
    return message.model_copy(update={"blocks": [TextBlock(text=text), *others]})


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.ASSISTANT, content=text)


_SPECS: dict[tuple[str, str, Any], ToolSpec] = {}


def tool_spec(metadata: ToolMetadata) -> ToolSpec:
    """The tool as a payload ``ToolSpec``, cached: its JSON schema costs a pydantic schema build."""
    key = (metadata.get_name(), metadata.description or "", metadata.fn_schema)
    spec = _SPECS.get(key)
    if spec is None:
        try:
            parameters = metadata.get_parameters_dict()
        except Exception:  # a tool with an unusual schema must not break the guard
            parameters = {}
        spec = ToolSpec(name=key[0], description=key[1], parameters=parameters)
        if len(_SPECS) >= 1024:  # tools made on the fly must not grow this forever
            _SPECS.clear()
        _SPECS[key] = spec
    return spec


def tool_specs(tools: Sequence[BaseTool] | None) -> list[ToolSpec] | None:
    return [tool_spec(t.metadata) for t in tools] if tools else None


def selection_call(selection: ToolSelection) -> ToolCall:
    """A call the model asked for and that has not run yet."""
    return ToolCall(name=selection.tool_name, arguments=dict(selection.tool_kwargs), id=selection.tool_id)


def output_call(
    name: str, arguments: dict[str, Any], output: ToolOutput, call_id: str | None = None
) -> ToolCall:
    """A call that ran, with its result or error (``is_error``) and the model's tool id."""
    content = output.content or ""
    return ToolCall(
        name=name,
        arguments=arguments,
        id=call_id,
        result=None if output.is_error else content,
        error=content if output.is_error else None,
        status="error" if output.is_error else "success",
    )


def result_call(result: ToolCallResult) -> ToolCall:
    """A call an agent ran (``current_tool_calls`` holds them for the run)."""
    return output_call(result.tool_name, dict(result.tool_kwargs), result.tool_output, result.tool_id)

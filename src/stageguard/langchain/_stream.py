"""Streaming helpers: join chunks for a buffered check, and the windowed mode's bookkeeping.

The window's bookkeeping and what it can leak are the core's (:mod:`stageguard._window`); this module
adds LangChain's chunk types.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessageChunk

from .._window import Redaction, TextWindow, redaction_of
from ..redaction import Vault
from ..response import Response
from ..rules import ActionType
from ._convert import message_text

__all__ = ["Redaction", "Window", "chunk_text", "join", "redaction_of"]


def join(chunks: list[Any]) -> Any:
    """The whole value a stream adds up to (``+``, as LangChain combines chunks; else the last one)."""
    total = chunks[0]
    for chunk in chunks[1:]:
        try:
            total = total + chunk
        except TypeError:
            total = chunk
    return total


def chunk_text(chunk: Any) -> str | None:
    """The text of a chunk a windowed guard can follow (``None``: the stream must be buffered)."""
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, AIMessageChunk):
        return message_text(chunk)
    return None


class Window(TextWindow):
    """What a windowed guard has received, released and still holds back, and the chunks it emits."""

    def __init__(self, window: int, every: int, field: str, vault: Vault | None = None) -> None:
        super().__init__(window, every, field=field, vault=vault)
        self.total: Any = None

    def feed(self, chunk: Any, text: str) -> bool:
        """Take a chunk; ``True`` when a check is due."""
        self.total = chunk if self.total is None else self.total + chunk
        return self.add(text)

    def blocked(self, response: Response) -> bool:
        return response.applied and response.action_result.type is ActionType.OVERRIDE

    def piece(self, text: str) -> Any:
        """A chunk of the stream's own type holding ``text``."""
        if isinstance(self.total, str):
            return text
        return AIMessageChunk(content=text, id=self.total.id)

    def last(self, text: str) -> Any:
        """The closing chunk: the rest of the text, with the stream's tool calls and metadata."""
        if isinstance(self.total, str):
            return text
        assert isinstance(self.total, BaseMessageChunk)
        return self.total.model_copy(update={"content": text})

    def override(self, text: str) -> Any:
        """The chunk that ends a cut stream (no tool calls: an override is a final answer)."""
        if isinstance(self.total, str):
            return text
        return AIMessageChunk(content=text, id=self.total.id, response_metadata=self.total.response_metadata)

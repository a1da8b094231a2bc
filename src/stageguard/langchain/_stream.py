"""Streaming helpers: join chunks for a buffered check, and the windowed mode's bookkeeping.

Windowed mode re-checks everything received so far every ``every`` characters and releases all but the
last ``window`` characters. What it can leak: text released before a later check triggers (an override
then follows text the reader already has), and a redaction span longer than the window (its start may
already be out). Spans found while still inside the window are replaced exactly, per the action's
strategy (placeholder, mask, hash or pseudonym: one vault per stream, so a value keeps its pseudonym
from one released piece to the next).
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessageChunk

from ..redaction import Vault
from ..response import Response
from ..rules import ActionType, RedactAction
from ..scorers.base import Span
from ..status import ExecutionStatus
from ._convert import message_text

Redaction = tuple[list[Span], RedactAction]


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


def redaction_of(response: Response, field: str) -> Redaction | None:
    """The spans a REDACT decision replaced, and its action (which says how)."""
    if not response.applied or response.action_result.type is not ActionType.REDACT:
        return None
    action = next((r.action for r in response.ruleset_results if r.status is ExecutionStatus.triggered), None)
    if not isinstance(action, RedactAction):
        return None
    return [span for span in response.action_result.spans if span.field == field], action


class Window:
    """What a windowed guard has received, released and still holds back."""

    def __init__(self, window: int, every: int, field: str, vault: Vault | None = None) -> None:
        self.window = max(0, window)
        self.every = max(1, every)
        self.field = field
        # pieces are redacted one at a time: a shared vault keeps pseudonyms consistent across them
        self.vault = vault if vault is not None else Vault()
        self.text = ""
        self.released = 0
        self.checked_at = 0
        self.total: Any = None

    def feed(self, chunk: Any, text: str) -> bool:
        """Take a chunk; ``True`` when a check is due."""
        self.total = chunk if self.total is None else self.total + chunk
        self.text += text
        size = len(self.text)
        return size - self.checked_at >= self.every and size - self.released > self.window

    def blocked(self, response: Response) -> bool:
        return response.applied and response.action_result.type is ActionType.OVERRIDE

    def release(self, response: Response, *, final: bool) -> str:
        """The next piece of text that is safe to emit after ``response`` (masked if it redacts)."""
        self.checked_at = len(self.text)
        redaction = redaction_of(response, self.field)
        end = len(self.text) if final else max(self.released, len(self.text) - self.window)
        if redaction is not None and not final:
            for span in redaction[0]:  # never cut through a span: it may still grow
                if span.start < end < span.end:
                    end = max(self.released, span.start)
        start, self.released = self.released, max(self.released, end)
        if end <= start:
            return ""
        if redaction is None:
            return self.text[start:end]
        spans = [
            Span(start=max(s.start, start) - start, end=min(s.end, end) - start, label=s.label)
            for s in redaction[0]
            if s.end > start and s.start < end
        ]
        return redaction[1].redact(self.text[start:end], spans, vault=self.vault)

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

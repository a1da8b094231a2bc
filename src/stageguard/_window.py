"""Windowed streaming, the framework-neutral part: what has been received, checked and released.

Every ``every`` new characters everything received so far is checked, and all but the last ``window``
characters are released. What it can leak: text released before a later check triggers (an override then
follows text the reader already has), and a redaction span longer than the window (its start may already
be out). Spans found while still inside the window are replaced exactly, per the action's strategy
(placeholder, mask, hash or pseudonym: one vault per stream, so a value keeps its pseudonym from one
released piece to the next). The adapters add their chunk types (LangChain) or the override cut
(LlamaIndex) on top.
"""

from __future__ import annotations

from .redaction import Vault
from .response import Response
from .rules import ActionType, RedactAction
from .scorers.base import Span
from .status import ExecutionStatus

Redaction = tuple[list[Span], RedactAction]


def redaction_of(response: Response, field: str) -> Redaction | None:
    """The spans an applied REDACT decision replaced in ``field``, and its action (which says how)."""
    if not response.applied or response.action_result.type is not ActionType.REDACT:
        return None
    action = next((r.action for r in response.ruleset_results if r.status is ExecutionStatus.triggered), None)
    if not isinstance(action, RedactAction):
        return None
    return [span for span in response.action_result.spans if span.field == field], action


class TextWindow:
    """The text of one windowed stream: received, checked up to ``checked_at``, released to ``released``."""

    def __init__(self, window: int, every: int, *, field: str = "output", vault: Vault | None = None) -> None:
        self.window = max(0, window)
        self.every = max(1, every)
        self.field = field
        # pieces are redacted one at a time: a shared vault keeps pseudonyms consistent across them
        self.vault = vault if vault is not None else Vault()
        self.text = ""
        self.released = 0
        self.checked_at = 0

    def add(self, text: str) -> bool:
        """Take more text; ``True`` when a check is due."""
        self.text += text
        size = len(self.text)
        return size - self.checked_at >= self.every and size - self.released > self.window

    def release(self, response: Response | None, *, final: bool) -> str:
        """The next piece that is safe to emit after ``response`` checked all the text (masked if it
        redacts); at the end (``final``) everything left."""
        self.checked_at = len(self.text)
        redaction = redaction_of(response, self.field) if response is not None else None
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

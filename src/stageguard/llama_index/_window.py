"""Windowed streaming for LlamaIndex engines: release checked text while the answer is still arriving.

The same mode and bookkeeping as LangChain's ``Guard(streaming="window")`` (``langchain/_stream.py``), on
plain text: every ``check_every`` new characters everything received so far is checked, and all but the
last ``window`` characters are released. An OVERRIDE cuts the stream: the override is the last piece and
upstream is no longer read. At the end the rest is checked and released. What it can leak (text released
before a late trigger, a redaction span longer than the window) is listed in ``docs/llama_index.md``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, Literal

from ..redaction import Vault
from ..response import Response
from ..rules import ActionType, RedactAction
from ..scorers.base import Span
from ..status import ExecutionStatus

StreamMode = Literal["buffer", "window"]
STREAM_MODES = ("buffer", "window")


def stream_mode(value: str) -> StreamMode:
    """``value`` as a streaming mode (a clear error for anything else)."""
    if value not in STREAM_MODES:
        raise ValueError(f"streaming must be one of {STREAM_MODES}, not {value!r}")
    return "window" if value == "window" else "buffer"


def _redaction(response: Response) -> tuple[list[Span], RedactAction] | None:
    """The output spans and the action of an applied REDACT decision."""
    if not response.applied or response.action_result.type is not ActionType.REDACT:
        return None
    action = next((r.action for r in response.ruleset_results if r.status is ExecutionStatus.triggered), None)
    if not isinstance(action, RedactAction):
        return None
    return [span for span in response.action_result.spans if span.field == "output"], action


class TextWindow:
    """What a windowed stream has received, released and still holds back.

    ``decision`` is the latest check's response, ``cut`` whether an override ended the stream, ``shown``
    everything released (what the reader saw, which memory should record). Released redactions use the
    action's strategy (``placeholder``, ``mask``, ``hash``, ``pseudonym`` numbered in ``vault``); pass
    the session's vault both here and to the checks, so the two agree.
    """

    def __init__(
        self, window: int = 200, check_every: int | None = None, *, vault: Vault | None = None
    ) -> None:
        self.window = max(0, window)
        # A redaction applies its action's strategy; pseudonyms are numbered in the session's vault (or
        # one of the stream's own, so a value keeps its pseudonym from one released piece to the next).
        self.vault = vault if vault is not None else Vault()
        self.every = max(1, check_every if check_every is not None else self.window // 2)
        self.text = ""
        self.shown = ""
        self.released = 0
        self.checked_at = 0
        self.decision: Response | None = None
        self.changed = False
        self.cut = False

    def feed(self, token: str) -> bool:
        """Take a token; ``True`` when a check is due."""
        self.text += token
        size = len(self.text)
        return size - self.checked_at >= self.every and size - self.released > self.window

    def step(self, response: Response | None, *, final: bool = False) -> str:
        """What to emit after a check of everything received: released text, or the override."""
        self.checked_at = len(self.text)
        if response is not None:
            self.decision = response
            self.changed = self.changed or response.applied
        if response is not None and response.applied and response.action_result.type is ActionType.OVERRIDE:
            self.cut = True
            self.shown += response.text
            return response.text
        piece = self._release(response, final=final or response is None)
        self.shown += piece
        return piece

    def _release(self, response: Response | None, *, final: bool) -> str:
        redaction = _redaction(response) if response is not None else None
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


def follow(
    window: TextWindow, tokens: Iterator[str], check: Callable[[str], Response | None]
) -> Generator[str, None, None]:
    """Release ``tokens`` through ``window``, calling ``check(text so far)``; closes ``tokens`` when done
    (on a cut, so upstream is no longer read)."""
    try:
        for token in tokens:
            if not window.feed(token or ""):
                continue
            if piece := window.step(check(window.text)):
                yield piece
            if window.cut:
                return
        if window.text and (piece := window.step(check(window.text), final=True)):
            yield piece
    finally:
        _close(tokens)


async def afollow(
    window: TextWindow,
    tokens: AsyncIterator[str],
    check: Callable[[str], Awaitable[Response | None]],
) -> AsyncGenerator[str, None]:
    """Async :func:`follow`."""
    try:
        async for token in tokens:
            if not window.feed(token or ""):
                continue
            if piece := window.step(await check(window.text)):
                yield piece
            if window.cut:
                return
        if window.text and (piece := window.step(await check(window.text), final=True)):
            yield piece
    finally:
        await _aclose(tokens)


def _close(tokens: Any) -> None:
    close = getattr(tokens, "close", None)
    if callable(close):
        close()


async def _aclose(tokens: Any) -> None:
    close = getattr(tokens, "aclose", None)
    if callable(close):
        await close()

"""Windowed streaming for LlamaIndex engines: release checked text while the answer is still arriving.

The same mode and bookkeeping (:mod:`stageguard._window`) as LangChain's ``Guard(streaming="window")``, on
plain text: every ``check_every`` new characters everything received so far is checked, and all but the
last ``window`` characters are released. An OVERRIDE cuts the stream: the override is the last piece and
upstream is no longer read. At the end the rest is checked and released. What it can leak (text released
before a late trigger, a redaction span longer than the window) is listed in ``docs/llama_index.md``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, Literal

from .._window import TextWindow as CoreWindow
from ..redaction import Vault
from ..response import Response
from ..rules import ActionType

StreamMode = Literal["buffer", "window"]
STREAM_MODES = ("buffer", "window")


def stream_mode(value: str) -> StreamMode:
    """``value`` as a streaming mode (a clear error for anything else)."""
    if value not in STREAM_MODES:
        raise ValueError(f"streaming must be one of {STREAM_MODES}, not {value!r}")
    return "window" if value == "window" else "buffer"


class TextWindow(CoreWindow):
    """What a windowed stream has received, released and still holds back.

    ``decision`` is the latest check's response, ``cut`` whether an override ended the stream, ``shown``
    everything released (what the reader saw, which memory should record). Released redactions use the
    action's strategy (``placeholder``, ``mask``, ``hash``, ``pseudonym`` numbered in ``vault``); pass
    the session's vault both here and to the checks, so the two agree.
    """

    def __init__(
        self, window: int = 200, check_every: int | None = None, *, vault: Vault | None = None
    ) -> None:
        every = check_every if check_every is not None else max(0, window) // 2
        super().__init__(window, every, vault=vault)
        self.shown = ""
        self.decision: Response | None = None
        self.changed = False
        self.cut = False

    def feed(self, token: str) -> bool:
        """Take a token; ``True`` when a check is due."""
        return self.add(token)

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
        piece = self.release(response, final=final or response is None)
        self.shown += piece
        return piece


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

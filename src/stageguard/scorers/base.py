"""The scorer interface: how a metric gets its value for a payload.

A scorer is anything with ``score(payload)`` and ``ascore(payload)`` returning a :class:`ScoreResult`.
``mode`` tells the engine how to run it within the invoke's latency budget:

- ``"inline"``: cheap CPU work (the built-in scorers): called directly, no thread hop.
- ``"thread"``: blocking work (a local model, a sync HTTP call): run in a worker thread, so the
  budget can stop waiting for it.
- ``"async"``: a coroutine (an LLM judge, a remote service): awaited with the budget as time-out.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._build import builder
from .._loop import run_sync
from ..payload import Payload

MetricValue = float | int | str | list[str] | None
ScorerMode = Literal["inline", "thread", "async"]


class Span(BaseModel):
    """A stretch of a payload field that made the metric what it is (used for redaction).

    It holds positions and a label, never the text itself: a response listing spans never reveals what
    was redacted.
    """

    model_config = ConfigDict(frozen=True)

    start: int
    end: int
    label: str
    field: Literal["input", "output"] = "input"


def merge_spans(text: str, spans: Iterable[Span]) -> list[tuple[int, int, str]]:
    """``(start, end, label)`` of the stretches ``spans`` cover in ``text``, in order: clipped to the text
    and merged where they overlap (the first span's label wins), so each stretch is replaced once."""
    merged: list[tuple[int, int, str]] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        start, end = max(0, span.start), min(len(text), span.end)
        if end <= start:
            continue
        if merged and start < merged[-1][1]:
            prev = merged[-1]
            merged[-1] = (prev[0], max(prev[1], end), prev[2])
        else:
            merged.append((start, end, span.label))
    return merged


def redact(
    text: str,
    spans: Iterable[Span],
    placeholder: str = "<{label}>",
    *,
    replace: Callable[[str, str], str] | None = None,
) -> str:
    """``text`` with every span replaced by ``placeholder`` (``{label}`` becomes e.g. ``SSN``), or by
    ``replace(label, value)`` when given (the other redaction strategies: see :mod:`stageguard.redaction`).

    Spans are clipped to the text and merged where they overlap, so each stretch is replaced once.
    """
    out: list[str] = []
    pos = 0
    for start, end, label in merge_spans(text, spans):
        out.append(text[pos:start])
        if replace is None:
            out.append(placeholder.replace("{label}", label.upper()))
        else:
            out.append(replace(label, text[start:end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


class ScoreResult(BaseModel):
    """A metric value, with the spans behind it and an optional explanation."""

    value: MetricValue
    spans: list[Span] = Field(default_factory=list)
    explanation: str | None = None


class Scorer(ABC):
    """Base class for scorers. Subclasses implement :meth:`score` or :meth:`ascore` (or both)."""

    mode: ScorerMode = "inline"
    name: str = ""
    # For ``mode = "thread"``: how many calls may run at once (None: the engine's default). Calls beyond it
    # wait for a free slot until their invoke's time-out, so a hung scorer can hold at most this many threads.
    max_concurrency: int | None = None
    # The payload fields :meth:`score` reads; ``None``: it may read any. Adapters leave out of the payload
    # the parts no scorer of the stage reads (the conversation, tool specs, retrieved context), so a
    # scorer that reads a field must list it here.
    fields_read: frozenset[str] | None = None

    def load(self) -> Scorer:
        """Load now what the scorer would load on first use (models, word lists), so that no invoke pays
        for it: :func:`~stageguard.scorers.registry.warm_up` calls it at a server's start-up. By default
        there is nothing to load."""
        return self

    def score(self, payload: Payload) -> ScoreResult:
        """Compute the value synchronously (by default: run :meth:`ascore` to completion)."""
        return run_sync(self.ascore(payload))

    def score_number(self, payload: Payload) -> ScoreResult | float | int:
        """:meth:`score`, or a bare ``float``/``int`` value standing for ``ScoreResult(value=...)``: what the
        engine's inline path calls, so a custom function's number needs no result object. By default
        :meth:`score`."""
        return self.score(payload)

    async def ascore(self, payload: Payload) -> ScoreResult:
        """Compute the value asynchronously (by default: the sync path)."""
        return self.score(payload)


class TextScorer(Scorer):
    """A scorer of one text field: built-in text metrics register one instance per field.

    Subclasses implement :meth:`score_text`; spans they return are tagged with the field. It reads only
    that field (``fields_read``): a subclass that overrides :meth:`score` to read more must say so there.
    """

    def __init__(self, field: Literal["input", "output"] = "input") -> None:
        self.field = field
        self.fields_read = frozenset((field,))

    @abstractmethod
    def score_text(self, text: str) -> ScoreResult:
        """Score one text."""

    def for_field(self, field: Literal["input", "output"]) -> TextScorer:
        """The same scorer reading another field (shares loaded weights)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.field = field
        clone.fields_read = frozenset((field,))
        return clone

    def score(self, payload: Payload) -> ScoreResult:
        result = self.score_text(getattr(payload, self.field) or "")
        if result.spans and self.field != "input":
            result.spans = [s.model_copy(update={"field": self.field}) for s in result.spans]
        return result


ScoreFunction = Callable[[Payload], Any] | Callable[[Payload], Awaitable[Any]]


_bare_result = builder(ScoreResult, ("value",))  # what ScoreResult(value=...) builds, without validating


def as_score_result(value: Any) -> ScoreResult:
    """Accept what a custom function returns: a ScoreResult, a bare value, or a tuple/set of labels."""
    if isinstance(value, ScoreResult):
        return value
    if type(value) in (float, int, str) or (
        type(value) is list and all(type(v) is str for v in value)
    ):  # valid as it is: no validation needed (a list copied, as validation copies it)
        value = list(value) if type(value) is list else value
        return _bare_result({"value": value, "spans": [], "explanation": None})
    if isinstance(value, bool):
        return ScoreResult(value=float(value))
    if isinstance(value, (tuple, set, frozenset)):
        return ScoreResult(value=sorted(value))
    return ScoreResult(value=value)


class FunctionScorer(Scorer):
    """Wraps a custom metric function of the payload, sync or async."""

    def __init__(
        self, name: str, fn: ScoreFunction, *, blocking: bool = False, max_concurrency: int | None = None
    ) -> None:
        if max_concurrency is not None and (isinstance(max_concurrency, bool) or max_concurrency < 1):
            raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        self.name = name
        self.fn = fn
        self.max_concurrency = max_concurrency
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
        )
        self.mode = "async" if self.is_async else ("thread" if blocking else "inline")

    def score(self, payload: Payload) -> ScoreResult:
        if self.is_async:
            return super().score(payload)
        return as_score_result(self.fn(payload))

    def score_number(self, payload: Payload) -> ScoreResult | float | int:
        if self.is_async or type(self).score is not FunctionScorer.score:  # a subclass's own score()
            return self.score(payload)
        value = self.fn(payload)
        return value if type(value) is float or type(value) is int else as_score_result(value)

    async def ascore(self, payload: Payload) -> ScoreResult:
        if self.is_async:
            return as_score_result(await self.fn(payload))
        return self.score(payload)

"""``Guard``: a Runnable that checks the value flowing through a chain and applies the stage's action.

It is a real step (``prompt | llm | Guard(stage="answers", field="output")``): config and callbacks
flow through it, it is a named run in traces, and batch comes from the Runnable machinery. When no
callback handler is attached anywhere (no tracer, no ``astream_events``), the run's bookkeeping is
skipped: nobody could see it, and it costs about as much as the check itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import partial
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, Field, PrivateAttr

from .._build import FastPrivateAttributes
from ..checkpoints import Turn, input_payload, output_payload, tool_call_payload
from ..payload import ALL_FIELDS, Payload
from ..protect import Protect
from ..response import Response
from ..rules import ActionType, Ruleset
from ..stage_ref import StageRef
from ..status import FailPolicy
from ._convert import MessageScope, Spot, context_of, find_spots, replace_spot, to_turn
from ._errors import GuardrailTriggered
from ._events import unobserved
from ._stage import Checker, checker_of
from ._stream import Window, chunk_text, join

ContextSource = list[str] | Callable[[], list[str] | None] | None
"""Context for a check: strings, or a function called at check time (e.g. documents captured so far)."""


def _resolve(context: ContextSource) -> list[str] | None:
    return context() if callable(context) else context


class StreamingRunnable(RunnableSerializable[Any, Any]):
    """Streams through ``_transform``/``_atransform``: a traced run when someone listens, a bare call
    otherwise (a run nobody sees costs as much as the check)."""

    # ``transform``/``atransform`` hand back the stream itself rather than re-yielding it: every chunk of
    # a stream passes through each generator layer.

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        if (quiet := unobserved(config)) is not None:
            return self._transform(input, None, quiet)
        return self._transform_stream_with_config(input, self._transform, config)

    def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        if (quiet := unobserved(config)) is not None:
            return self._atransform(input, None, quiet)
        return self._atransform_stream_with_config(input, self._atransform, config)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        return self.transform(iter([input]), config)

    def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        async def single() -> AsyncIterator[Any]:
            yield input

        return self.atransform(single(), config)

    def _transform(
        self, chunks: Iterator[Any], run_manager: CallbackManagerForChainRun | None, config: RunnableConfig
    ) -> Iterator[Any]:
        raise NotImplementedError

    def _atransform(
        self,
        chunks: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun | None,
        config: RunnableConfig,
    ) -> AsyncIterator[Any]:
        raise NotImplementedError


class Guard(FastPrivateAttributes, StreamingRunnable):
    """Checks text in the value it receives against a stage and returns the value, changed or not.

    ``field`` says which payload field the text is (``input`` for prompts and user text, ``output`` for
    model answers, whose tool-call arguments are checked too). OVERRIDE replaces the text, REDACT masks
    spans, PASSTHROUGH keeps it. An input-side OVERRIDE stops the chain: it raises
    :class:`GuardrailTriggered` (``on_block="continue"`` replaces the text and lets the chain go on);
    with ``on_trigger="raise"`` every decision that would change the text raises. In shadow mode nothing
    changes. Streams are buffered and checked before anything is released, unless
    ``streaming="window"`` (docs/langchain.md says what that mode can leak).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    stage: str | StageRef | None = None
    """Stage name (the latest version unless ``stage_version``), or a :class:`StageRef`."""
    prioritized_rulesets: list[Ruleset] | None = None
    """Inline rulesets (with ``stage``: a local stage; alone: no stage)."""
    field: Literal["input", "output"] = "input"
    stage_version: int | None = None
    project_name: str | None = None
    protect: Protect | None = Field(default=None, exclude=True)
    """The ``Protect`` to invoke (default: ``get_default_protect()`` at call time)."""
    timeout: float = 300.0
    fail_policy: FailPolicy | None = None
    shadow: bool = False
    metadata: dict[str, Any] | None = None
    on_trigger: Literal["apply", "raise"] = "apply"
    on_block: Literal["raise", "continue"] = "raise"
    """What an input-side OVERRIDE does: raise :class:`GuardrailTriggered` so the chain stops before the
    model, or ``"continue"``: pass the override on in place of the text (the model then gets it as the
    user's words). Output guards always replace."""
    messages: MessageScope = "all"
    """Which human messages of a message list (or a dict's history list) an input guard checks."""
    keys: list[str] | None = None
    """Dict keys to check (default: every string value except ``context_key``, and message values)."""
    context_key: str | None = None
    """Dict key holding retrieved context (str, Documents or a list of them) for the payload."""
    streaming: Literal["buffer", "window"] = "buffer"
    window: int = 200
    """Characters a windowed stream holds back (a match may still be completing in them)."""
    check_every: int | None = None
    """Characters between checks in windowed mode (default: half the window)."""

    _checker: Checker = PrivateAttr()

    def __init__(self, stage: str | StageRef | None = None, /, **kwargs: Any) -> None:
        if stage is not None:
            kwargs["stage"] = stage
        super().__init__(**kwargs)

    def model_post_init(self, context: Any, /) -> None:
        self._checker = checker_of(self, "Guard")
        if self.name is None:
            self.name = f"Guard[{self._checker.stage.label}:{self.field}]"

    @property
    def checker(self) -> Checker:
        return self._checker

    # -- one value

    def _payload(self, spot: Spot, turn: Turn, input_text: str | None) -> Payload | None:
        if spot.call is not None:
            return tool_call_payload(spot.call, turn, request=input_text)
        if self.field == "output":
            return output_payload(spot.text, turn, request=input_text)
        return input_payload(spot.text, turn)

    def _payloads(
        self, value: Any, input_text: str | None, context: ContextSource, *, calls_only: bool = False
    ) -> list[tuple[Spot, Payload]]:
        skip = (self.context_key,) if self.context_key else ()
        spots = find_spots(value, self.field, keys=self.keys, skip=skip, messages=self.messages)
        if calls_only:
            spots = [spot for spot in spots if spot.call is not None]
        if not spots:
            return []
        # ask the stage what it reads only when there is something around the text to leave out
        surroundings = context is not None or self.context_key or any(spot.before for spot in spots)
        fields = self._checker.fields_read() if surroundings else ALL_FIELDS
        ctx = (context_of(value, self.context_key) or _resolve(context)) if "context" in fields else None
        # a text with no conversation before it (the common case)
        alone = Turn(context=tuple(ctx)) if ctx else _NO_TURN
        found = []
        for spot in spots:
            turn = to_turn(spot.before, context=ctx, fields=fields) if spot.before else alone
            payload = self._payload(spot, turn, input_text)
            if payload is not None:
                found.append((spot, payload))
        return found

    def _where(self, spot: Spot) -> str:
        """The check point a text is (reported with each decision)."""
        return self.field if spot.call is None else "tool_call"

    def _raises(self, response: Response) -> bool:
        """Whether an applied decision raises instead of changing the value."""
        if self.on_trigger == "raise":
            return True
        overridden = response.action_result.type is ActionType.OVERRIDE
        return self.field == "input" and self.on_block == "raise" and overridden

    def _decide(self, value: Any, spot: Spot, response: Response) -> Any:
        if not response.applied:
            return value
        if self._raises(response):
            raise GuardrailTriggered(response, where=self._where(spot), text=spot.text)
        return replace_spot(value, spot, response.text, response.action_result.type)

    def check(
        self,
        value: Any,
        config: RunnableConfig | None = None,
        *,
        input_text: str | None = None,
        context: ContextSource = None,
        responses: list[Response] | None = None,
    ) -> Any:
        """Check ``value`` (no run of its own) and return it with the decisions applied."""
        for spot, payload in self._payloads(value, input_text, context):
            response = self._checker.check(payload, config, where=self._where(spot))
            if responses is not None:
                responses.append(response)
            value = self._decide(value, spot, response)
        return value

    async def acheck(
        self,
        value: Any,
        config: RunnableConfig | None = None,
        *,
        input_text: str | None = None,
        context: ContextSource = None,
        responses: list[Response] | None = None,
    ) -> Any:
        """Async :meth:`check`; several texts of one value are checked concurrently."""
        found = self._payloads(value, input_text, context)
        checks = [self._checker.acheck(p, config, where=self._where(spot)) for spot, p in found]
        results = [await checks[0]] if len(checks) == 1 else await asyncio.gather(*checks)
        for (spot, _), response in zip(found, results, strict=True):
            if responses is not None:
                responses.append(response)
            value = self._decide(value, spot, response)
        return value

    # -- Runnable

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if (quiet := unobserved(config)) is not None:  # nobody would see the run: skip its bookkeeping
            return self.check(input, quiet)
        return self._call_with_config(self._invoke, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if (quiet := unobserved(config)) is not None:
            return await self.acheck(input, quiet)
        return await self._acall_with_config(self._ainvoke, input, config)

    def _invoke(self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig) -> Any:
        return self.check(value, config)

    async def _ainvoke(
        self, value: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        return await self.acheck(value, config)

    def run_check(
        self,
        value: Any,
        config: RunnableConfig | None,
        *,
        input_text: str | None = None,
        context: ContextSource = None,
    ) -> tuple[Any, list[Response]]:
        """:meth:`check` as a traced run of this guard, returning the responses too."""
        responses: list[Response] = []
        if (quiet := unobserved(config)) is not None:
            value = self.check(value, quiet, input_text=input_text, context=context, responses=responses)
            return value, responses

        def run(value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig) -> Any:
            return self.check(value, config, input_text=input_text, context=context, responses=responses)

        return self._call_with_config(run, value, config), responses

    async def arun_check(
        self,
        value: Any,
        config: RunnableConfig | None,
        *,
        input_text: str | None = None,
        context: ContextSource = None,
    ) -> tuple[Any, list[Response]]:
        responses: list[Response] = []
        if (quiet := unobserved(config)) is not None:
            value = await self.acheck(
                value, quiet, input_text=input_text, context=context, responses=responses
            )
            return value, responses

        async def run(
            value: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
        ) -> Any:
            return await self.acheck(
                value, config, input_text=input_text, context=context, responses=responses
            )

        return await self._acall_with_config(run, value, config), responses

    # -- streams

    def stream_checked(
        self,
        upstream: Iterator[Any],
        config: RunnableConfig | None,
        *,
        input_text: str | None = None,
        context: ContextSource = None,
    ) -> Iterator[Any]:
        """Guard a stream as a traced run of this guard (used by ``protect()``)."""
        run = partial(self._transform, input_text=input_text, context=context)
        if (quiet := unobserved(config)) is not None:
            return run(upstream, None, quiet)
        return self._transform_stream_with_config(upstream, run, config)

    def astream_checked(
        self,
        upstream: AsyncIterator[Any],
        config: RunnableConfig | None,
        *,
        input_text: str | None = None,
        context: ContextSource = None,
    ) -> AsyncIterator[Any]:
        run = partial(self._atransform, input_text=input_text, context=context)
        if (quiet := unobserved(config)) is not None:
            return run(upstream, None, quiet)
        return self._atransform_stream_with_config(upstream, run, config)

    def _window(self) -> Window:
        every = self.check_every if self.check_every is not None else max(1, self.window // 2)
        return Window(self.window, every, self.field)

    def _windowed_payload(self, text: str, input_text: str | None, context: ContextSource) -> Payload:
        ctx = _resolve(context)
        payload = self._payload(Spot((), text), Turn(context=tuple(ctx)) if ctx else _NO_TURN, input_text)
        assert payload is not None  # the window holds text, and a text always makes a payload
        return payload

    def _window_response(self, response: Response, text: str) -> Response:
        if response.applied and self._raises(response):
            raise GuardrailTriggered(response, where=self.field, text=text)
        return response

    def _transform(
        self,
        chunks: Iterator[Any],
        run_manager: CallbackManagerForChainRun | None,
        config: RunnableConfig,
        *,
        input_text: str | None = None,
        context: ContextSource = None,
    ) -> Iterator[Any]:
        first = next(chunks, _END)
        if first is _END:
            return
        if self.streaming == "buffer" or chunk_text(first) is None:
            held = [first, *chunks]
            whole = join(held)
            checked = self.check(whole, config, input_text=input_text, context=context)
            if checked is whole:
                yield from held  # unchanged: keep the original chunking
            else:
                yield checked
            return
        window = self._window()
        for chunk in _chain(first, chunks):
            text = chunk_text(chunk)
            if text is None:
                raise TypeError(f"a windowed guard cannot follow a stream that mixes in {type(chunk)}")
            if not window.feed(chunk, text):
                continue
            payload = self._windowed_payload(window.text, input_text, context)
            response = self._window_response(
                self._checker.check(payload, config, where=self.field), window.text
            )
            if window.blocked(response):
                yield window.override(response.text)
                return  # stop reading upstream: the stream is cut
            piece = window.release(response, final=False)
            if piece:
                yield window.piece(piece)
        for chunk in self._close_window(window, self._final_check(window, config, input_text, context)):
            yield self._check_calls(chunk, config, input_text, context)

    def _final_check(
        self, window: Window, config: RunnableConfig, input_text: str | None, context: ContextSource
    ) -> Response | None:
        if not window.text:
            return None
        payload = self._windowed_payload(window.text, input_text, context)
        return self._window_response(self._checker.check(payload, config, where=self.field), window.text)

    async def _afinal_check(
        self, window: Window, config: RunnableConfig, input_text: str | None, context: ContextSource
    ) -> Response | None:
        if not window.text:
            return None
        payload = self._windowed_payload(window.text, input_text, context)
        response = await self._checker.acheck(payload, config, where=self.field)
        return self._window_response(response, window.text)

    def _check_calls(
        self, chunk: Any, config: RunnableConfig, input_text: str | None, context: ContextSource
    ) -> Any:
        """A windowed stream's closing chunk with its tool calls checked (its text already was)."""
        if not isinstance(chunk, AIMessage) or not chunk.tool_calls:
            return chunk
        for spot, payload in self._payloads(chunk, input_text, context, calls_only=True):
            chunk = self._decide(chunk, spot, self._checker.check(payload, config, where="tool_call"))
        return chunk

    async def _acheck_calls(
        self, chunk: Any, config: RunnableConfig, input_text: str | None, context: ContextSource
    ) -> Any:
        if not isinstance(chunk, AIMessage) or not chunk.tool_calls:
            return chunk
        for spot, payload in self._payloads(chunk, input_text, context, calls_only=True):
            response = await self._checker.acheck(payload, config, where="tool_call")
            chunk = self._decide(chunk, spot, response)
        return chunk

    @staticmethod
    def _close_window(window: Window, response: Response | None) -> Iterator[Any]:
        if response is None:
            yield window.total
        elif window.blocked(response):
            yield window.override(response.text)
        else:
            yield window.last(window.release(response, final=True))

    async def _atransform(
        self,
        chunks: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun | None,
        config: RunnableConfig,
        *,
        input_text: str | None = None,
        context: ContextSource = None,
    ) -> AsyncIterator[Any]:
        held: list[Any] = []
        window: Window | None = None
        async for chunk in chunks:
            text = chunk_text(chunk)
            if window is None and (held or self.streaming == "buffer" or text is None):
                held.append(chunk)
                continue
            if text is None:
                raise TypeError(f"a windowed guard cannot follow a stream that mixes in {type(chunk)}")
            window = window or self._window()
            if not window.feed(chunk, text):
                continue
            payload = self._windowed_payload(window.text, input_text, context)
            response = await self._checker.acheck(payload, config, where=self.field)
            response = self._window_response(response, window.text)
            if window.blocked(response):
                yield window.override(response.text)
                return
            piece = window.release(response, final=False)
            if piece:
                yield window.piece(piece)
        if window is not None:
            final = await self._afinal_check(window, config, input_text, context)
            for chunk in self._close_window(window, final):
                yield await self._acheck_calls(chunk, config, input_text, context)
            return
        if not held:
            return
        whole = join(held)
        checked = await self.acheck(whole, config, input_text=input_text, context=context)
        if checked is whole:
            for chunk in held:
                yield chunk
        else:
            yield checked


_END = object()
_NO_TURN = Turn()  # frozen: shared by every check that knows nothing around its text


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def guards_from(
    stage: str | StageRef | Sequence[Any] | None, field: Literal["input", "output"], **options: Any
) -> Guard | None:
    """A Guard for a stage given as a name, a StageRef or a list of rulesets (``None``: no guard)."""
    if stage is None:
        return None
    if isinstance(stage, (str, StageRef)):
        return Guard(stage=stage, field=field, **options)
    return Guard(prioritized_rulesets=list(stage), field=field, **options)

"""``protect(chain, input_stage=..., output_stage=...)``: guard a whole chain from the outside.

A triggered input override short-circuits (the chain is not called) and comes back in the chain's own
output type; the output stage checks what the chain returns, with the chain input as ``input`` and
retrieved documents as ``context`` (from ``context_key`` of the input or output, or captured from the
retrievers the chain runs).
"""

from __future__ import annotations

import types
import typing
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForChainRun,
)
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSequence,
)
from langchain_core.runnables.config import patch_config
from langchain_core.runnables.passthrough import RunnableAssign
from pydantic import ConfigDict

from ..metrics import find_metric
from ..protect import Protect
from ..response import Response
from ..rules import ActionType
from ..stage_ref import StageLike, as_stage
from ..status import FailPolicy
from ._convert import context_of, find_spots, texts_of
from ._events import unobserved
from ._guard import Guard, StreamingRunnable, guards_from
from ._stream import join

Manager = CallbackManagerForChainRun | AsyncCallbackManagerForChainRun
ShortCircuit = Callable[[str, Any], Any]
"""Builds the chain's answer from an input override: ``(override_text, chain_input) -> output``."""


class _ContextCollector(BaseCallbackHandler):
    """Collects the documents every retriever inside the chain returns (context for the output check)."""

    run_inline = True
    # every other event of the chain would still be dispatched to this handler: skip them early
    ignore_llm = ignore_chat_model = ignore_chain = ignore_agent = ignore_retry = ignore_custom_event = True

    def __init__(self) -> None:
        self.texts: list[str] = []

    def on_retriever_end(self, documents: Sequence[Document], **kwargs: Any) -> None:
        self.texts.extend(texts_of(documents))


def _kind(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _kind(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        kinds = {_kind(arg) for arg in typing.get_args(tp)}
        return "message" if "message" in kinds else (kinds.pop() if len(kinds) == 1 else "other")
    if tp is str:
        return "str"
    cls = origin if isinstance(origin, type) else tp
    if isinstance(cls, type):
        if issubclass(cls, BaseMessage):
            return "message"
        if issubclass(cls, Mapping) or typing.is_typeddict(cls):
            return "dict"
        if issubclass(cls, (list, tuple, Sequence)):
            return "list"
    return "other"


_EMPTY: dict[str, Callable[[], Any]] = {"str": str, "list": list, "dict": dict}


def _unwrap(runnable: Runnable[Any, Any]) -> Runnable[Any, Any]:
    while isinstance(runnable, RunnableBinding):  # with_config, bind, with_retry...
        runnable = runnable.bound
    return runnable


def _dict_kinds(runnable: Runnable[Any, Any]) -> tuple[dict[str, str], bool] | None:
    """The keys a dict-returning chain gives with the kind of each value, and whether it also returns
    the keys of its input (``RunnablePassthrough.assign`` chains, ``create_retrieval_chain``).
    ``None`` when the chain doesn't tell."""
    runnable = _unwrap(runnable)
    steps = runnable.steps if isinstance(runnable, RunnableSequence) else [runnable]
    kinds: dict[str, str] = {}
    for step in reversed(steps):  # the last steps decide the keys; assign steps add to earlier ones
        step = _unwrap(step)
        if isinstance(step, RunnablePassthrough):
            continue
        mapper = step.mapper if isinstance(step, RunnableAssign) else step
        if isinstance(mapper, RunnableParallel):
            for key, branch in mapper.steps__.items():
                kinds.setdefault(key, _output_kind(branch))
            if mapper is step:
                return kinds, False
            continue
        try:  # any other step: its output schema, when it has one
            fields: dict[str, Any] = getattr(step.get_output_schema(), "model_fields", {})
        except Exception:
            fields = {}
        for key, info in fields.items():
            if key != "root":  # a pydantic root model: the schema doesn't know the keys
                kinds.setdefault(key, _kind(info.annotation))
        return (kinds, False) if kinds else None
    return kinds, True


def _output_kind(runnable: Runnable[Any, Any]) -> str:
    try:
        return _kind(runnable.OutputType)
    except Exception:  # some runnables can't tell their output type before running
        return "other"


def _dict_answer(
    text: str, runnable: Runnable[Any, Any], answer_keys: Sequence[str] | None, chain_input: Any
) -> dict[str, Any]:
    """The chain's own dict shape: the override under its answer keys, the other keys empty (or, for a
    chain that returns its input keys, as they came in)."""
    shape = _dict_kinds(runnable)
    kinds, echoes = shape if shape is not None else ({}, False)
    answer: dict[str, Any] = dict(chain_input) if echoes and isinstance(chain_input, Mapping) else {}
    if answer_keys is None:
        answer_keys = [k for k, kind in kinds.items() if kind in ("str", "message") and k not in answer]
    for key, kind in kinds.items():
        if key not in answer and key not in answer_keys:
            answer[key] = _EMPTY[kind]() if kind in _EMPTY else None
    for key in answer_keys or ["output"]:
        answer[key] = AIMessage(content=text) if kinds.get(key) == "message" else text
    return answer


def short_circuit_value(
    text: str,
    runnable: Runnable[Any, Any],
    output_key: str | None = None,
    *,
    output_keys: Sequence[str] | None = None,
    chain_input: Any = None,
) -> Any:
    """``text`` in the type ``runnable`` returns: str, AIMessage, or its dict with ``text`` as the answer.

    The answer keys of a dict are ``output_key``, else ``output_keys``, else the chain's text-valued
    keys (from its ``RunnableParallel``/``assign`` steps or output schema), else ``"output"``.
    """
    answer_keys = [output_key] if output_key is not None else output_keys
    kind = _output_kind(runnable)
    if kind == "message":
        return AIMessage(content=text)
    if kind == "dict" or answer_keys:
        return _dict_answer(text, runnable, answer_keys, chain_input)
    return text


class ProtectedRunnable(StreamingRunnable):
    """A chain between an input guard and an output guard (see :func:`protect`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bound: Runnable[Any, Any]
    input_guard: Guard | None = None
    output_guard: Guard | None = None
    context_key: str | None = None
    capture_retrievers: bool = True
    output_key: str | None = None
    output_keys: list[str] | None = None
    """The keys of a dict output that hold the answer (where a short-circuit puts the override)."""
    short_circuit: ShortCircuit | None = None

    def model_post_init(self, context: Any, /) -> None:
        if self.name is None:
            self.name = f"Protected[{self.bound.get_name()}]"
        if self.input_guard is not None and self.input_guard.on_block == "raise":
            # an input override short-circuits here, in the chain's own output type
            self.input_guard = self.input_guard.model_copy(update={"on_block": "continue"})

    @property
    def InputType(self) -> Any:
        return self.bound.InputType

    @property
    def OutputType(self) -> Any:
        return self.bound.OutputType

    # -- pieces shared by every path

    def _blocked(self, responses: list[Response]) -> Response | None:
        for response in responses:
            if response.applied and response.action_result.type is ActionType.OVERRIDE:
                return response
        return None

    def _short(self, response: Response, value: Any, *, stream: bool = False) -> Any:
        if self.short_circuit is not None:
            return self.short_circuit(response.text, value)
        answer = short_circuit_value(
            response.text, self.bound, self.output_key, output_keys=self.output_keys, chain_input=value
        )
        if stream and isinstance(answer, AIMessage):  # a chat model streams chunks: keep the type
            return AIMessageChunk(content=answer.content)
        return answer

    def _input_text(self, value: Any) -> str | None:
        """The user's request for the output check: the input's own texts, not its history."""
        keys = self.input_guard.keys if self.input_guard else None
        skip = [self.context_key] if self.context_key else []
        try:
            spots = find_spots(value, "input", keys=keys, skip=skip, messages="last")
        except TypeError:
            return None
        own = [spot.text for spot in spots if len(spot.path) <= 1]
        return "\n".join(own) if own else (spots[-1].text if spots else None)

    def _inner_config(
        self, run_manager: Manager | None, config: RunnableConfig
    ) -> tuple[RunnableConfig, _ContextCollector | None]:
        if not (self.capture_retrievers and self.output_guard is not None):
            return self._guard_config(run_manager, config), None
        callbacks: BaseCallbackManager
        if run_manager is not None:
            callbacks = run_manager.get_child()
        else:
            parent = config.get("callbacks")
            callbacks = parent.copy() if isinstance(parent, BaseCallbackManager) else CallbackManager([])
        collector = _ContextCollector()
        callbacks.add_handler(collector, inherit=True)
        return patch_config(config, callbacks=callbacks), collector

    def _context(self, value: Any, collector: _ContextCollector | None) -> Callable[[], list[str] | None]:
        def context() -> list[str] | None:
            return context_of(value, self.context_key) or (collector.texts if collector else None) or None

        return context

    @staticmethod
    def _guard_config(run_manager: Manager | None, config: RunnableConfig) -> RunnableConfig:
        return config if run_manager is None else patch_config(config, callbacks=run_manager.get_child())

    # -- invoke

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if (quiet := unobserved(config)) is not None:  # nobody would see this run: skip its bookkeeping
            return self._invoke(input, None, quiet)
        return self._call_with_config(self._invoke, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if (quiet := unobserved(config)) is not None:
            return await self._ainvoke(input, None, quiet)
        return await self._acall_with_config(self._ainvoke, input, config)

    def _invoke(
        self, value: Any, run_manager: CallbackManagerForChainRun | None, config: RunnableConfig
    ) -> Any:
        if self.input_guard is not None:
            checked, responses = self.input_guard.run_check(value, self._guard_config(run_manager, config))
            blocked = self._blocked(responses)
            if blocked is not None:
                return self._short(blocked, value)
            value = checked
        inner_config, collector = self._inner_config(run_manager, config)
        output = self.bound.invoke(value, inner_config)
        if self.output_guard is None:
            return output
        checked, _ = self.output_guard.run_check(
            output,
            self._guard_config(run_manager, config),
            input_text=self._input_text(value),
            context=self._context(value, collector),
        )
        return checked

    async def _ainvoke(
        self, value: Any, run_manager: AsyncCallbackManagerForChainRun | None, config: RunnableConfig
    ) -> Any:
        if self.input_guard is not None:
            checked, responses = await self.input_guard.arun_check(
                value, self._guard_config(run_manager, config)
            )
            blocked = self._blocked(responses)
            if blocked is not None:
                return self._short(blocked, value)
            value = checked
        inner_config, collector = self._inner_config(run_manager, config)
        output = await self.bound.ainvoke(value, inner_config)
        if self.output_guard is None:
            return output
        checked, _ = await self.output_guard.arun_check(
            output,
            self._guard_config(run_manager, config),
            input_text=self._input_text(value),
            context=self._context(value, collector),
        )
        return checked

    # -- streams: the input is buffered and checked; the output is guarded as the output guard streams

    def _transform(
        self, chunks: Iterator[Any], run_manager: CallbackManagerForChainRun | None, config: RunnableConfig
    ) -> Iterator[Any]:
        held = list(chunks)
        if not held:
            return
        value = join(held)
        if self.input_guard is not None:
            checked, responses = self.input_guard.run_check(value, self._guard_config(run_manager, config))
            blocked = self._blocked(responses)
            if blocked is not None:
                yield self._short(blocked, value, stream=True)
                return
            value = checked
        inner_config, collector = self._inner_config(run_manager, config)
        upstream = self.bound.transform(iter([value]), inner_config)
        if self.output_guard is None:
            yield from upstream
            return
        yield from self.output_guard.stream_checked(
            upstream,
            self._guard_config(run_manager, config),
            input_text=self._input_text(value),
            context=self._context(value, collector),
        )

    async def _atransform(
        self,
        chunks: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun | None,
        config: RunnableConfig,
    ) -> AsyncIterator[Any]:
        held = [chunk async for chunk in chunks]
        if not held:
            return
        value = join(held)
        if self.input_guard is not None:
            checked, responses = await self.input_guard.arun_check(
                value, self._guard_config(run_manager, config)
            )
            blocked = self._blocked(responses)
            if blocked is not None:
                yield self._short(blocked, value, stream=True)
                return
            value = checked

        async def single() -> AsyncIterator[Any]:
            yield value

        inner_config, collector = self._inner_config(run_manager, config)
        upstream = self.bound.atransform(single(), inner_config)
        if self.output_guard is None:
            async for chunk in upstream:
                yield chunk
            return
        async for chunk in self.output_guard.astream_checked(
            upstream,
            self._guard_config(run_manager, config),
            input_text=self._input_text(value),
            context=self._context(value, collector),
        ):
            yield chunk


def protect(
    chain: Runnable[Any, Any],
    *,
    input_stage: StageLike | None = None,
    output_stage: StageLike | None = None,
    protect: Protect | None = None,
    input_keys: list[str] | None = None,
    output_keys: list[str] | None = None,
    context_key: str | None = None,
    capture_retrievers: bool | None = None,
    output_key: str | None = None,
    short_circuit: ShortCircuit | None = None,
    on_trigger: Literal["apply", "raise"] = "apply",
    streaming: Literal["buffer", "window"] = "buffer",
    window: int = 200,
    check_every: int | None = None,
    project_name: str | None = None,
    stage_version: int | None = None,
    timeout: float = 300.0,
    fail_policy: FailPolicy | str | None = None,
    shadow: bool = False,
    metadata: dict[str, Any] | None = None,
) -> ProtectedRunnable:
    """Wrap ``chain`` between an input stage and an output stage (either may be omitted).

    Stages are names (``stage_version`` pins one), :class:`StageRef` objects or lists of rulesets.
    ``input_keys``/``output_keys`` pick dict keys to check; ``context_key`` names the key (of the
    input, or of a dict output) holding retrieved documents; with ``capture_retrievers`` the documents
    of every retriever the chain runs are the context too (default: when there is no ``context_key`` and
    the output stage is a named stage or inline rulesets with a metric that needs context).
    When the input stage overrides, the chain is skipped and the override comes back in the chain's
    output type; for a dict output under ``output_key`` (else ``output_keys``, else the chain's text
    keys, see :func:`short_circuit_value`), or as ``short_circuit(text, chain_input)`` builds it.
    """
    if input_stage is None and output_stage is None:
        raise ValueError("protect() needs an input_stage, an output_stage or both")
    options: dict[str, Any] = {
        "protect": protect,
        "project_name": project_name,
        "stage_version": stage_version,
        "timeout": timeout,
        "fail_policy": FailPolicy(fail_policy) if fail_policy is not None else None,
        "shadow": shadow,
        "metadata": metadata,
        "on_trigger": on_trigger,
        "context_key": context_key,
    }
    return ProtectedRunnable(
        bound=chain,
        input_guard=guards_from(input_stage, "input", keys=input_keys, **options),
        output_guard=guards_from(
            output_stage,
            "output",
            keys=output_keys,
            streaming=streaming,
            window=window,
            check_every=check_every,
            **options,
        ),
        context_key=context_key,
        capture_retrievers=_capture(capture_retrievers, output_stage, context_key),
        output_key=output_key,
        output_keys=output_keys,
        short_circuit=short_circuit,
    )


def _capture(capture: bool | None, output_stage: StageLike | None, context_key: str | None) -> bool:
    """Whether to collect retrieved documents: a callback on every inner run costs time, so only if useful."""
    if capture is not None:
        return capture
    if output_stage is None or context_key is not None:
        return False
    ref = as_stage(output_stage)
    if ref is None or ref.rulesets is None:
        return True  # a stored stage may gain a context metric while the app runs
    return any(
        "context" in spec.fields_used
        for ruleset in ref.rulesets
        for rule in ruleset.rules
        if (spec := find_metric(rule.metric)) is not None
    )

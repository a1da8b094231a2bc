"""``protect(chain, input_stage=..., output_stage=...)``: guard a whole chain from the outside.

A triggered input override short-circuits (the chain is not called) and comes back in the chain's own
output type; the output stage checks what the chain returns, with the chain input as ``input`` and
retrieved documents as ``context`` (from ``context_key`` of the input or output, or captured from the
retrievers the chain runs). ``parallel_input=True`` starts the chain while the input stage runs
(``_parallel``); ``retry=Retry(...)`` re-asks the chain with feedback when its answer is rejected
(``_retry``).
"""

from __future__ import annotations

import asyncio
import types
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from functools import partial
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
from ._documents import UNCHECKED_TAG
from ._errors import GuardrailTriggered
from ._events import unobserved
from ._guard import Guard, StreamingRunnable, guards_from
from ._parallel import AsyncStreamSpeculation, Speculation, StreamSpeculation, cancel, start
from ._retry import Attempts, Plan, Retry, areport_attempt, report_attempt
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
        if UNCHECKED_TAG in (kwargs.get("tags") or ()):
            return  # a GuardedRetriever's inner retriever: what it dropped is not context
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
    parallel_input: bool = False
    """Start the chain while the input stage runs (see :func:`protect`)."""
    retry: Retry | None = None
    """Re-ask the chain when the output stage rejects its answer (see :class:`Retry`)."""

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
        # the collector makes LangChain dispatch every step's events (~80 µs a call): only when the
        # output stage reads the retrieved context
        if not (
            self.capture_retrievers
            and self.output_guard is not None
            and "context" in self.output_guard.checker.fields_read()
        ):
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

    def _output_options(self, value: Any, collector: _ContextCollector | None) -> dict[str, Any]:
        """What the output check of the answer to ``value`` gets besides the answer: the user's request
        (``input_text``) and the retrieved documents (``context``, read when the check runs)."""

        def context() -> list[str] | None:
            return context_of(value, self.context_key) or (collector.texts if collector else None) or None

        return {"input_text": self._input_text(value), "context": context}

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

    def _plan(self, value: Any) -> Plan | None:
        """How to re-ask the chain for this input (checked before the first call: fails early)."""
        if self.retry is None or self.output_guard is None:
            return None
        return Plan(self.retry, self.bound, value)

    def _invoke(
        self, value: Any, run_manager: CallbackManagerForChainRun | None, config: RunnableConfig
    ) -> Any:
        plan = self._plan(value)
        if self.input_guard is None:
            return self._answer(value, run_manager, config, plan)
        started: tuple[Speculation[Any], _ContextCollector | None] | None = None
        if self.parallel_input:  # the chain starts on the unchecked input; its result waits for the check
            inner_config, collector = self._inner_config(run_manager, config)
            started = Speculation(partial(self.bound.invoke, value, inner_config)), collector
        try:
            checked, responses = self.input_guard.run_check(value, self._guard_config(run_manager, config))
        except BaseException:
            if started is not None:
                started[0].abandon()
            raise
        blocked = self._blocked(responses)
        if started is not None and (blocked is not None or checked is not value):
            started[0].abandon()  # blocked, or redacted: that answer came from text the model mustn't see
            started = None
        if blocked is not None:
            return self._short(blocked, value)
        return self._answer(checked, run_manager, config, plan, started)

    def _answer(
        self,
        value: Any,
        run_manager: CallbackManagerForChainRun | None,
        config: RunnableConfig,
        plan: Plan | None,
        started: tuple[Speculation[Any], _ContextCollector | None] | None = None,
    ) -> Any:
        """Call the chain on the checked input and check its output (re-asking it, with a plan)."""
        runnable, call_value = self.bound, value
        attempts = self._attempts(plan)
        while True:
            if started is not None:
                output, collector = started[0].result(), started[1]
                started = None
            else:
                inner_config, collector = self._inner_config(run_manager, config)
                output = runnable.invoke(call_value, inner_config)
            if self.output_guard is None:
                return output
            guard_config = self._guard_config(run_manager, config)
            check = partial(
                self.output_guard.run_check,
                output,
                guard_config,
                **self._output_options(value, collector),
            )
            if attempts is None:
                return check()[0]
            checked, responses, error = _caught(check)
            after = attempts.judge(value, output, responses)
            report_attempt(attempts.last, guard_config)
            if after is None:
                if error is not None:
                    raise error
                return attempts.into(checked)
            runnable, call_value = after

    async def _ainvoke(
        self, value: Any, run_manager: AsyncCallbackManagerForChainRun | None, config: RunnableConfig
    ) -> Any:
        plan = self._plan(value)
        if self.input_guard is None:
            return await self._aanswer(value, run_manager, config, plan)
        started: tuple[asyncio.Task[Any], _ContextCollector | None] | None = None
        if self.parallel_input:
            inner_config, collector = self._inner_config(run_manager, config)
            started = await start(self.bound.ainvoke(value, inner_config)), collector
        try:
            checked, responses = await self.input_guard.arun_check(
                value, self._guard_config(run_manager, config)
            )
        except BaseException:
            if started is not None:
                await cancel(started[0])
            raise
        blocked = self._blocked(responses)
        if started is not None and (blocked is not None or checked is not value):
            await cancel(started[0])
            started = None
        if blocked is not None:
            return self._short(blocked, value)
        return await self._aanswer(checked, run_manager, config, plan, started)

    async def _aanswer(
        self,
        value: Any,
        run_manager: AsyncCallbackManagerForChainRun | None,
        config: RunnableConfig,
        plan: Plan | None,
        started: tuple[asyncio.Task[Any], _ContextCollector | None] | None = None,
    ) -> Any:
        runnable, call_value = self.bound, value
        attempts = self._attempts(plan)
        while True:
            if started is not None:
                output, collector = await started[0], started[1]
                started = None
            else:
                inner_config, collector = self._inner_config(run_manager, config)
                output = await runnable.ainvoke(call_value, inner_config)
            if self.output_guard is None:
                return output
            guard_config = self._guard_config(run_manager, config)
            check = partial(
                self.output_guard.arun_check,
                output,
                guard_config,
                **self._output_options(value, collector),
            )
            if attempts is None:
                return (await check())[0]
            checked, responses, error = await _acaught(check)
            after = attempts.judge(value, output, responses)
            await areport_attempt(attempts.last, guard_config)
            if after is None:
                if error is not None:
                    raise error
                return attempts.into(checked)
            runnable, call_value = after

    def _attempts(self, plan: Plan | None) -> Attempts | None:
        if plan is None or self.output_guard is None:
            return None
        return Attempts(plan, self.output_guard.checker.stage.label, self.output_guard.keys)

    # -- streams: the input is buffered and checked; the output is guarded as the output guard streams

    def _transform(
        self, chunks: Iterator[Any], run_manager: CallbackManagerForChainRun | None, config: RunnableConfig
    ) -> Iterator[Any]:
        held = list(chunks)
        if not held:
            return
        value = join(held)
        plan = self._plan(value)
        started: tuple[StreamSpeculation, _ContextCollector | None] | None = None
        if self.input_guard is not None:
            if self.parallel_input:  # read the chain's stream ahead; nothing leaves before the check
                inner_config, collector = self._inner_config(run_manager, config)
                opened = partial(self.bound.transform, iter([value]), inner_config)
                started = StreamSpeculation(opened), collector
            try:
                checked, responses = self.input_guard.run_check(
                    value, self._guard_config(run_manager, config)
                )
            except BaseException:
                if started is not None:
                    started[0].abandon()
                raise
            blocked = self._blocked(responses)
            if started is not None and (blocked is not None or checked is not value):
                started[0].abandon()
                started = None
            if blocked is not None:
                yield self._short(blocked, value, stream=True)
                return
            value = checked
        if started is not None:
            upstream, collector = started[0].chunks(), started[1]
        else:
            inner_config, collector = self._inner_config(run_manager, config)
            upstream = self.bound.transform(iter([value]), inner_config)
        if self.output_guard is None:
            yield from upstream
            return
        guard_config = self._guard_config(run_manager, config)
        attempts = self._attempts(plan)
        if attempts is None:
            yield from self.output_guard.stream_checked(
                upstream,
                guard_config,
                **self._output_options(value, collector),
            )
            return
        while True:  # retrying: each attempt is buffered and checked whole before anything is released
            held = list(upstream)
            if not held:
                return
            output = join(held)
            check = partial(
                self.output_guard.run_check,
                output,
                guard_config,
                **self._output_options(value, collector),
            )
            checked, responses, error = _caught(check)
            after = attempts.judge(value, output, responses)
            report_attempt(attempts.last, guard_config)
            if after is None:
                if error is not None:
                    raise error
                yield from _released(held, output, checked, attempts)
                return
            runnable, call_value = after
            inner_config, collector = self._inner_config(run_manager, config)
            upstream = runnable.transform(iter([call_value]), inner_config)

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
        plan = self._plan(value)
        started: tuple[AsyncStreamSpeculation, _ContextCollector | None] | None = None
        if self.input_guard is not None:
            if self.parallel_input:
                inner_config, collector = self._inner_config(run_manager, config)
                reading = AsyncStreamSpeculation(self.bound.atransform(_single(value), inner_config))
                started = await reading.start(), collector
            try:
                checked, responses = await self.input_guard.arun_check(
                    value, self._guard_config(run_manager, config)
                )
            except BaseException:
                if started is not None:
                    await started[0].abandon()
                raise
            blocked = self._blocked(responses)
            if started is not None and (blocked is not None or checked is not value):
                await started[0].abandon()
                started = None
            if blocked is not None:
                yield self._short(blocked, value, stream=True)
                return
            value = checked
        if started is not None:
            upstream, collector = started[0].chunks(), started[1]
        else:
            inner_config, collector = self._inner_config(run_manager, config)
            upstream = self.bound.atransform(_single(value), inner_config)
        if self.output_guard is None:
            async for chunk in upstream:
                yield chunk
            return
        guard_config = self._guard_config(run_manager, config)
        attempts = self._attempts(plan)
        if attempts is None:
            async for chunk in self.output_guard.astream_checked(
                upstream,
                guard_config,
                **self._output_options(value, collector),
            ):
                yield chunk
            return
        while True:
            held = [chunk async for chunk in upstream]
            if not held:
                return
            output = join(held)
            check = partial(
                self.output_guard.arun_check,
                output,
                guard_config,
                **self._output_options(value, collector),
            )
            checked, responses, error = await _acaught(check)
            after = attempts.judge(value, output, responses)
            await areport_attempt(attempts.last, guard_config)
            if after is None:
                if error is not None:
                    raise error
                for chunk in _released(held, output, checked, attempts):
                    yield chunk
                return
            runnable, call_value = after
            inner_config, collector = self._inner_config(run_manager, config)
            upstream = runnable.atransform(_single(call_value), inner_config)


Checked = tuple[Any, list[Response], GuardrailTriggered | None]


def _caught(check: Callable[[], tuple[Any, list[Response]]]) -> Checked:
    """An output check whose raising decision (``on_trigger="raise"``) is kept for after the retries."""
    try:
        checked, responses = check()
    except GuardrailTriggered as exc:
        return None, [exc.response], exc
    return checked, responses, None


async def _acaught(check: Callable[[], Awaitable[tuple[Any, list[Response]]]]) -> Checked:
    try:
        checked, responses = await check()
    except GuardrailTriggered as exc:
        return None, [exc.response], exc
    return checked, responses, None


def _released(held: list[Any], output: Any, checked: Any, attempts: Attempts) -> Iterator[Any]:
    """A retried stream's final answer: its own chunks when unchanged (the attempts on the last), else
    the checked value as one chunk."""
    if checked is output:
        yield from held[:-1]
        yield attempts.into(held[-1])
    else:
        yield attempts.into(checked)


async def _single(value: Any) -> AsyncIterator[Any]:
    yield value


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
    parallel_input: bool = False,
    retry: Retry | None = None,
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

    ``parallel_input=True`` starts the chain while the input stage runs; its result is used only when
    the input passed unchanged (see ``_parallel``). ``retry=Retry(...)`` re-asks the chain with feedback
    when the output stage rejects its answer (see :class:`Retry`).
    """
    if input_stage is None and output_stage is None:
        raise ValueError("protect() needs an input_stage, an output_stage or both")
    if parallel_input and input_stage is None:
        raise ValueError(
            "parallel_input=True needs an input_stage (it runs the input check beside the chain)"
        )
    if retry is not None:
        if not isinstance(retry, Retry):
            raise TypeError(f"retry must be a Retry(...), got {type(retry).__name__}")
        if output_stage is None:
            raise ValueError(
                "retry needs an output_stage (it re-asks when the output check rejects an answer)"
            )
        if streaming == "window":
            raise ValueError(
                'retry needs streaming="buffer": a windowed stream releases text before the answer is judged'
            )
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
        parallel_input=parallel_input,
        retry=retry,
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

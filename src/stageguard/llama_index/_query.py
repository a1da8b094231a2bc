"""``GuardedQueryEngine``: checks the query before the inner engine runs and the answer before it leaves."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from functools import partial
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    PydanticResponse,
    StreamingResponse,
)
from llama_index.core.base.response.schema import Response as LIResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle

from ..checkpoints import Turn, input_payload, output_payload
from ..payload import Payload
from ..protect import Protect
from ..response import Response
from ..stage_ref import RulesetsLike, StageLike
from ..status import FailPolicy
from ._convert import context_of, without_nodes
from ._guard import DECISIONS_KEY, Guard, changed, is_override
from ._parallel import AsyncReadAhead, Speculation, cancel, start
from ._retry import Attempts, Retry, check_retry
from ._window import StreamMode, TextWindow, afollow, follow, stream_mode


def _one(text: str) -> Generator[str, None, None]:
    yield text


async def _aone(text: str) -> AsyncGenerator[str, None]:
    yield text


def _metadata(metadata: dict[str, Any] | None, decisions: dict[str, Response]) -> dict[str, Any]:
    return {**(metadata or {}), DECISIONS_KEY: dict(decisions)}


class GuardedQueryEngine(BaseQueryEngine):
    """A query engine whose query (``input`` hook) and answer (``output`` hook) pass a stage.

    An input override answers with the override without running the inner engine; a redaction runs it on
    the redacted query. The answer is checked with the source nodes as ``context`` (for
    ``context_adherence``/``completeness``). Streaming answers are buffered: the stream handed back
    yields only checked text, unless ``streaming="window"`` (checked text released while it arrives,
    see ``docs/llama_index.md`` for what that mode can leak). An overridden answer comes back without
    source nodes (nor their entries in ``metadata``); a redacted one keeps them. Decisions are in
    ``response.metadata["stageguard"]`` (hook name to :class:`stageguard.Response`).

    ``parallel_input=True`` starts the inner engine while the query is checked (its answer is used only
    if the check changed nothing); ``retry=`` re-asks with feedback when the answer is rejected
    (:class:`~stageguard.llama_index.Retry`).
    """

    def __init__(
        self,
        engine: BaseQueryEngine,
        stage: StageLike | None = None,
        *,
        input_stage: StageLike | None = None,
        output_stage: StageLike | None = None,
        prioritized_rulesets: RulesetsLike | None = None,
        stage_version: int | None = None,
        project_name: str | None = None,
        project_id: str | None = None,
        protect: Protect | None = None,
        timeout: float = 300.0,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
        metadata: dict[str, Any] | None = None,
        streaming: bool | StreamMode | None = None,
        window: int = 200,
        check_every: int | None = None,
        parallel_input: bool = False,
        retry: Retry | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        self._engine = engine
        self._guard = Guard.build(
            "query_engine",
            ("input", "output"),
            stage,
            {"input": input_stage, "output": output_stage},
            prioritized_rulesets=prioritized_rulesets,
            stage_version=stage_version,
            project_name=project_name,
            project_id=project_id,
            protect=protect,
            timeout=timeout,
            fail_policy=fail_policy,
            shadow=shadow,
            metadata=metadata,
        )
        # streaming: True/False/None says whether callers expect a stream; "buffer"/"window" also pick
        # the mode (and mean a stream is expected), as LangChain's ``Guard(streaming=...)``.
        if isinstance(streaming, str):
            self.stream_mode: StreamMode = stream_mode(streaming)
            self._streaming: bool | None = True
        else:
            self.stream_mode, self._streaming = "buffer", streaming
        self.window = window
        self.check_every = check_every
        self.parallel_input = parallel_input
        self.retry = check_retry(retry, has_output=self._guard.has("output"), stream_mode=self.stream_mode)
        if parallel_input and not self._guard.has("input"):
            raise ValueError(
                "parallel_input=True needs an input stage (it runs the input check beside the engine)"
            )
        super().__init__(callback_manager or getattr(engine, "callback_manager", None))

    @property
    def engine(self) -> BaseQueryEngine:
        return self._engine

    @property
    def guard(self) -> Guard:
        return self._guard

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"inner": self._engine}

    def _with_context(self) -> bool:
        """Whether the output stage reads the retrieved context (else no node text is gathered)."""
        return "context" in self._guard.fields_read("output")

    @property
    def streaming(self) -> bool:
        """Whether callers expect a stream (then a short-circuit answers with one too)."""
        if self._streaming is not None:
            return self._streaming
        synthesizer = getattr(self._engine, "_response_synthesizer", None)
        return bool(getattr(synthesizer, "_streaming", False))

    # -- sync

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        decisions: dict[str, Response] = {}
        started = None
        if self.parallel_input:  # the inner engine starts on the unchecked query
            started = Speculation(partial(self._engine.query, query_bundle), stream_of=_sync_tokens)
        try:
            decision = self._guard.check("input", input_payload(query_bundle.query_str))
        except BaseException:
            if started is not None:
                started.abandon()
            raise
        if decision is not None:
            decisions["input"] = decision
        if changed(decision):
            if started is not None:  # computed from text the stage rejected: drop it
                started.abandon()
                started = None
            if is_override(decision):
                return self._answer(decision.text, [], None, decisions, "sync" if self.streaming else None)
            query_bundle = _redacted(query_bundle, decision.text)
        if started is not None:
            result = started.result()
            if isinstance(result, StreamingResponse):
                result.response_gen = started.tokens()  # read ahead while the query was checked
        else:
            result = self._engine.query(query_bundle)
        if self._unchecked(result, decisions):
            return result
        if isinstance(result, StreamingResponse) and self._windowed():
            return self._window(query_bundle, result, decisions)
        attempts, shape = Attempts(self.retry), _shape(result)  # the caller expects the first answer's shape
        while True:
            answer = _settle(result)
            text = answer.response or ""
            details = attempts.details()
            payload = _answer_payload(query_bundle, text, answer, with_context=self._with_context())
            decision = self._guard.check("output", payload, **details)
            again = attempts.record(decision, query_bundle.query_str, text)
            if again is None:
                return self._finish(answer, text, decision, decisions, shape, attempts)
            result = self._engine.query(_with_feedback(query_bundle, again))

    # -- async

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        decisions: dict[str, Response] = {}
        started = None
        if self.parallel_input:
            started = await start(self._astarted(query_bundle))
        try:
            decision = await self._guard.acheck("input", input_payload(query_bundle.query_str))
        except BaseException:
            if started is not None:
                await _adrop(started)
            raise
        if decision is not None:
            decisions["input"] = decision
        if changed(decision):
            if started is not None:
                await _adrop(started)
                started = None
            if is_override(decision):
                return self._answer(decision.text, [], None, decisions, "async" if self.streaming else None)
            query_bundle = _redacted(query_bundle, decision.text)
        if started is not None:
            result, _ = await started
        else:
            result = await self._engine.aquery(query_bundle)
        if self._unchecked(result, decisions):
            return result
        if self._windowed():
            if isinstance(result, AsyncStreamingResponse):
                return self._awindow(query_bundle, result, decisions)
            if isinstance(result, StreamingResponse):
                return self._window(query_bundle, result, decisions)
        attempts, shape = Attempts(self.retry), _shape(result)
        while True:
            answer = await _asettle(result)
            text = answer.response or ""
            details = attempts.details()
            payload = _answer_payload(query_bundle, text, answer, with_context=self._with_context())
            decision = await self._guard.acheck("output", payload, **details)
            again = attempts.record(decision, query_bundle.query_str, text)
            if again is None:
                return self._finish(answer, text, decision, decisions, shape, attempts)
            result = await self._engine.aquery(_with_feedback(query_bundle, again))

    async def _astarted(self, query_bundle: QueryBundle) -> tuple[RESPONSE_TYPE, AsyncReadAhead | None]:
        """The speculative call: the inner query, with a streamed answer already being read."""
        result = await self._engine.aquery(query_bundle)
        if not isinstance(result, AsyncStreamingResponse):
            return result, None
        ahead = AsyncReadAhead(result.response_gen)
        result.response_gen = ahead.tokens()
        return result, ahead

    def _unchecked(self, result: RESPONSE_TYPE, decisions: dict[str, Response]) -> bool:
        """A stream with no output stage to pass is handed on as it comes (with the input decision):
        buffering it would only add latency."""
        if self._guard.has("output") or not isinstance(result, (StreamingResponse, AsyncStreamingResponse)):
            return False
        result.metadata = _metadata(result.metadata, decisions)
        return True

    # -- windowed streams

    def _windowed(self) -> bool:
        return self.stream_mode == "window" and self._guard.has("output")

    def _window_parts(
        self,
        query_bundle: QueryBundle,
        result: StreamingResponse | AsyncStreamingResponse,
        decisions: dict[str, Response],
    ) -> tuple[
        TextWindow, Callable[[str], Payload | None], Callable[[Response | None], None], dict[str, Any]
    ]:
        """The window, the payload of the text so far, what a decision does to the reply, its metadata."""
        window = TextWindow(self.window, self.check_every)
        turn = Turn(context=context_of(result.source_nodes) or ()) if self._with_context() else Turn()
        sources = list(result.source_nodes)
        metadata = {**(result.metadata or {}), DECISIONS_KEY: decisions}  # decisions fill in as it streams

        def payload(text: str) -> Payload | None:
            return output_payload(text, turn, request=query_bundle.query_str)

        def decided(decision: Response | None) -> None:
            if decision is None:
                return
            decisions["output"] = decision
            if is_override(decision):  # before the override goes out: it does not rest on the sources
                result.source_nodes = []
                result.metadata = {**(without_nodes(metadata, sources) or {}), DECISIONS_KEY: decisions}

        return window, payload, decided, metadata

    def _window(
        self, query_bundle: QueryBundle, inner: StreamingResponse, decisions: dict[str, Response]
    ) -> StreamingResponse:
        out = StreamingResponse(response_gen=_one(""), source_nodes=list(inner.source_nodes))
        window, payload, decided, out.metadata = self._window_parts(query_bundle, out, decisions)

        def check(text: str) -> Response | None:
            decision = self._guard.check(
                "output", payload(text), streaming="window", released=window.released
            )
            decided(decision)
            return decision

        out.response_gen = follow(window, inner.response_gen, check)
        return out

    def _awindow(
        self, query_bundle: QueryBundle, inner: AsyncStreamingResponse, decisions: dict[str, Response]
    ) -> AsyncStreamingResponse:
        out = AsyncStreamingResponse(response_gen=_aone(""), source_nodes=list(inner.source_nodes))
        window, payload, decided, out.metadata = self._window_parts(query_bundle, out, decisions)

        async def check(text: str) -> Response | None:
            decision = await self._guard.acheck(
                "output", payload(text), streaming="window", released=window.released
            )
            decided(decision)
            return decision

        out.response_gen = afollow(window, inner.response_gen, check)
        return out

    # -- shared

    def _finish(
        self,
        result: LIResponse,
        text: str,
        decision: Response | None,
        decisions: dict[str, Response],
        stream: str | None,
        attempts: Attempts,
    ) -> RESPONSE_TYPE:
        nodes, metadata = result.source_nodes, attempts.into(result.metadata)
        if decision is not None:
            decisions["output"] = decision
        if changed(decision):
            text = decision.text
            if is_override(decision):  # the canned answer does not rest on the sources
                nodes, metadata = [], without_nodes(metadata, nodes)
        elif stream is None:
            # The inner engine's answer passes as it is (instrumentation sees one answer, not two).
            result.metadata = _metadata(metadata, decisions)
            return result
        return self._answer(text, nodes, metadata, decisions, stream)

    def _answer(
        self,
        text: str,
        nodes: list[NodeWithScore],
        metadata: dict[str, Any] | None,
        decisions: dict[str, Response],
        stream: str | None,
    ) -> RESPONSE_TYPE:
        """The answer in the shape the caller expects (a stream if the inner engine streams)."""
        meta = _metadata(metadata, decisions)
        if stream == "async":
            return AsyncStreamingResponse(response_gen=_aone(text), source_nodes=nodes, metadata=meta)
        if stream == "sync":
            return StreamingResponse(response_gen=_one(text), source_nodes=nodes, metadata=meta)
        return LIResponse(text, source_nodes=nodes, metadata=meta)


def _sync_tokens(result: RESPONSE_TYPE) -> Iterator[str] | None:
    return result.response_gen if isinstance(result, StreamingResponse) else None


async def _adrop(started: asyncio.Task[tuple[RESPONSE_TYPE, AsyncReadAhead | None]]) -> None:
    """Drop a speculative query: cancel it, or stop reading the stream it already returned."""
    if not started.done():
        await cancel(started)
        return
    if not started.cancelled() and started.exception() is None:
        _, ahead = started.result()
        if ahead is not None:
            await ahead.abandon()


def _shape(result: RESPONSE_TYPE) -> str | None:
    """``"sync"``/``"async"`` for a stream, ``None`` for a whole answer."""
    if isinstance(result, StreamingResponse):
        return "sync"
    return "async" if isinstance(result, AsyncStreamingResponse) else None


def _settle(result: RESPONSE_TYPE) -> LIResponse:
    """The whole answer (a stream read to its end)."""
    if isinstance(result, (StreamingResponse, PydanticResponse)):
        return result.get_response()
    if isinstance(result, AsyncStreamingResponse):
        from llama_index.core.async_utils import asyncio_run

        answer: LIResponse = asyncio_run(result.get_response())
        return answer
    return result


async def _asettle(result: RESPONSE_TYPE) -> LIResponse:
    if isinstance(result, AsyncStreamingResponse):
        return await result.get_response()
    return _settle(result)


def _with_feedback(query_bundle: QueryBundle, text: str) -> QueryBundle:
    """The query of the next attempt: ``text`` (with the feedback) for the model, retrieval on the
    original query."""
    return dataclasses.replace(
        query_bundle,
        query_str=text,
        custom_embedding_strs=query_bundle.embedding_strs,
    )


def _answer_payload(
    query_bundle: QueryBundle, text: str, result: LIResponse, *, with_context: bool
) -> Payload | None:
    """The answer, with the query as the request and (``with_context``) the source nodes as context."""
    turn = Turn(context=context_of(result.source_nodes) or ()) if with_context else Turn()
    return output_payload(text, turn, request=query_bundle.query_str)


def _redacted(query_bundle: QueryBundle, text: str) -> QueryBundle:
    """The bundle with a redacted query; embeddings of the original text are dropped."""
    return dataclasses.replace(query_bundle, query_str=text, custom_embedding_strs=None, embedding=None)

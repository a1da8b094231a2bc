"""``GuardedQueryEngine``: checks the query before the inner engine runs and the answer before it leaves."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Generator
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
    yields only checked text. An overridden answer comes back without source nodes (nor their entries in
    ``metadata``); a redacted one keeps them. Decisions are in
    ``response.metadata["stageguard"]`` (hook name to :class:`stageguard.Response`).
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
        streaming: bool | None = None,
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
        self._streaming = streaming
        super().__init__(callback_manager or getattr(engine, "callback_manager", None))

    @property
    def engine(self) -> BaseQueryEngine:
        return self._engine

    @property
    def guard(self) -> Guard:
        return self._guard

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"inner": self._engine}

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
        decision = self._guard.check("input", input_payload(query_bundle.query_str))
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                return self._answer(decision.text, [], None, decisions, "sync" if self.streaming else None)
            if changed(decision):
                query_bundle = _redacted(query_bundle, decision.text)
        result = self._engine.query(query_bundle)
        stream = "sync" if isinstance(result, StreamingResponse) else None
        if isinstance(result, (StreamingResponse, PydanticResponse)):
            result = result.get_response()
        elif isinstance(result, AsyncStreamingResponse):
            from llama_index.core.async_utils import asyncio_run

            result = asyncio_run(result.get_response())
            stream = "async"
        text = result.response or ""
        decision = self._guard.check("output", _answer_payload(query_bundle, text, result))
        return self._finish(result, text, decision, decisions, stream)

    # -- async

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        decisions: dict[str, Response] = {}
        decision = await self._guard.acheck("input", input_payload(query_bundle.query_str))
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                return self._answer(decision.text, [], None, decisions, "async" if self.streaming else None)
            if changed(decision):
                query_bundle = _redacted(query_bundle, decision.text)
        result = await self._engine.aquery(query_bundle)
        stream = "async" if isinstance(result, AsyncStreamingResponse) else None
        if isinstance(result, AsyncStreamingResponse):
            result = await result.get_response()
        elif isinstance(result, (StreamingResponse, PydanticResponse)):
            stream = "sync" if isinstance(result, StreamingResponse) else None
            result = result.get_response()
        text = result.response or ""
        decision = await self._guard.acheck("output", _answer_payload(query_bundle, text, result))
        return self._finish(result, text, decision, decisions, stream)

    # -- shared

    def _finish(
        self,
        result: LIResponse,
        text: str,
        decision: Response | None,
        decisions: dict[str, Response],
        stream: str | None,
    ) -> RESPONSE_TYPE:
        nodes, metadata = result.source_nodes, result.metadata
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


def _answer_payload(query_bundle: QueryBundle, text: str, result: LIResponse) -> Payload | None:
    """The answer, with the query as the request and the source nodes as context."""
    turn = Turn(context=context_of(result.source_nodes) or ())
    return output_payload(text, turn, request=query_bundle.query_str)


def _redacted(query_bundle: QueryBundle, text: str) -> QueryBundle:
    """The bundle with a redacted query; embeddings of the original text are dropped."""
    return dataclasses.replace(query_bundle, query_str=text, custom_embedding_strs=None, embedding=None)

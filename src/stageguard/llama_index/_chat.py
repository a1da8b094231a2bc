"""``GuardedChatEngine``: a chat engine whose messages and answers pass a stage, memory kept consistent."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, Generator
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse
from llama_index.core.chat_engine.types import (
    AGENT_CHAT_RESPONSE_TYPE,
    AgentChatResponse,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.memory import BaseMemory
from llama_index.core.schema import NodeWithScore
from llama_index.core.tools import ToolOutput

from ..checkpoints import Turn, input_payload, output_payload
from ..payload import Payload
from ..protect import Protect
from ..response import Response
from ..stage_ref import RulesetsLike, StageLike
from ..status import FailPolicy
from . import _memory
from ._convert import assistant, context_of, to_messages, without_nodes
from ._guard import DECISIONS_KEY, Guard, changed, is_override

logger = logging.getLogger("stageguard.llama_index")


def _chat_stream(message: ChatMessage) -> Generator[ChatResponse, None, None]:
    yield ChatResponse(message=message, delta=message.content or "")


async def _achat_stream(message: ChatMessage) -> AsyncGenerator[ChatResponse, None]:
    yield ChatResponse(message=message, delta=message.content or "")


def checked_stream(
    text: str,
    *,
    sources: list[ToolOutput] | None = None,
    source_nodes: list[NodeWithScore] | None = None,
) -> StreamingAgentChatResponse:
    """A stream of already-checked text, readable with ``response_gen`` or ``async_response_gen()``.

    Built on ``chat_stream``/``achat_stream`` with ``is_writing_to_memory=False``: built with only
    ``response=`` it hangs when read.
    """
    message = assistant(text)
    return StreamingAgentChatResponse(
        response=text,
        chat_stream=_chat_stream(message),
        achat_stream=_achat_stream(message),
        sources=sources or [],
        source_nodes=source_nodes or [],
        is_writing_to_memory=False,
    )


def _attach(result: AGENT_CHAT_RESPONSE_TYPE, decisions: dict[str, Response]) -> AGENT_CHAT_RESPONSE_TYPE:
    if isinstance(result, AgentChatResponse):
        result.metadata = {**(result.metadata or {}), DECISIONS_KEY: dict(decisions)}
    else:  # StreamingAgentChatResponse has no metadata field
        result.stageguard_decisions = dict(decisions)  # type: ignore[attr-defined]
    return result


class GuardedChatEngine(BaseChatEngine):
    """A chat engine whose user message (``input`` hook) and answer (``output`` hook) pass a stage.

    An input override answers without running the inner engine; by default the blocked turn is not
    written to memory (``remember_blocked_input=True`` records the message and the override). An output
    override or redaction replaces the answer in the inner engine's memory too, so the next turn never
    sees the blocked text. Streams are buffered and checked before any text is handed back. The memory
    is the inner engine's ``_memory`` unless ``memory=`` is given.
    """

    def __init__(
        self,
        engine: BaseChatEngine,
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
        memory: BaseMemory | None = None,
        remember_blocked_input: bool = False,
        include_history: bool = False,
    ) -> None:
        self._engine = engine
        self._guard = Guard.build(
            "chat_engine",
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
        found = memory if memory is not None else getattr(engine, "_memory", None)
        self._memory = found if isinstance(found, BaseMemory) else None
        self.remember_blocked_input = remember_blocked_input
        self.include_history = include_history

    @property
    def engine(self) -> BaseChatEngine:
        return self._engine

    @property
    def guard(self) -> Guard:
        return self._guard

    def reset(self) -> None:
        self._engine.reset()

    @property
    def chat_history(self) -> list[ChatMessage]:
        return self._engine.chat_history

    # -- payloads

    def _input_payload(self, message: str, chat_history: list[ChatMessage] | None) -> Payload | None:
        history = chat_history
        if history is None and self.include_history:
            history = self._engine.chat_history
        return input_payload(message, Turn(messages=to_messages(history) or ()))

    @staticmethod
    def _output_payload(message: str, text: str, nodes: list[NodeWithScore]) -> Payload | None:
        return output_payload(text, Turn(context=context_of(nodes) or ()), request=message)

    # -- memory

    def _blocked_turn(self, message: str, text: str) -> list[ChatMessage]:
        """What memory records of a blocked turn: nothing, unless asked to remember it."""
        if not self.remember_blocked_input:
            return []
        return [ChatMessage(role="user", content=message), assistant(text)]

    def _memory_or_warn(self) -> BaseMemory | None:
        if self._memory is None:
            logger.warning(
                "GuardedChatEngine: %s has no _memory; pass memory= so a blocked answer is not kept",
                type(self._engine).__name__,
            )
        return self._memory

    def _blocked_sync(self, message: str, text: str, chat_history: list[ChatMessage] | None) -> None:
        memory = self._memory_or_warn()
        if memory is None:
            return
        if chat_history is not None:
            memory.set(chat_history)
        if turn := self._blocked_turn(message, text):
            memory.put_messages(turn)

    async def _blocked_async(self, message: str, text: str, chat_history: list[ChatMessage] | None) -> None:
        memory = self._memory_or_warn()
        if memory is None:
            return
        if chat_history is not None:
            await memory.aset(chat_history)
        if turn := self._blocked_turn(message, text):
            await memory.aput_messages(turn)

    def _fix_sync(self, decision: Response | None) -> None:
        if changed(decision) and (memory := self._memory_or_warn()) is not None:
            _memory.rewrite(memory, _memory.replace_last_answer(decision.text))

    async def _fix_async(self, decision: Response | None) -> None:
        if changed(decision) and (memory := self._memory_or_warn()) is not None:
            await _memory.arewrite(memory, _memory.replace_last_answer(decision.text))

    # -- results

    @staticmethod
    def _result(
        result: AgentChatResponse, decision: Response | None, decisions: dict[str, Response]
    ) -> AgentChatResponse:
        if decision is not None:
            decisions["output"] = decision
        if changed(decision):
            if is_override(decision):
                result = dataclasses.replace(
                    result,
                    response=decision.text,
                    sources=[],
                    source_nodes=[],
                    metadata=without_nodes(result.metadata, result.source_nodes),
                )
            else:
                result = dataclasses.replace(result, response=decision.text)
        _attach(result, decisions)
        return result

    @staticmethod
    def _stream_result(
        result: StreamingAgentChatResponse,
        text: str,
        decision: Response | None,
        decisions: dict[str, Response],
    ) -> StreamingAgentChatResponse:
        sources, nodes = result.sources, result.source_nodes
        if decision is not None:
            decisions["output"] = decision
            if changed(decision):
                text = decision.text
                if is_override(decision):
                    sources, nodes = [], []
        stream = checked_stream(text, sources=sources, source_nodes=nodes)
        _attach(stream, decisions)
        return stream

    # -- sync

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        decisions: dict[str, Response] = {}
        decision = self._guard.check("input", self._input_payload(message, chat_history))
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                self._blocked_sync(message, decision.text, chat_history)
                return self._result(AgentChatResponse(response=decision.text), None, decisions)
            if changed(decision):
                message = decision.text
        result = self._engine.chat(message, chat_history)
        if isinstance(result, StreamingAgentChatResponse):  # some engines stream even here
            result = AgentChatResponse(
                response="".join(result.response_gen),
                sources=result.sources,
                source_nodes=result.source_nodes,
            )
        decision = self._guard.check(
            "output", self._output_payload(message, result.response, result.source_nodes)
        )
        self._fix_sync(decision)
        return self._result(result, decision, decisions)

    def stream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        decisions: dict[str, Response] = {}
        decision = self._guard.check("input", self._input_payload(message, chat_history))
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                self._blocked_sync(message, decision.text, chat_history)
                stream = checked_stream(decision.text)
                _attach(stream, decisions)
                return stream
            if changed(decision):
                message = decision.text
        result = self._engine.stream_chat(message, chat_history)
        text = "".join(result.response_gen)  # drains the stream and waits for the memory writer
        decision = self._guard.check("output", self._output_payload(message, text, result.source_nodes))
        self._fix_sync(decision)
        return self._stream_result(result, text, decision, decisions)

    # -- async

    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        decisions: dict[str, Response] = {}
        decision = await self._guard.acheck("input", self._input_payload(message, chat_history))
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                await self._blocked_async(message, decision.text, chat_history)
                return self._result(AgentChatResponse(response=decision.text), None, decisions)
            if changed(decision):
                message = decision.text
        result = await self._engine.achat(message, chat_history)
        if isinstance(result, StreamingAgentChatResponse):
            text = "".join([d async for d in result.async_response_gen()])
            result = AgentChatResponse(
                response=text, sources=result.sources, source_nodes=result.source_nodes
            )
        decision = await self._guard.acheck(
            "output", self._output_payload(message, result.response, result.source_nodes)
        )
        await self._fix_async(decision)
        return self._result(result, decision, decisions)

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        decisions: dict[str, Response] = {}
        decision = await self._guard.acheck("input", self._input_payload(message, chat_history))
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                await self._blocked_async(message, decision.text, chat_history)
                stream = checked_stream(decision.text)
                _attach(stream, decisions)
                return stream
            if changed(decision):
                message = decision.text
        result = await self._engine.astream_chat(message, chat_history)
        text = "".join([d async for d in result.async_response_gen()])
        decision = await self._guard.acheck(
            "output", self._output_payload(message, text, result.source_nodes)
        )
        await self._fix_async(decision)
        return self._stream_result(result, text, decision, decisions)

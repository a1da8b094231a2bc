"""``GuardedChatEngine``: a chat engine whose messages and answers pass a stage, memory kept consistent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any, TypeVar

from llama_index.core.async_utils import asyncio_run
from llama_index.core.base.llms.types import ChatMessage, ChatResponse
from llama_index.core.chat_engine.types import (
    AGENT_CHAT_RESPONSE_TYPE,
    AgentChatResponse,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.memory import BaseMemory, Memory
from llama_index.core.schema import NodeWithScore
from llama_index.core.storage.chat_store.base_db import MessageStatus
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
from ._parallel import Speculation, cancel, start
from ._retry import Attempts, Retry, check_retry
from ._window import StreamMode, TextWindow, afollow, follow, stream_mode

logger = logging.getLogger("stageguard.llama_index")
T = TypeVar("T")


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
    sees the blocked text. Streams are buffered and checked before any text is handed back, unless
    ``streaming="window"`` (checked text released while it arrives). The memory is the inner engine's
    ``_memory`` unless ``memory=`` is given. ``parallel_input=True`` starts the inner engine while the
    message is checked; ``retry=`` re-asks with feedback when the answer is rejected.
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
        streaming: StreamMode = "buffer",
        window: int = 200,
        check_every: int | None = None,
        parallel_input: bool = False,
        retry: Retry | None = None,
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
        self.stream_mode = stream_mode(streaming)
        self.window = window
        self.check_every = check_every
        self.parallel_input = parallel_input
        self.retry = check_retry(retry, has_output=self._guard.has("output"), stream_mode=self.stream_mode)
        if parallel_input and not self._guard.has("input"):
            raise ValueError(
                "parallel_input=True needs an input stage (it runs the input check beside the engine)"
            )

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
        if "messages" not in self._guard.fields_read("input"):
            return input_payload(message)
        history = chat_history
        if history is None and self.include_history:
            history = self._engine.chat_history
        return input_payload(message, Turn(messages=to_messages(history) or ()))

    def _output_payload(self, message: str, text: str, nodes: list[NodeWithScore]) -> Payload | None:
        turn = (
            Turn(context=context_of(nodes) or ())
            if "context" in self._guard.fields_read("output")
            else Turn()
        )
        return output_payload(text, turn, request=message)

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

    def _answer_sync(self, text: str) -> None:
        if (memory := self._memory_or_warn()) is not None:
            _memory.rewrite(memory, _memory.replace_last_answer(text))

    async def _answer_async(self, text: str) -> None:
        if (memory := self._memory_or_warn()) is not None:
            await _memory.arewrite(memory, _memory.replace_last_answer(text))

    def _retry_edit(self, message: str, asked: str | None) -> _memory.Edit:
        """Before a retry (``asked`` is None): forget the rejected turn. After the last attempt: the user
        message in memory becomes the user's own words (``asked`` had the feedback)."""
        return _memory.drop_from_last_user() if asked is None else _memory.replace_last_user(asked, message)

    def _retried_sync(self, message: str, asked: str | None) -> None:
        if (memory := self._memory_or_warn()) is not None:
            _memory.rewrite(memory, self._retry_edit(message, asked))

    async def _retried_async(self, message: str, asked: str | None) -> None:
        if (memory := self._memory_or_warn()) is not None:
            await _memory.arewrite(memory, self._retry_edit(message, asked))

    def _snapshot_sync(self) -> list[ChatMessage] | None:
        """The memory's messages before a speculative call (restored when the call is dropped)."""
        memory = self._memory_or_warn()
        if memory is None:
            return None
        return asyncio_run(_messages(memory)) if isinstance(memory, Memory) else list(memory.get_all())

    async def _snapshot_async(self) -> list[ChatMessage] | None:
        memory = self._memory_or_warn()
        return await _messages(memory) if memory is not None else None

    def _restore_sync(self, snapshot: list[ChatMessage] | None) -> None:
        if snapshot is not None and self._memory is not None:
            _memory.rewrite(self._memory, lambda _: list(snapshot))

    async def _restore_async(self, snapshot: list[ChatMessage] | None) -> None:
        if snapshot is not None and self._memory is not None:
            await _memory.arewrite(self._memory, lambda _: list(snapshot))

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
        attempts: Attempts,
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
        if attempts.retry is not None:  # no metadata field on a stream: an attribute, as the decisions
            stream.stageguard_attempts = list(attempts.records)  # type: ignore[attr-defined]
        return stream

    # -- sync

    def _start_sync(self, call: Callable[[], T]) -> tuple[Speculation[T] | None, list[ChatMessage] | None]:
        """With ``parallel_input``: ``call`` started in a worker thread, and memory as it was before."""
        if not self.parallel_input:
            return None, None
        snapshot = self._snapshot_sync()
        return Speculation(call), snapshot

    def _drop_sync(self, started: Speculation[Any] | None, snapshot: list[ChatMessage] | None) -> None:
        """Drop a speculative call. A sync call can't be interrupted: wait for it (and for a stream's
        memory writer), then put the memory back as it was, so the dropped turn leaves no trace."""
        if started is None:
            return
        started.abandon(wait=True)
        with contextlib.suppress(Exception):
            result = started.result()
            if isinstance(result, StreamingAgentChatResponse) and result.write_response_to_history_thread:
                result.write_response_to_history_thread.join()
        self._restore_sync(snapshot)

    def _input_sync(
        self, message: str, chat_history: list[ChatMessage] | None, call: Callable[[str], T]
    ) -> tuple[str, Response | None, T | None]:
        """Check the message (the engine call started alongside with ``parallel_input``): the message to
        answer, the input decision, and the speculative call's result when it can be used."""
        started, snapshot = self._start_sync(lambda: call(message))
        try:
            decision = self._guard.check("input", self._input_payload(message, chat_history))
        except BaseException:
            self._drop_sync(started, snapshot)
            raise
        if changed(decision):
            self._drop_sync(started, snapshot)  # computed from text the stage rejected
            return decision.text, decision, None
        return message, decision, started.result() if started is not None else None

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        decisions: dict[str, Response] = {}
        text, decision, result = self._input_sync(
            message, chat_history, lambda m: self._engine.chat(m, chat_history)
        )
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                self._blocked_sync(message, decision.text, chat_history)
                return self._result(AgentChatResponse(response=decision.text), None, decisions)
        message = text
        attempts, asked = Attempts(self.retry), message
        while True:
            if result is None:
                result = self._engine.chat(asked, chat_history)
            if isinstance(result, StreamingAgentChatResponse):  # some engines stream even here
                result = AgentChatResponse(
                    response="".join(result.response_gen),
                    sources=result.sources,
                    source_nodes=result.source_nodes,
                )
            payload = self._output_payload(message, result.response, result.source_nodes)
            decision = self._guard.check("output", payload, **attempts.details())
            again = attempts.record(decision, message, result.response)
            if again is None:
                break
            self._retried_sync(message, None)
            asked, result = again, None
        if asked != message:
            self._retried_sync(message, asked)
        self._fix_sync(decision)
        result.metadata = attempts.into(result.metadata)
        return self._result(result, decision, decisions)

    def stream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        decisions: dict[str, Response] = {}
        call = lambda m: self._engine.stream_chat(m, chat_history)  # noqa: E731
        text, decision, result = self._input_sync(message, chat_history, call)
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                self._blocked_sync(message, decision.text, chat_history)
                stream = checked_stream(decision.text)
                _attach(stream, decisions)
                return stream
        message = text
        if result is None:
            result = self._engine.stream_chat(message, chat_history)
        if not self._guard.has("output"):  # nothing to check: buffering would only add latency
            _attach(result, decisions)
            return result
        if self._windowed():
            return self._window_sync(message, result, decisions)
        attempts, asked = Attempts(self.retry), message
        while True:
            answer = "".join(result.response_gen)  # drains the stream and waits for the memory writer
            payload = self._output_payload(message, answer, result.source_nodes)
            decision = self._guard.check("output", payload, **attempts.details())
            again = attempts.record(decision, message, answer)
            if again is None:
                break
            self._retried_sync(message, None)
            asked = again
            result = self._engine.stream_chat(asked, chat_history)
        if asked != message:
            self._retried_sync(message, asked)
        self._fix_sync(decision)
        return self._stream_result(result, answer, decision, decisions, attempts)

    # -- async

    async def _start_async(
        self, call: Callable[[], Awaitable[T]]
    ) -> tuple[asyncio.Task[T] | None, list[ChatMessage] | None]:
        """With ``parallel_input``: ``call`` started as a task, and memory as it was before."""
        if not self.parallel_input:
            return None, None
        snapshot = await self._snapshot_async()
        return await start(call()), snapshot

    async def _drop_async(
        self, started: asyncio.Task[Any] | None, snapshot: list[ChatMessage] | None
    ) -> None:
        """Drop a speculative call: cancel it (and a stream's memory writer), put the memory back.

        With the SQL-backed ``Memory`` the call is waited for instead: a cancel landing inside one of its
        database operations drops the connection, and with the default in-memory SQLite the history."""
        if started is None:
            return
        stop = _finish if isinstance(self._memory, Memory) else cancel
        await stop(started)
        if not started.cancelled() and started.exception() is None:
            result = started.result()
            if isinstance(result, StreamingAgentChatResponse) and result.awrite_response_to_history_task:
                await stop(result.awrite_response_to_history_task)
        await self._restore_async(snapshot)

    async def _input_async(
        self, message: str, chat_history: list[ChatMessage] | None, call: Callable[[str], Awaitable[T]]
    ) -> tuple[str, Response | None, T | None]:
        started, snapshot = await self._start_async(lambda: call(message))
        try:
            decision = await self._guard.acheck("input", self._input_payload(message, chat_history))
        except BaseException:
            await self._drop_async(started, snapshot)
            raise
        if changed(decision):
            await self._drop_async(started, snapshot)
            return decision.text, decision, None
        return message, decision, (await started) if started is not None else None

    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        decisions: dict[str, Response] = {}
        call = lambda m: self._engine.achat(m, chat_history)  # noqa: E731
        text, decision, result = await self._input_async(message, chat_history, call)
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                await self._blocked_async(message, decision.text, chat_history)
                return self._result(AgentChatResponse(response=decision.text), None, decisions)
        message = text
        attempts, asked = Attempts(self.retry), message
        while True:
            if result is None:
                result = await self._engine.achat(asked, chat_history)
            if isinstance(result, StreamingAgentChatResponse):
                answer = "".join([d async for d in result.async_response_gen()])
                result = AgentChatResponse(
                    response=answer, sources=result.sources, source_nodes=result.source_nodes
                )
            payload = self._output_payload(message, result.response, result.source_nodes)
            decision = await self._guard.acheck("output", payload, **attempts.details())
            again = attempts.record(decision, message, result.response)
            if again is None:
                break
            await self._retried_async(message, None)
            asked, result = again, None
        if asked != message:
            await self._retried_async(message, asked)
        await self._fix_async(decision)
        result.metadata = attempts.into(result.metadata)
        return self._result(result, decision, decisions)

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        decisions: dict[str, Response] = {}
        call = lambda m: self._engine.astream_chat(m, chat_history)  # noqa: E731
        text, decision, result = await self._input_async(message, chat_history, call)
        if decision is not None:
            decisions["input"] = decision
            if is_override(decision):
                await self._blocked_async(message, decision.text, chat_history)
                stream = checked_stream(decision.text)
                _attach(stream, decisions)
                return stream
        message = text
        if result is None:
            result = await self._engine.astream_chat(message, chat_history)
        if not self._guard.has("output"):
            _attach(result, decisions)
            return result
        if self._windowed():
            return self._window_async(message, result, decisions)
        attempts, asked = Attempts(self.retry), message
        while True:
            answer = "".join([d async for d in result.async_response_gen()])
            payload = self._output_payload(message, answer, result.source_nodes)
            decision = await self._guard.acheck("output", payload, **attempts.details())
            again = attempts.record(decision, message, answer)
            if again is None:
                break
            await self._retried_async(message, None)
            asked = again
            result = await self._engine.astream_chat(asked, chat_history)
        if asked != message:
            await self._retried_async(message, asked)
        await self._fix_async(decision)
        return self._stream_result(result, answer, decision, decisions, attempts)

    # -- windowed streams

    def _windowed(self) -> bool:
        return self.stream_mode == "window" and self._guard.has("output")

    def _window_parts(
        self, message: str, inner: StreamingAgentChatResponse, decisions: dict[str, Response]
    ) -> tuple[
        TextWindow,
        StreamingAgentChatResponse,
        Callable[[str], Payload | None],
        Callable[[Response | None], None],
    ]:
        """The window, the stream handed back, the payload of the text so far, and what a decision does."""
        window = TextWindow(self.window, self.check_every)
        out = StreamingAgentChatResponse(
            sources=list(inner.sources), source_nodes=list(inner.source_nodes), is_writing_to_memory=False
        )
        out.stageguard_decisions = decisions  # type: ignore[attr-defined]  # fills in as it streams
        nodes = list(inner.source_nodes)

        def payload(text: str) -> Payload | None:
            return self._output_payload(message, text, nodes)

        def decided(decision: Response | None) -> None:
            if decision is None:
                return
            decisions["output"] = decision
            if is_override(decision):  # before the override goes out: it does not rest on the sources
                out.sources, out.source_nodes = [], []

        return window, out, payload, decided

    def _window_sync(
        self, message: str, inner: StreamingAgentChatResponse, decisions: dict[str, Response]
    ) -> StreamingAgentChatResponse:
        window, out, payload, decided = self._window_parts(message, inner, decisions)

        def check(text: str) -> Response | None:
            decision = self._guard.check(
                "output", payload(text), streaming="window", released=window.released
            )
            decided(decision)
            return decision

        def deltas() -> Generator[ChatResponse, None, None]:
            try:
                for piece in follow(window, inner.response_gen, check):
                    yield ChatResponse(message=assistant(window.shown), delta=piece)
            finally:  # the inner stream is closed: its writer has put the whole answer in memory
                if window.changed:
                    self._answer_sync(window.shown)

        out.chat_stream = deltas()
        return out

    def _window_async(
        self, message: str, inner: StreamingAgentChatResponse, decisions: dict[str, Response]
    ) -> StreamingAgentChatResponse:
        window, out, payload, decided = self._window_parts(message, inner, decisions)

        async def check(text: str) -> Response | None:
            decision = await self._guard.acheck(
                "output", payload(text), streaming="window", released=window.released
            )
            decided(decision)
            return decision

        async def deltas() -> AsyncGenerator[ChatResponse, None]:
            try:
                async for piece in afollow(window, inner.async_response_gen(), check):
                    yield ChatResponse(message=assistant(window.shown), delta=piece)
            finally:
                if window.changed:
                    await self._answer_async(window.shown)

        out.achat_stream = deltas()
        return out


async def _finish(task: asyncio.Future[Any]) -> None:
    """Wait for a dropped task to end; its result or error is dropped."""
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # mark its error (if any) as read


async def _messages(memory: BaseMemory) -> list[ChatMessage]:
    """What ``_memory.arewrite`` edits: a ``Memory``'s active messages, any other memory's messages."""
    if isinstance(memory, Memory):
        return await memory.sql_store.get_messages(memory.session_id, status=MessageStatus.ACTIVE)
    return list(await memory.aget_all())  # a copy: some stores hand out their live list

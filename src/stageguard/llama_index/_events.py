"""``ProtectEventHandler``: an instrumentation handler for audit trails and shadow roll-outs.

LlamaIndex instrumentation swallows handler exceptions and has no way to replace a result, so this
handler can never block anything: it records. It keeps every guard's :class:`GuardDecisionEvent`, and it
can evaluate stages on what the app does (queries, answers, retrieved nodes, LLM calls) in shadow mode:
the responses say what a stage *would* have done, which is how a new stage is tried on live traffic
before a guard enforces it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.core.instrumentation.events.query import QueryEndEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent
from llama_index.core.schema import QueryBundle, QueryType
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.base import BaseEvent
from llama_index_instrumentation.event_handlers import BaseEventHandler

from .._build import FastPrivateAttributes
from ..checkpoints import Turn, document_payload, input_payload, output_payload
from ..payload import Payload
from ..protect import Protect
from ..response import Response
from ..stage_ref import RulesetsLike, StageLike
from ..status import FailPolicy
from ._convert import context_of, latest_request, node_id, node_text, to_messages
from ._guard import Guard, GuardDecisionEvent, stages_for

logger = logging.getLogger("stageguard.llama_index")


@dataclass(frozen=True)
class DecisionRecord:
    """One recorded decision: a guard's (``source="guard"``) or a shadow evaluation's (``"shadow"``)."""

    source: Literal["guard", "shadow"]
    component: str
    hook: str
    stage: str
    response: Response
    event: str
    span_id: str | None = None
    timestamp: datetime = field(default_factory=datetime.now)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def triggered(self) -> bool:
        return self.response.triggered

    @property
    def action(self) -> str:
        """What was done, or in shadow mode what would have been done."""
        result = self.response.shadow_action_result or self.response.action_result
        return result.type.value


def _query_text(query: QueryType) -> str:
    if isinstance(query, QueryBundle):
        return query.query_str
    return query if isinstance(query, str) else ""


class ProtectEventHandler(FastPrivateAttributes, BaseEventHandler):
    """Records guard decisions and runs stages in shadow mode on instrumentation events.

    Hooks: ``input`` (the query) and ``output`` (query, answer and source nodes; streamed answers are
    skipped, reading them would take them from the caller), both on QueryEndEvent and once per answer: a
    nested engine (a router, sub-questions) hands its answer up, and that answer is evaluated once,
    ``retrieval``
    (RetrievalEndEvent: each node) and ``llm`` (LLM chat/completion end: prompt and answer). ``stage``
    covers ``input`` and ``output``; ``retrieval_stage`` and ``llm_stage`` are opt-in. Every evaluation is
    shadow: nothing is ever changed. With ``background=True`` evaluations run on one worker thread so the
    app does not wait for them (call :meth:`flush` before reading :attr:`records`).

    Register it with ``get_dispatcher().add_event_handler(handler)`` (or :meth:`attach`).
    """

    max_records: int = 1000
    record_guards: bool = True
    _guard: Guard | None = PrivateAttr(default=None)
    _records: deque[DecisionRecord] = PrivateAttr()
    _on_decision: Callable[[DecisionRecord], Any] | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _executor: concurrent.futures.ThreadPoolExecutor | None = PrivateAttr(default=None)
    _seen: weakref.WeakValueDictionary[int, Any] = PrivateAttr(default_factory=weakref.WeakValueDictionary)

    def __init__(
        self,
        stage: StageLike | None = None,
        *,
        input_stage: StageLike | None = None,
        output_stage: StageLike | None = None,
        retrieval_stage: StageLike | None = None,
        llm_stage: StageLike | None = None,
        prioritized_rulesets: RulesetsLike | None = None,
        stage_version: int | None = None,
        project_name: str | None = None,
        project_id: str | None = None,
        protect: Protect | None = None,
        timeout: float = 300.0,
        fail_policy: FailPolicy | str | None = None,
        metadata: dict[str, Any] | None = None,
        on_decision: Callable[[DecisionRecord], Any] | None = None,
        max_records: int = 1000,
        record_guards: bool = True,
        background: bool = False,
    ) -> None:
        super().__init__(max_records=max_records, record_guards=record_guards)

        completing: dict[str, Any] = {
            "prioritized_rulesets": prioritized_rulesets,
            "stage_version": stage_version,
            "project_name": project_name,
            "project_id": project_id,
        }
        # ``stage`` covers input and output; retrieval and llm are opt-in.
        stages = {
            **stages_for(
                ("input", "output"), stage, {"input": input_stage, "output": output_stage}, **completing
            ),
            **stages_for(
                ("retrieval", "llm"), None, {"retrieval": retrieval_stage, "llm": llm_stage}, **completing
            ),
        }
        if any(stages.values()):
            self._guard = Guard(
                "shadow",
                stages,
                protect=protect,
                timeout=timeout,
                fail_policy=fail_policy,
                shadow=True,  # instrumentation can't block: evaluate and report only
                metadata=metadata,
                dispatch=False,
            )
        self._records = deque(maxlen=max_records)
        self._on_decision = on_decision
        if background:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, "stageguard-shadow")

    @classmethod
    def class_name(cls) -> str:
        return "ProtectEventHandler"

    def attach(self, dispatcher_name: str = "root") -> ProtectEventHandler:
        """Register on a dispatcher (the root one sees every event)."""
        get_dispatcher(dispatcher_name).add_event_handler(self)
        return self

    @property
    def records(self) -> list[DecisionRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until background evaluations submitted so far are recorded."""
        if self._executor is not None:
            self._executor.submit(lambda: None).result(timeout)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # -- events

    def handle(self, event: BaseEvent, **kwargs: Any) -> Any:
        if isinstance(event, GuardDecisionEvent):
            if self.record_guards:
                self._record(
                    DecisionRecord(
                        source="guard",
                        component=event.component,
                        hook=event.hook,
                        stage=event.stage,
                        response=event.response,
                        event=event.class_name(),
                        span_id=event.span_id,
                        timestamp=event.timestamp,
                        details=dict(event.details),
                    )
                )
            return None
        if self._guard is None:
            return None
        for hook, payload, details in self._payloads(event):
            if self._guard.has(hook) and payload is not None:
                if self._executor is not None:
                    self._executor.submit(self._shadow, hook, payload, event, details)
                else:
                    self._shadow(hook, payload, event, details)
        return None

    def _payloads(self, event: BaseEvent) -> list[tuple[str, Payload | None, dict[str, Any]]]:
        """The payloads an event gives each hook (built now: the objects may change later)."""
        if isinstance(event, QueryEndEvent):
            response = event.response
            if not self._first_time(response):  # an outer engine handing up a nested engine's answer
                return []
            query = _query_text(event.query)
            payloads: list[tuple[str, Payload | None, dict[str, Any]]] = [("input", input_payload(query), {})]
            if isinstance(response, (StreamingResponse, AsyncStreamingResponse)):
                if response.response_txt is None:
                    return payloads
                text = response.response_txt
            else:
                text = str(response) if response.response is not None else ""
            with_context = "context" in self._fields("output")
            turn = Turn(context=context_of(response.source_nodes) or ()) if with_context else Turn()
            return [*payloads, ("output", output_payload(text, turn, request=query), {})]
        if isinstance(event, RetrievalEndEvent):
            return [
                (
                    "retrieval",
                    document_payload(node_text(n), query=_query_text(event.str_or_query_bundle)),
                    {"node_id": node_id(n)},
                )
                for n in event.nodes
            ]
        if isinstance(event, LLMChatEndEvent) and event.response is not None:
            if "messages" in self._fields("llm"):
                turn = Turn(messages=to_messages(event.messages) or ())
            else:  # the request is still the answer's input
                turn = Turn(latest_request=latest_request(event.messages))
            return [("llm", output_payload(event.response.message.content or "", turn), {})]
        if isinstance(event, LLMCompletionEndEvent):
            return [("llm", output_payload(event.response.text, request=event.prompt), {})]
        return []

    def _fields(self, hook: str) -> frozenset[str]:
        assert self._guard is not None  # payloads are built only with a guard
        return self._guard.fields_read(hook)

    def _first_time(self, response: Any) -> bool:
        """Whether this answer object is seen for the first time (kept weakly, so nothing leaks)."""
        with self._lock:
            if self._seen.get(id(response)) is response:
                return False
            with contextlib.suppress(TypeError):  # not weakly referenceable: evaluated every time
                self._seen[id(response)] = response
            return True

    def _shadow(self, hook: str, payload: Payload, event: BaseEvent, details: dict[str, Any]) -> None:
        assert self._guard is not None
        try:
            response = self._guard.check(hook, payload)
        except Exception:  # the dispatcher would swallow it silently; a misconfigured stage must show
            logger.warning("shadow evaluation of the %s hook failed", hook, exc_info=True)
            return
        stage = self._guard.stages[hook]
        if response is None or stage is None:
            return
        self._record(
            DecisionRecord(
                source="shadow",
                component="shadow",
                hook=hook,
                stage=stage.label,
                response=response,
                event=event.class_name(),
                span_id=event.span_id,
                details=details,
            )
        )

    def _record(self, record: DecisionRecord) -> None:
        with self._lock:
            self._records.append(record)
        if self._on_decision is not None:
            self._on_decision(record)

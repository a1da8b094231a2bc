"""Retrieved-document guards: check each ``Document`` before it joins the prompt.

Retrieved text is untrusted input to the model (indirect prompt injection, PII that should not be
quoted), so each document is checked on its own at the core ``document`` check point
(:func:`stageguard.checkpoints.document_payload`: the text is ``input``, the query a user message) and
dropped, redacted or kept by the stage's action, as ``GuardNodePostprocessor`` does in LlamaIndex.

- :class:`DocumentGuard`: a Runnable over ``list[Document]`` (``retriever | DocumentGuard(...)``).
- :class:`GuardedRetriever`: a ``BaseRetriever`` around another one, which also knows the query.

What a pass did is a :class:`DocumentReport`: given to ``on_report``, returned by
:meth:`DocumentGuard.check_documents`, and dispatched document by document as custom events of the run.
Nothing is kept on the guard, so one guard serves concurrent requests.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForChainRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.utils import gather_with_concurrency
from pydantic import ConfigDict, Field, PrivateAttr

from .._build import FastPrivateAttributes
from ..checkpoints import (
    DocumentAction,
    DocumentDecisionBase,
    DocumentReportBase,
    document_action,
    document_mark,
    document_payload,
)
from ..payload import Payload
from ..protect import Protect
from ..response import Response
from ..rules import Ruleset
from ..stage_ref import StageRef
from ..status import FailPolicy
from ._events import areport, decision_data, listening, report, unobserved
from ._stage import Checker, checker_of

logger = logging.getLogger("stageguard.langchain")

WHERE = "document"
"""The check point, as reported in each decision's custom event (``where``)."""
UNCHECKED_TAG = "stageguard:unchecked"
"""Tag of a guarded retriever's inner run: its documents were not checked yet (collectors of context
can skip them)."""


@dataclass(frozen=True)
class DocumentDecision(DocumentDecisionBase):
    """What the guard did with one document (``response`` is ``None``: the document had no text)."""

    index: int
    """Position in the retrieved list."""
    document: Document
    """The document as retrieved (before any redaction)."""
    action: DocumentAction
    response: Response | None

    @property
    def id(self) -> str | None:
        return self.document.id


@dataclass(frozen=True)
class DocumentReport(DocumentReportBase[DocumentDecision]):
    """What one pass did, document by document, in retrieval order."""

    query: str | None
    decisions: tuple[DocumentDecision, ...]

    @property
    def dropped(self) -> list[DocumentDecision]:
        return self.having("dropped")

    @property
    def redacted(self) -> list[DocumentDecision]:
        return self.having("redacted")

    @property
    def kept(self) -> list[DocumentDecision]:
        """Documents passed on unchanged (a triggered PASSTHROUGH or shadow decision included)."""
        return self.having("kept")

    @property
    def failed(self) -> list[DocumentDecision]:
        """Documents whose check failed; ``fail_closed`` dropped them, ``fail_open`` kept them."""
        return self.failed_decisions()


class DocumentGuard(FastPrivateAttributes, RunnableSerializable[Sequence[Document], list[Document]]):
    """Checks each retrieved document against a stage; returns the documents that may reach the model.

    An OVERRIDE drops the document (``on_override="replace"`` keeps it with the override text), a REDACT
    keeps a copy with the spans masked and a ``metadata_key`` entry saying so, a PASSTHROUGH keeps it. A
    failed check follows the fail policy: ``fail_closed`` overrides, so the document is dropped. Documents
    are checked concurrently, at most ``max_concurrency`` at once (threads under ``invoke``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    stage: str | StageRef | None = None
    """Stage name (the latest version unless ``stage_version``), or a :class:`StageRef`."""
    prioritized_rulesets: list[Ruleset] | None = None
    """Inline rulesets (with ``stage``: a local stage; alone: no stage)."""
    stage_version: int | None = None
    project_name: str | None = None
    protect: Protect | None = Field(default=None, exclude=True)
    """The ``Protect`` to invoke (default: ``get_default_protect()`` at call time)."""
    timeout: float = 300.0
    fail_policy: FailPolicy | None = None
    shadow: bool = False
    metadata: dict[str, Any] | None = None
    """Echoed in each response (``stageguard_where`` is added)."""
    on_override: Literal["drop", "replace"] = "drop"
    metadata_key: str | None = "stageguard"
    """Metadata key added to a redacted or replaced document (``None``: add nothing)."""
    max_concurrency: int = Field(default=4, ge=1)
    """Documents checked at once; 1 checks them one after the other (no threads)."""
    on_report: Callable[[DocumentReport], Any] | None = Field(default=None, exclude=True)
    """Called with the report of every pass (from the calling thread or task)."""

    _checker: Checker = PrivateAttr()

    def __init__(self, stage: str | StageRef | Sequence[Any] | None = None, /, **kwargs: Any) -> None:
        if isinstance(stage, (str, StageRef)):
            kwargs["stage"] = stage
        elif stage is not None:  # a list of rulesets
            kwargs["prioritized_rulesets"] = list(stage)
        super().__init__(**kwargs)

    def model_post_init(self, context: Any, /) -> None:
        # events are dispatched here, one per document with what was done to it
        self._checker = checker_of(self, "DocumentGuard", events=False)
        if self.name is None:
            self.name = f"DocumentGuard[{self._checker.stage.label}]"

    @property
    def checker(self) -> Checker:
        return self._checker

    # -- checking

    @staticmethod
    def _documents(value: Any) -> list[Document]:
        if isinstance(value, Document):
            raise TypeError("DocumentGuard takes a list of Documents, not a single Document")
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"DocumentGuard takes a list of Documents, not {type(value).__name__}")
        for i, doc in enumerate(value):
            if not isinstance(doc, Document):
                raise TypeError(f"DocumentGuard takes a list of Documents; item {i} is {type(doc).__name__}")
        return list(value)

    @staticmethod
    def _payload(index: int, doc: Document, query: str | None) -> Payload | None:
        if not doc.page_content.strip():
            return None  # nothing to check: an empty document cannot carry an injection
        meta: dict[str, Any] = {"document_index": index}
        if doc.id is not None:
            meta["document_id"] = doc.id
        return document_payload(doc.page_content, query=query, metadata=meta)

    def check_documents(
        self, documents: Sequence[Document], query: str | None = None, config: RunnableConfig | None = None
    ) -> tuple[list[Document], DocumentReport]:
        """Check ``documents`` (no run of its own): the documents to pass on, and what was done."""
        docs = self._documents(documents)
        work = [(i, p) for i, doc in enumerate(docs) if (p := self._payload(i, doc, query)) is not None]
        payloads, lanes = [p for _, p in work], min(self.max_concurrency, len(work))
        checked = _in_lanes(lambda p: self._checker.check(p, config, where=WHERE), payloads, lanes)
        responses = dict(zip((i for i, _ in work), checked, strict=True))
        kept, result = self._apply(docs, responses, query)
        if (run := listening(config)) is not None:
            for decision in result.decisions:
                if decision.response is not None:
                    report(_event(decision, self._checker.stage.label), run)
        self._reported(result)
        return kept, result

    async def acheck_documents(
        self, documents: Sequence[Document], query: str | None = None, config: RunnableConfig | None = None
    ) -> tuple[list[Document], DocumentReport]:
        """Async :meth:`check_documents`: the documents are checked concurrently."""
        docs = self._documents(documents)
        work = [(i, p) for i, doc in enumerate(docs) if (p := self._payload(i, doc, query)) is not None]
        checks = [self._checker.acheck(p, config, where=WHERE) for _, p in work]
        if len(checks) == 1:
            checked = [await checks[0]]
        else:
            checked = await gather_with_concurrency(self.max_concurrency, *checks)
        responses = dict(zip((i for i, _ in work), checked, strict=True))
        kept, result = self._apply(docs, responses, query)
        if (run := listening(config)) is not None:
            for decision in result.decisions:
                if decision.response is not None:
                    await areport(_event(decision, self._checker.stage.label), run)
        self._reported(result)
        return kept, result

    def _apply(
        self, docs: list[Document], responses: dict[int, Response], query: str | None
    ) -> tuple[list[Document], DocumentReport]:
        kept: list[Document] = []
        decisions: list[DocumentDecision] = []
        for index, doc in enumerate(docs):
            response = responses.get(index)
            action = document_action(response, on_override=self.on_override)
            out = doc if response is None or action in ("kept", "dropped") else self._changed(doc, response)
            decisions.append(DocumentDecision(index, doc, action, response))
            if action != "dropped":
                kept.append(out)
        return kept, DocumentReport(query, tuple(decisions))

    def _changed(self, doc: Document, response: Response) -> Document:
        """A copy of ``doc`` with the response's text; the retrieved (and stored) document is untouched."""
        metadata = doc.metadata
        if self.metadata_key is not None:
            metadata = {**doc.metadata, self.metadata_key: document_mark(response, self._checker.stage.label)}
        return doc.model_copy(update={"page_content": response.text, "metadata": metadata})

    def _reported(self, result: DocumentReport) -> None:
        if result.changed or result.failed:
            logger.info(
                "document guard: dropped %s, redacted %s, replaced %s, failed checks %s (positions)",
                [d.index for d in result.dropped],
                [d.index for d in result.redacted],
                [d.index for d in result.having("replaced")],
                [d.index for d in result.failed],
            )
        if self.on_report is not None:
            self.on_report(result)

    # -- Runnable

    def invoke(
        self, input: Sequence[Document], config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        if (quiet := unobserved(config)) is not None:  # nobody would see the run: skip its bookkeeping
            return self.check_documents(input, None, quiet)[0]
        return self._call_with_config(self._invoke, input, config)

    async def ainvoke(
        self, input: Sequence[Document], config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        if (quiet := unobserved(config)) is not None:
            return (await self.acheck_documents(input, None, quiet))[0]
        return await self._acall_with_config(self._ainvoke, input, config)

    def _invoke(
        self, value: Sequence[Document], run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> list[Document]:
        return self.check_documents(value, None, config)[0]

    async def _ainvoke(
        self, value: Sequence[Document], run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> list[Document]:
        return (await self.acheck_documents(value, None, config))[0]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_POOL_SIZE = 32
"""Threads shared by every guard's sync checks: started on demand, then reused (a thread costs ~100 µs
to start, more than a check with a local scorer). The caller checks one lane itself, so a busy pool
slows a pass down but never stalls it."""


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_POOL_SIZE, thread_name_prefix="stageguard-documents")
        return _POOL


def _in_lanes(check: Callable[[Payload], Response], payloads: list[Payload], lanes: int) -> list[Response]:
    """``check`` over ``payloads`` in ``lanes`` concurrent lanes (one in this thread), results in order."""
    if lanes <= 1:
        return [check(p) for p in payloads]

    def lane(k: int) -> list[Response]:
        return [check(p) for p in payloads[k::lanes]]

    # each lane runs in a copy of this context (what LangChain's own executors do)
    futures = [_pool().submit(contextvars.copy_context().run, lane, k) for k in range(1, lanes)]
    results = [lane(0), *(f.result() for f in futures)]
    ordered: list[Response] = [None] * len(payloads)  # type: ignore[list-item]
    for k, lane_results in enumerate(results):
        ordered[k::lanes] = lane_results
    return ordered


def _event(decision: DocumentDecision, stage: str) -> dict[str, Any]:
    """The custom event of one document's decision: the usual decision data plus what became of it."""
    assert decision.response is not None
    data = decision_data(decision.response, where=WHERE, stage=stage)
    data["document"] = {"index": decision.index, "id": decision.id, "action": decision.action}
    return data


class GuardedRetriever(BaseRetriever):
    """A retriever whose documents went through a :class:`DocumentGuard`, checked with the query.

    ``GuardedRetriever(retriever, "retrieved-docs")`` or ``GuardedRetriever(retriever, guard=guard)``;
    other keyword arguments are :class:`DocumentGuard` options, except ``tags`` and ``metadata``, which
    are the retriever's own run tags and metadata (give the guard's in a ``guard=``). The inner retriever
    runs as a child run tagged :data:`UNCHECKED_TAG`, so traces show what it returned before the guard.
    """

    retriever: BaseRetriever
    guard: DocumentGuard

    def __init__(
        self,
        retriever: BaseRetriever | None = None,
        stage: str | StageRef | Sequence[Any] | None = None,
        /,
        **kwargs: Any,
    ) -> None:
        if retriever is not None:
            kwargs["retriever"] = retriever
        own = set(BaseRetriever.model_fields) | {"retriever", "guard"}
        options = {k: kwargs.pop(k) for k in list(kwargs) if k not in own}
        if "guard" in kwargs:
            if stage is not None or options:
                raise ValueError(
                    f"give either guard= or a stage and guard options, not both: {sorted(options)}"
                )
        else:
            kwargs["guard"] = DocumentGuard(stage, **options)
        super().__init__(**kwargs)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        docs = self.retriever.invoke(query, {"callbacks": run_manager.get_child(UNCHECKED_TAG)}, **kwargs)
        return self.guard.check_documents(docs, query, {"callbacks": run_manager.get_child()})[0]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        inner: RunnableConfig = {"callbacks": run_manager.get_child(UNCHECKED_TAG)}
        docs = await self.retriever.ainvoke(query, inner, **kwargs)
        return (await self.guard.acheck_documents(docs, query, {"callbacks": run_manager.get_child()}))[0]

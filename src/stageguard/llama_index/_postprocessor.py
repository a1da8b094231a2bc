"""``GuardNodePostprocessor``: checks each retrieved node before it reaches the prompt.

Retrieved text is untrusted input to the model (indirect prompt injection, leaked PII, toxic pages), so
each node is checked as its own payload and dropped, replaced or redacted by the stage's action, with the
semantics of LangChain's ``DocumentGuard``: blank nodes are not checked, a failed check follows the fail
policy (``fail_closed`` drops the node) and is listed in the report's ``failed``, a changed node is a copy
marked under ``metadata_key`` (kept out of the LLM's and the embedding's view of the metadata).

What a pass did is a :class:`NodeReport`: returned by :meth:`GuardNodePostprocessor.check_nodes`, given to
``on_report``, and dispatched node by node as ``GuardDecisionEvent``. ``last_report`` is kept for
one-query-at-a-time scripts only: concurrent queries overwrite it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from .._build import FastPrivateAttributes
from ..checkpoints import (
    DocumentAction,
    DocumentDecisionBase,
    DocumentReportBase,
    Turn,
    document_action,
    document_mark,
    document_payload,
    output_payload,
)
from ..payload import Payload
from ..protect import Protect
from ..response import Response
from ..stage_ref import RulesetsLike, StageLike
from ..status import FailPolicy
from ._convert import node_id, node_text
from ._guard import Guard

logger = logging.getLogger("stageguard.llama_index")

NodeAction = DocumentAction


@dataclass(frozen=True)
class NodeDecision(DocumentDecisionBase):
    """What the guard did with one node, and the stage's response (``None``: the node was blank)."""

    node_id: str
    action: NodeAction
    response: Response | None
    index: int | None = None
    """Position in the retrieved list."""


@dataclass(frozen=True)
class NodeReport(DocumentReportBase[NodeDecision]):
    """What one postprocessing pass did, node by node (in retrieval order)."""

    query: str | None
    decisions: tuple[NodeDecision, ...]

    def ids(self, action: NodeAction) -> list[str]:
        return [d.node_id for d in self.having(action)]

    @property
    def dropped(self) -> list[str]:
        return self.ids("dropped")

    @property
    def redacted(self) -> list[str]:
        return self.ids("redacted")

    @property
    def kept(self) -> list[str]:
        return self.ids("kept")

    @property
    def failed(self) -> list[str]:
        """Nodes whose check failed; ``fail_closed`` dropped them, ``fail_open`` kept them."""
        return [d.node_id for d in self.failed_decisions()]


class GuardNodePostprocessor(FastPrivateAttributes, BaseNodePostprocessor):
    """Checks every retrieved node against a stage and drops or redacts the ones that trigger.

    Each node's text (without metadata) is the payload's ``input`` by default, with the query as a user
    message in ``messages`` (:func:`stageguard.checkpoints.document_payload`); ``field="output"`` puts the
    query in ``input`` and the node in ``output`` instead. An OVERRIDE drops the node
    (``on_override="replace"`` keeps it with the override text instead), a REDACT keeps a copy with the spans
    masked, a PASSTHROUGH keeps it. A changed node is a copy (the index keeps the original) with an entry
    under ``metadata_key`` (action, stage, labels, trace id; ``None``: no entry), a key excluded from the
    metadata the LLM and the embedding model see. Blank nodes are kept unchecked; a failed check follows
    the fail policy (``fail_closed`` drops the node) and is listed in ``NodeReport.failed``.

    :meth:`check_nodes` / :meth:`acheck_nodes` return the nodes and the pass's :class:`NodeReport`; as a
    postprocessor, each pass goes to ``on_report`` and every decision is dispatched as a
    ``GuardDecisionEvent``. :attr:`last_report` holds the latest pass, which is only meaningful when one
    query runs at a time (concurrent queries overwrite it): use ``on_report`` or :meth:`check_nodes`.
    """

    field: Literal["input", "output"] = Field(default="input", description="Payload field for node text.")
    on_override: Literal["drop", "replace"] = Field(default="drop")
    metadata_key: str | None = Field(default="stageguard", description="Node metadata key marking changes.")
    _guard: Guard = PrivateAttr()
    _on_report: Callable[[NodeReport], Any] | None = PrivateAttr(default=None)
    _last_report: NodeReport | None = PrivateAttr(default=None)

    def __init__(
        self,
        stage: StageLike | None = None,
        *,
        prioritized_rulesets: RulesetsLike | None = None,
        stage_version: int | None = None,
        project_name: str | None = None,
        project_id: str | None = None,
        protect: Protect | None = None,
        timeout: float = 300.0,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
        metadata: dict[str, Any] | None = None,
        field: Literal["input", "output"] = "input",
        on_override: Literal["drop", "replace"] = "drop",
        on_report: Callable[[NodeReport], Any] | None = None,
        metadata_key: str | None = "stageguard",
        **kwargs: Any,
    ) -> None:
        if on_report is not None and not callable(on_report):
            raise TypeError(f"on_report must be callable, got {type(on_report).__name__}")
        super().__init__(field=field, on_override=on_override, metadata_key=metadata_key, **kwargs)
        self._guard = Guard.build(
            "node_postprocessor",
            ("node",),
            stage,
            {},
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
        self._on_report = on_report

    @classmethod
    def class_name(cls) -> str:
        return "GuardNodePostprocessor"

    @property
    def guard(self) -> Guard:
        return self._guard

    @property
    def last_report(self) -> NodeReport | None:
        """The latest pass (not safe under concurrent queries: use ``on_report`` or :meth:`check_nodes`)."""
        return self._last_report

    def _payload(self, node: NodeWithScore, query: str | None) -> Payload | None:
        text = node_text(node)
        meta = {"node_id": node_id(node), "score": node.score}
        if self.field == "output":  # a blank node is not checked, as at the document check point
            return output_payload(text, Turn(metadata=meta), request=query) if text.strip() else None
        return document_payload(text, query=query, metadata=meta)

    def check_nodes(
        self, nodes: Sequence[NodeWithScore], query: str | None = None
    ) -> tuple[list[NodeWithScore], NodeReport]:
        """Check ``nodes``: the nodes to pass on, and what was done (also given to ``on_report``)."""
        responses = [
            self._guard.check("node", self._payload(n, query), node_id=node_id(n), index=i, query=query)
            for i, n in enumerate(nodes)
        ]
        return self._apply(nodes, responses, query)

    async def acheck_nodes(
        self, nodes: Sequence[NodeWithScore], query: str | None = None
    ) -> tuple[list[NodeWithScore], NodeReport]:
        """Async :meth:`check_nodes`: the nodes are checked concurrently."""
        responses = await asyncio.gather(
            *(
                self._guard.acheck("node", self._payload(n, query), node_id=node_id(n), index=i, query=query)
                for i, n in enumerate(nodes)
            )
        )
        return self._apply(nodes, list(responses), query)

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return self.check_nodes(nodes, query_bundle.query_str if query_bundle else None)[0]

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return (await self.acheck_nodes(nodes, query_bundle.query_str if query_bundle else None))[0]

    def _apply(
        self, nodes: Sequence[NodeWithScore], responses: Sequence[Response | None], query: str | None
    ) -> tuple[list[NodeWithScore], NodeReport]:
        kept: list[NodeWithScore] = []
        decisions: list[NodeDecision] = []
        for index, (node, response) in enumerate(zip(nodes, responses, strict=True)):
            action = document_action(response, on_override=self.on_override)
            if response is not None and action in ("redacted", "replaced"):
                replacement = _with_text(node, response.text, self._mark(response))
                if replacement is None:  # a node whose text can't be set: never pass on the original
                    action = "dropped"
                else:
                    node = replacement
            decisions.append(NodeDecision(node_id(node), action, response, index))
            if action != "dropped":
                kept.append(node)
        report = NodeReport(query, tuple(decisions))
        self._last_report = report
        if report.changed or report.failed:
            logger.info(
                "node guard: dropped %s, redacted %s, replaced %s, failed checks %s",
                report.dropped,
                report.redacted,
                report.ids("replaced"),
                report.failed,
            )
        if self._on_report is not None:
            self._on_report(report)
        return kept, report

    def _mark(self, response: Response) -> tuple[str, dict[str, Any]] | None:
        """The metadata entry of a changed node: what was done, by which stage (``None``: no marking)."""
        if self.metadata_key is None:
            return None
        stage = self._guard.stages["node"]
        return self.metadata_key, document_mark(response, stage.label if stage else None)


def _with_text(
    node: NodeWithScore, text: str, mark: tuple[str, dict[str, Any]] | None = None
) -> NodeWithScore | None:
    """A copy of the node holding ``text`` (the original node in the index is left untouched), marked
    under ``mark``'s key, which the LLM and the embedding model don't see."""
    copy = node.node.model_copy()
    try:
        copy.set_content(text)
    except (NotImplementedError, AttributeError, ValueError):
        return None
    if mark is not None:
        key, entry = mark
        copy.metadata = {**copy.metadata, key: entry}
        for excluded in ("excluded_llm_metadata_keys", "excluded_embed_metadata_keys"):
            keys = list(getattr(copy, excluded))
            setattr(copy, excluded, keys if key in keys else [*keys, key])
    return NodeWithScore(node=copy, score=node.score)

"""``GuardNodePostprocessor``: checks each retrieved node before it reaches the prompt.

Retrieved text is untrusted input to the model (indirect prompt injection, leaked PII, toxic pages), so
each node is checked as its own payload and dropped, replaced or redacted by the stage's action.
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

from ..checkpoints import Turn, document_payload, output_payload
from ..payload import Payload
from ..protect import Protect
from ..response import Response
from ..rules import ActionType
from ..stage_ref import RulesetsLike, StageLike
from ..status import FailPolicy
from ._convert import node_id, node_text
from ._guard import Guard

logger = logging.getLogger("stageguard.llama_index")

NodeAction = Literal["kept", "dropped", "replaced", "redacted"]


@dataclass(frozen=True)
class NodeDecision:
    """What the guard did with one node, and the stage's response (``None``: the node had no text)."""

    node_id: str
    action: NodeAction
    response: Response | None

    @property
    def triggered(self) -> bool:
        return self.response is not None and self.response.triggered


@dataclass(frozen=True)
class NodeReport:
    """What one postprocessing pass did, node by node (in retrieval order)."""

    query: str | None
    decisions: tuple[NodeDecision, ...]

    def ids(self, action: NodeAction) -> list[str]:
        return [d.node_id for d in self.decisions if d.action == action]

    @property
    def dropped(self) -> list[str]:
        return self.ids("dropped")

    @property
    def redacted(self) -> list[str]:
        return self.ids("redacted")

    @property
    def kept(self) -> list[str]:
        return self.ids("kept")


class GuardNodePostprocessor(BaseNodePostprocessor):
    """Checks every retrieved node against a stage and drops or redacts the ones that trigger.

    Each node's text (without metadata) is the payload's ``input`` by default, with the query as a user
    message in ``messages`` (:func:`stageguard.checkpoints.document_payload`); ``field="output"`` puts the
    query in ``input`` and the node in ``output`` instead. An OVERRIDE drops the node
    (``on_override="replace"`` keeps it with the override text instead), a REDACT keeps a copy with the spans
    masked, a PASSTHROUGH keeps it. Each pass is reported to ``on_report`` (and kept as :attr:`last_report`,
    which is only meaningful when one query runs at a time) and every decision is dispatched as a
    GuardDecisionEvent.
    """

    field: Literal["input", "output"] = Field(default="input", description="Payload field for node text.")
    on_override: Literal["drop", "replace"] = Field(default="drop")
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
        **kwargs: Any,
    ) -> None:
        super().__init__(field=field, on_override=on_override, **kwargs)
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
        return self._last_report

    def _payload(self, node: NodeWithScore, query: str | None) -> Payload | None:
        text = node_text(node)
        meta = {"node_id": node_id(node), "score": node.score}
        if self.field == "output":
            return output_payload(text, Turn(metadata=meta), request=query) if text else None
        return document_payload(text, query=query, metadata=meta)

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = query_bundle.query_str if query_bundle else None
        responses = [
            self._guard.check("node", self._payload(n, query), node_id=node_id(n), query=query) for n in nodes
        ]
        return self._apply(nodes, responses, query)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = query_bundle.query_str if query_bundle else None
        responses = await asyncio.gather(
            *(
                self._guard.acheck("node", self._payload(n, query), node_id=node_id(n), query=query)
                for n in nodes
            )
        )
        return self._apply(nodes, list(responses), query)

    def _apply(
        self, nodes: Sequence[NodeWithScore], responses: Sequence[Response | None], query: str | None
    ) -> list[NodeWithScore]:
        kept: list[NodeWithScore] = []
        decisions: list[NodeDecision] = []
        for node, response in zip(nodes, responses, strict=True):
            action: NodeAction = "kept"
            if response is not None and response.applied:
                if response.action_result.type is ActionType.OVERRIDE and self.on_override == "drop":
                    action = "dropped"
                else:
                    replacement = _with_text(node, response.text)
                    if replacement is None:
                        action = "dropped"
                    else:
                        node = replacement
                        redact = response.action_result.type is ActionType.REDACT
                        action = "redacted" if redact else "replaced"
            decisions.append(NodeDecision(node_id(node), action, response))
            if action != "dropped":
                kept.append(node)
        report = NodeReport(query, tuple(decisions))
        self._last_report = report
        if len(kept) != len(nodes) or any(d.action != "kept" for d in decisions):
            logger.info(
                "node guard: dropped %s, redacted %s, replaced %s",
                report.dropped,
                report.redacted,
                report.ids("replaced"),
            )
        if self._on_report is not None:
            self._on_report(report)
        return kept


def _with_text(node: NodeWithScore, text: str) -> NodeWithScore | None:
    """A copy of the node holding ``text`` (the original node in the index is left untouched)."""
    copy = node.node.model_copy()
    try:
        copy.set_content(text)
    except (NotImplementedError, AttributeError, ValueError):
        return None
    return NodeWithScore(node=copy, score=node.score)

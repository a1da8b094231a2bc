"""GuardNodePostprocessor with DocumentGuard's semantics: return-value reports, blank nodes, failures,
marked copies kept out of the LLM's and the embedding's metadata."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from stageguard import Payload, Protect
from stageguard.llama_index import GuardDecisionEvent, GuardNodePostprocessor, NodeReport

FLAKY = [
    {
        "rules": [{"metric": "li_flaky", "operator": "gt", "target_value": 0.5}],
        "action": {"type": "OVERRIDE", "choices": ["DROPPED"]},
    }
]


@pytest.fixture(autouse=True)
def flaky_metric(metric: Callable[..., str]) -> None:
    def flaky(payload: Payload) -> float:
        if "boom" in (payload.input or ""):
            raise RuntimeError("scorer down")
        return 1.0 if "bad" in (payload.input or "") else 0.0

    metric("li_flaky", flaky, kind="score")


def nodes(*texts: str) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata={"source": f"s{i}"}), score=1.0)
        for i, t in enumerate(texts)
    ]


def test_check_nodes_returns_the_report(protect: Protect, recorder: list[Payload]) -> None:
    reports: list[NodeReport] = []
    guard = GuardNodePostprocessor(FLAKY, protect=protect, on_report=reports.append)
    kept, report = guard.check_nodes(nodes("good", "   ", "bad"), query="q")
    assert [n.node.node_id for n in kept] == ["n0", "n1"]
    assert report.dropped == ["n2"] and report.kept == ["n0", "n1"] and report.changed
    assert [d.index for d in report.decisions] == [0, 1, 2]
    assert report.decisions[1].response is None  # the blank node was not checked
    assert reports == [report]


async def test_concurrent_queries_each_get_their_own_report(protect: Protect) -> None:
    guard = GuardNodePostprocessor(FLAKY, protect=protect)
    (_, first), (_, second) = await asyncio.gather(
        guard.acheck_nodes(nodes("bad", "ok"), query="one"), guard.acheck_nodes(nodes("ok"), query="two")
    )
    assert (first.query, first.dropped) == ("one", ["n0"])
    assert (second.query, second.dropped) == ("two", [])


@pytest.mark.parametrize(("policy", "kept_ids"), [("fail_closed", ["n0"]), ("fail_open", ["n0", "n1"])])
def test_failed_checks_follow_the_fail_policy(protect: Protect, policy: str, kept_ids: list[str]) -> None:
    guard = GuardNodePostprocessor(FLAKY, protect=protect, fail_policy=policy)
    kept, report = guard.check_nodes(nodes("ok", "boom"))
    assert [n.node.node_id for n in kept] == kept_ids
    assert report.failed == ["n1"]


def test_changed_nodes_are_marked_out_of_the_models_view(protect: Protect, rules: Any) -> None:
    guard = GuardNodePostprocessor(rules.mask(), protect=protect)
    original = nodes("my secret recipe")
    (node,), report = guard.check_nodes(original)
    assert report.redacted == ["n0"]
    entry = node.node.metadata["stageguard"]
    assert entry["action"] == "REDACT" and entry["labels"] == ["secret"]
    for mode in (MetadataMode.LLM, MetadataMode.EMBED):
        seen = node.node.get_content(metadata_mode=mode)
        assert "source: s0" in seen and "stageguard" not in seen and "<SECRET>" in seen
    assert "stageguard" not in original[0].node.metadata  # the retrieved node is untouched
    unmarked = GuardNodePostprocessor(rules.mask(), protect=protect, metadata_key=None)
    (plain,), _ = unmarked.check_nodes(nodes("my secret recipe"))
    assert "stageguard" not in plain.node.metadata


def test_decisions_are_dispatched_with_their_position(protect: Protect, events: list[Any]) -> None:
    guard = GuardNodePostprocessor(FLAKY, protect=protect)
    guard.postprocess_nodes(nodes("ok", "bad"), query_str="q")
    mine = [e for e in events if isinstance(e, GuardDecisionEvent) and e.component == "node_postprocessor"]
    assert [(e.details["index"], e.applied) for e in mine] == [(0, False), (1, True)]


def test_on_report_must_be_callable(protect: Protect) -> None:
    with pytest.raises(TypeError, match="on_report must be callable"):
        GuardNodePostprocessor(FLAKY, protect=protect, on_report="log")  # type: ignore[arg-type]

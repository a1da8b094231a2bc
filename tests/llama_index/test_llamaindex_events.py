"""ProtectEventHandler: records guard decisions and runs shadow stages on instrumentation events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.instrumentation import get_dispatcher

from stageguard import Protect
from stageguard.llama_index import DecisionRecord, GuardedQueryEngine, ProtectEventHandler


@pytest.fixture
def attach() -> Iterator[Any]:
    """``attach(handler)``: register on the root dispatcher for one test."""
    attached: list[ProtectEventHandler] = []

    def add(handler: ProtectEventHandler) -> ProtectEventHandler:
        attached.append(handler.attach())
        return handler

    yield add
    root = get_dispatcher()
    for handler in attached:
        root.event_handlers.remove(handler)
        handler.close()


def test_records_guard_decisions(
    protect: Protect, rules: Any, index: Any, echo_llm: Any, attach: Any
) -> None:
    seen: list[DecisionRecord] = []
    handler = attach(ProtectEventHandler(on_decision=seen.append))
    guarded = GuardedQueryEngine(
        index.as_query_engine(llm=echo_llm), input_stage=rules.block("NO"), protect=protect
    )
    guarded.query("secret")
    (record,) = handler.records
    assert seen == [record]
    assert (record.source, record.component, record.hook, record.action, record.triggered) == (
        "guard",
        "query_engine",
        "input",
        "OVERRIDE",
        True,
    )
    handler.clear()
    assert handler.records == []


def test_shadow_stages_on_app_events(
    protect: Protect, rules: Any, index: Any, echo_llm: Any, attach: Any
) -> None:
    handler = attach(
        ProtectEventHandler(
            output_stage=rules.block(),
            retrieval_stage=rules.injection(),
            llm_stage=rules.note(),
            protect=protect,
        )
    )
    engine = index.as_query_engine(llm=echo_llm, similarity_top_k=4)
    result = engine.query("bananas")
    assert "SECRET-line" in str(result)  # instrumentation never changes anything
    by_hook: dict[str, list[DecisionRecord]] = {}
    for record in handler.records:
        assert record.source == "shadow" and record.response.shadow
        by_hook.setdefault(record.hook, []).append(record)
    assert len(by_hook["retrieval"]) == 4
    assert sum(r.triggered for r in by_hook["retrieval"]) == 1  # the injected document
    assert [r.action for r in by_hook["output"]] == ["OVERRIDE"]  # what enforcing would have done
    assert by_hook["llm"] and by_hook["llm"][0].triggered


def test_background_evaluation(protect: Protect, rules: Any, index: Any, echo_llm: Any, attach: Any) -> None:
    handler = attach(ProtectEventHandler(rules.block(), protect=protect, background=True))
    index.as_query_engine(llm=echo_llm).query("secret question")
    handler.flush(timeout=30)
    assert {r.hook for r in handler.records} == {"input", "output"}
    assert all(r.triggered for r in handler.records)


def test_streamed_answers_are_not_consumed(
    protect: Protect, rules: Any, index: Any, echo_llm: Any, attach: Any
) -> None:
    handler = attach(ProtectEventHandler(output_stage=rules.block(), protect=protect))
    result = index.as_query_engine(llm=echo_llm, streaming=True, similarity_top_k=4).query("bananas")
    assert "SECRET-line" in "".join(result.response_gen)  # the caller still gets the whole stream
    assert handler.records == []


def test_a_misconfigured_stage_is_logged(
    protect: Protect, index: Any, echo_llm: Any, attach: Any, caplog: Any
) -> None:
    handler = attach(ProtectEventHandler(input_stage="no-such-stage", protect=protect))
    index.as_query_engine(llm=echo_llm).query("hi")
    assert handler.records == []
    assert "shadow evaluation of the input hook failed" in caplog.text


@pytest.mark.parametrize("outer", ["router", "guard"])
def test_nested_engines_are_evaluated_once(
    protect: Protect,
    rules: Any,
    index: Any,
    echo_llm: Any,
    attach: Any,
    recorder: list[Any],
    outer: str,
) -> None:
    """An outer engine hands its inner engine's answer up: the query and the answer are evaluated once."""
    from llama_index.core.base.base_selector import BaseSelector, SelectorResult, SingleSelection
    from llama_index.core.query_engine import RouterQueryEngine
    from llama_index.core.tools import QueryEngineTool

    class First(BaseSelector):
        def _get_prompts(self) -> dict[str, Any]:
            return {}

        def _update_prompts(self, prompts: Any) -> None:
            pass

        def _select(self, choices: Any, query: Any) -> SelectorResult:
            return SelectorResult(selections=[SingleSelection(index=0, reason="first")])

        async def _aselect(self, choices: Any, query: Any) -> SelectorResult:
            return self._select(choices, query)

    inner = index.as_query_engine(llm=echo_llm)
    if outer == "router":
        docs = QueryEngineTool.from_defaults(inner, name="docs", description="d")
        engine: Any = RouterQueryEngine(selector=First(), query_engine_tools=[docs], llm=echo_llm)
    else:  # a guard that lets the answer through is no second answer
        engine = GuardedQueryEngine(inner, output_stage=rules.note(), protect=protect)
    handler = attach(ProtectEventHandler(rules.record, protect=protect))
    answer = engine.query("towers")
    assert sorted(r.hook for r in handler.records if r.source == "shadow") == ["input", "output"]
    assert len(recorder) == 2
    assert [p.output for p in recorder if p.output] == [str(answer)]


def test_events_take_no_slow_attribute_reads(
    protect: Protect, rules: Any, index: Any, echo_llm: Any, attach: Any, slow_reads: list[tuple[str, str]]
) -> None:
    """Every instrumentation event of the app passes through the handler: it reads its private attributes
    without pydantic's ``__getattr__`` (~1.7 µs a read)."""
    stages = {"output_stage": rules.block(), "retrieval_stage": rules.injection()}
    handler = attach(ProtectEventHandler(**stages, protect=protect))
    index.as_query_engine(llm=echo_llm, similarity_top_k=4).query("bananas")
    assert {r.hook for r in handler.records} == {"retrieval", "output"}
    assert slow_reads == [], slow_reads

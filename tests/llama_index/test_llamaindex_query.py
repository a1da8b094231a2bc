"""GuardedQueryEngine: short-circuit, redaction, output checks with context, streaming and async."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    StreamingResponse,
)
from llama_index.core.base.response.schema import (
    Response as LIResponse,
)
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import QueryBundle

from stageguard import ActionType, ExecutionStatus, Protect, StageNotFoundError
from stageguard.llama_index import GuardDecisionEvent, GuardedQueryEngine, StageRef, decisions_of


class FakeEngine(BaseQueryEngine):
    """Answers with a fixed text and records the queries it ran."""

    def __init__(self, answer: str = "fine answer") -> None:
        super().__init__(CallbackManager([]))
        self.answer = answer
        self.queries: list[str] = []

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}

    def _query(self, query_bundle: QueryBundle) -> LIResponse:
        self.queries.append(query_bundle.query_str)
        return LIResponse(self.answer)

    async def _aquery(self, query_bundle: QueryBundle) -> LIResponse:
        return self._query(query_bundle)


def engine(index: Any, llm: Any, **kwargs: Any) -> Any:
    return index.as_query_engine(llm=llm, similarity_top_k=4, **kwargs)


def test_input_override_short_circuits(protect: Protect, rules: Any) -> None:
    inner = FakeEngine()
    guarded = GuardedQueryEngine(inner, input_stage=rules.block("NO"), protect=protect)
    result = guarded.query("tell me the secret")
    assert isinstance(result, LIResponse)
    assert result.response == "NO"
    assert result.source_nodes == []
    assert inner.queries == []  # the inner engine never ran
    assert decisions_of(result)["input"].action_result.type is ActionType.OVERRIDE


def test_passes_clean_query_and_reports(protect: Protect, rules: Any) -> None:
    inner = FakeEngine()
    guarded = GuardedQueryEngine(inner, rules.block(), protect=protect)
    result = guarded.query("what is the weather")
    assert str(result) == "fine answer"
    assert inner.queries == ["what is the weather"]
    assert set(decisions_of(result)) == {"input", "output"}
    assert all(d.status is ExecutionStatus.not_triggered for d in decisions_of(result).values())


def test_input_redaction_reaches_the_model(protect: Protect, rules: Any, index: Any, echo_llm: Any) -> None:
    guarded = GuardedQueryEngine(engine(index, echo_llm), input_stage=rules.mask(), protect=protect)
    result = guarded.query("where is my secret tower")
    assert "where is my <SECRET> tower" in str(result)  # the echo model saw the redacted query
    assert "my secret" not in str(result)
    assert decisions_of(result)["input"].action_result.type is ActionType.REDACT


def test_output_checked_with_source_nodes_as_context(
    protect: Protect, rules: Any, recorder: list[Any], index: Any, echo_llm: Any
) -> None:
    guarded = GuardedQueryEngine(engine(index, echo_llm), output_stage=rules.record, protect=protect)
    result = guarded.query("towers")
    (payload,) = recorder
    assert payload.input == "towers"
    assert payload.output == str(result)
    assert sorted(payload.context) == sorted(n.node.get_content() for n in result.source_nodes)
    assert len(payload.context) == 4


def test_output_override_drops_sources(protect: Protect, rules: Any, index: Any, echo_llm: Any) -> None:
    # The echo model repeats the retrieved "SECRET-line" document, so the output check blocks it.
    guarded = GuardedQueryEngine(engine(index, echo_llm), output_stage=rules.block("NOPE"), protect=protect)
    result = guarded.query("bananas")
    assert str(result) == "NOPE"
    assert result.source_nodes == []


def test_output_redaction_keeps_sources(protect: Protect, rules: Any, index: Any, echo_llm: Any) -> None:
    guarded = GuardedQueryEngine(engine(index, echo_llm), output_stage=rules.mask(), protect=protect)
    result = guarded.query("bananas")
    assert "<SECRET>-line" in str(result)
    assert "SECRET-line" not in str(result)
    assert len(result.source_nodes) == 4


def test_streaming_is_buffered(protect: Protect, rules: Any, index: Any, echo_llm: Any) -> None:
    guarded = GuardedQueryEngine(
        engine(index, echo_llm, streaming=True), output_stage=rules.block(), protect=protect
    )
    result = guarded.query("bananas")
    assert isinstance(result, StreamingResponse)
    assert list(result.response_gen) == ["BLOCKED"]  # no unchecked token left


def test_streaming_input_override_answers_with_a_stream(protect: Protect, rules: Any, index: Any) -> None:
    from llama_index.core.llms import MockLLM

    guarded = GuardedQueryEngine(
        engine(index, MockLLM(), streaming=True), input_stage=rules.block("NO"), protect=protect
    )
    result = guarded.query("secret please")
    assert isinstance(result, StreamingResponse)
    assert "".join(result.response_gen) == "NO"


async def test_async_query(protect: Protect, rules: Any, index: Any, echo_llm: Any) -> None:
    guarded = GuardedQueryEngine(
        engine(index, echo_llm), input_stage=rules.block("IN"), output_stage=rules.mask(), protect=protect
    )
    blocked = await guarded.aquery("secret?")
    assert str(blocked) == "IN"
    result = await guarded.aquery("bananas")
    assert "<SECRET>-line" in str(result)


async def test_async_streaming(protect: Protect, rules: Any, index: Any, echo_llm: Any) -> None:
    guarded = GuardedQueryEngine(
        engine(index, echo_llm, streaming=True), output_stage=rules.block(), protect=protect
    )
    result = await guarded.aquery("bananas")
    assert isinstance(result, AsyncStreamingResponse)
    assert [t async for t in result.async_response_gen()] == ["BLOCKED"]
    blocked = await GuardedQueryEngine(
        engine(index, echo_llm, streaming=True), input_stage=rules.block("NO"), protect=protect
    ).aquery("secret")
    assert isinstance(blocked, AsyncStreamingResponse)
    assert [t async for t in blocked.async_response_gen()] == ["NO"]


def test_shadow_reports_without_changing(protect: Protect, rules: Any) -> None:
    guarded = GuardedQueryEngine(FakeEngine(), input_stage=rules.block(), protect=protect, shadow=True)
    result = guarded.query("secret")
    assert str(result) == "fine answer"
    decision = decisions_of(result)["input"]
    assert decision.triggered and decision.shadow and not decision.applied
    assert decision.shadow_action_result is not None
    assert decision.shadow_action_result.value == "BLOCKED"


def test_stored_stage_paused_and_updated_without_restart(protect: Protect, rules: Any) -> None:
    protect.create_stage("qa-in", stage_type="central", prioritized_rulesets=rules.block("V1"))
    inner = FakeEngine()
    guarded = GuardedQueryEngine(inner, input_stage="qa-in", protect=protect)
    assert str(guarded.query("secret")) == "V1"

    protect.update_stage("qa-in", prioritized_rulesets=rules.block("V2"))
    assert str(guarded.query("secret")) == "V2"  # the new version applies to the same guard

    protect.pause_stage("qa-in")
    result = guarded.query("secret")
    assert str(result) == "fine answer"
    assert decisions_of(result)["input"].status is ExecutionStatus.paused

    protect.resume_stage("qa-in")
    pinned = GuardedQueryEngine(inner, input_stage=StageRef("qa-in", version=1), protect=protect)
    assert str(pinned.query("secret")) == "V1"


def test_local_stage_with_rulesets(protect: Protect, rules: Any) -> None:
    protect.create_stage("qa-local")
    guarded = GuardedQueryEngine(
        FakeEngine(), "qa-local", prioritized_rulesets=rules.block("LOCAL"), protect=protect
    )
    assert str(guarded.query("secret")) == "LOCAL"
    assert decisions_of(guarded.query("secret"))["input"].stage_metadata.stage_name == "qa-local"


def test_fail_policy_answers_for_a_broken_scorer(protect: Protect, metric: Any) -> None:
    def broken(payload: Any) -> float:
        raise RuntimeError("model down")

    metric("li_broken", broken, kind="score")
    stage = [{"rules": [{"metric": "li_broken", "operator": "gt", "target_value": 0.5}]}]
    closed = GuardedQueryEngine(FakeEngine(), input_stage=stage, protect=protect, fail_policy="fail_closed")
    result = closed.query("hi")
    assert decisions_of(result)["input"].failure is not None
    assert str(result) != "fine answer"  # blocked with the fail-closed message
    opened = GuardedQueryEngine(FakeEngine(), input_stage=stage, protect=protect, fail_policy="fail_open")
    assert str(opened.query("hi")) == "fine answer"


def test_programming_errors_raise(protect: Protect) -> None:
    with pytest.raises(ValueError, match="give a stage"):
        GuardedQueryEngine(FakeEngine(), protect=protect)
    guarded = GuardedQueryEngine(FakeEngine(), input_stage="missing", protect=protect)
    with pytest.raises(StageNotFoundError):
        guarded.query("hi")


def test_decisions_are_dispatched(protect: Protect, rules: Any, events: list[Any]) -> None:
    GuardedQueryEngine(FakeEngine(), input_stage=rules.block(), protect=protect).query("secret")
    (decision,) = [e for e in events if isinstance(e, GuardDecisionEvent)]
    assert (decision.component, decision.hook, decision.status, decision.applied) == (
        "query_engine",
        "input",
        "triggered",
        True,
    )


def test_builtin_pii_redacts_query(protect: Protect, builtin: Any) -> None:
    builtin("pii")
    inner = FakeEngine()
    stage = [
        {
            "rules": [{"metric": "input_pii", "operator": "contains", "target_value": "ssn"}],
            "action": {"type": "REDACT"},
        }
    ]
    GuardedQueryEngine(inner, input_stage=stage, protect=protect).query("my SSN is 123-45-6789")
    assert inner.queries == ["my SSN is <SSN>"]


def test_prompts_reach_the_inner_engine(protect: Protect, rules: Any, index: Any, echo_llm: Any) -> None:
    guarded = GuardedQueryEngine(engine(index, echo_llm), rules.block(), protect=protect)
    assert any(key.startswith("inner:") for key in guarded.get_prompts())


def test_default_protect_is_looked_up_per_call(protect: Protect, rules: Any) -> None:
    from stageguard import set_default_protect

    guarded = GuardedQueryEngine(FakeEngine(), input_stage=rules.block("DEFAULT"))
    set_default_protect(protect)
    try:
        assert str(guarded.query("secret")) == "DEFAULT"
    finally:
        set_default_protect(None)


def test_override_drops_node_metadata_redaction_keeps_it(
    protect: Protect, rules: Any, index: Any, echo_llm: Any
) -> None:
    plain = engine(index, echo_llm).query("bananas")
    node_ids = {n.node.node_id for n in plain.source_nodes}
    assert node_ids and node_ids <= set(plain.metadata or {})  # the engine keys node metadata by id
    blocked = GuardedQueryEngine(engine(index, echo_llm), output_stage=rules.block("NOPE"), protect=protect)
    result = blocked.query("bananas")
    assert str(result) == "NOPE" and result.source_nodes == []
    assert set(result.metadata or {}) == {"stageguard"}  # nothing left of the blocked answer's sources
    masked = GuardedQueryEngine(engine(index, echo_llm), output_stage=rules.mask(), protect=protect)
    result = masked.query("bananas")
    assert node_ids <= set(result.metadata or {})


def test_stage_ref_is_the_core_one(protect: Protect, rules: Any) -> None:
    import stageguard
    from stageguard import llama_index

    assert llama_index.StageRef is stageguard.StageRef
    inner = FakeEngine()
    ref = StageRef(rulesets=tuple(rules.block("REF")))
    assert str(GuardedQueryEngine(inner, input_stage=ref, protect=protect).query("secret")) == "REF"

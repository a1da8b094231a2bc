"""Drop-in migration from Galileo: galileo_core objects, GalileoMetrics, the SDK's defaults and env vars.

Each test names the README "Coming from Galileo" point it proves.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

import stageguard as sg
from stageguard import ExecutionStatus, InvalidRequestError, Protect, StageType

g_payload = pytest.importorskip("galileo_core.schemas.protect.payload")
g_rule = pytest.importorskip("galileo_core.schemas.protect.rule")
g_ruleset = pytest.importorskip("galileo_core.schemas.protect.ruleset")
g_action = pytest.importorskip("galileo_core.schemas.protect.action")
g_metrics = pytest.importorskip("galileo_core.schemas.shared.scorers.galileo_metrics")

GPayload, GRule, GOp, GRuleset = g_payload.Payload, g_rule.Rule, g_rule.RuleOperator, g_ruleset.Ruleset


@pytest.fixture
def score(metric: Callable[..., str]) -> str:
    return metric("dropin_score", lambda p: 0.9 if "bad" in (p.input or "") else 0.1)


def _block(metric: str, text: str) -> list[Any]:
    """Galileo's own rulesets (galileo_core objects)."""
    return [
        GRuleset(
            rules=[GRule(metric=metric, operator=GOp.gt, target_value=0.5)],
            action=g_action.OverrideAction(choices=[text]),
        )
    ]


# -- environment: project and stage variables, as the SDK reads them


def test_env_project_change_is_honoured_by_invoke(
    api: Protect, score: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: the stage cache key was built before the environment's project was read."""
    for project, text in (("A", "from A"), ("B", "from B")):
        sg.create_protect_stage(
            project_name=project, name="guard", stage_type="central", prioritized_rulesets=_block(score, text)
        )
    monkeypatch.setenv("GALILEO_PROJECT", "A")
    assert sg.invoke_protect(GPayload(input="bad"), stage_name="guard").text == "from A"
    monkeypatch.setenv("GALILEO_PROJECT", "B")
    stage = sg.get_protect_stage(stage_name="guard")
    response = sg.invoke_protect(GPayload(input="bad"), stage_name="guard")
    assert stage is not None and response.stage_metadata is not None
    assert response.stage_metadata.project_id == stage.project_id
    assert response.text == "from B"


def test_env_stage_variables(api: Protect, score: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """GALILEO_STAGE_NAME / _ID / _VERSION fill the stage when the call doesn't name one, as in the SDK."""
    stage = sg.create_protect_stage(
        name="guard", stage_type="central", prioritized_rulesets=_block(score, "v1")
    )
    sg.update_protect_stage(stage_name="guard", prioritized_rulesets=_block(score, "v2"))
    monkeypatch.setenv("GALILEO_STAGE_NAME", "guard")
    assert sg.invoke_protect(GPayload(input="bad")).text == "v2"
    monkeypatch.setenv("GALILEO_STAGE_VERSION", "1")
    assert sg.invoke_protect(GPayload(input="bad")).text == "v1"
    assert sg.invoke_protect(GPayload(input="bad"), stage_version=2).text == "v2"  # the argument wins
    monkeypatch.delenv("GALILEO_STAGE_NAME")
    monkeypatch.setenv("GALILEO_STAGE_ID", stage.id)
    response = sg.invoke_protect(GPayload(input="bad"))
    assert response.text == "v1" and response.stage_metadata is not None
    assert response.stage_metadata.stage_id == stage.id
    monkeypatch.setenv("GALILEO_STAGE_VERSION", "one")
    with pytest.raises(InvalidRequestError, match="GALILEO_STAGE_VERSION"):
        sg.invoke_protect(GPayload(input="bad"))


async def test_env_stage_variables_async(api: Protect, score: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sg.create_protect_stage(name="guard", stage_type="central", prioritized_rulesets=_block(score, "no"))
    monkeypatch.setenv("GALILEO_STAGE_NAME", "guard")
    assert (await sg.ainvoke_protect(GPayload(input="bad"))).text == "no"


# -- galileo_core objects (and any pydantic model or dict with the same fields) wherever ours are


class OtherPayload(BaseModel):  # some other library's model with Galileo's fields
    input: str | None = None
    output: str | None = None


def test_galileo_core_objects_through_the_functional_api(api: Protect, score: str) -> None:
    g_stage = pytest.importorskip("galileo_core.schemas.protect.stage")
    created = sg.create_protect_stage(
        name="guard", stage_type=g_stage.StageType.central, prioritized_rulesets=_block(score, "no")
    )
    assert created.type is StageType.central and created.version == 1
    updated = sg.update_protect_stage(stage_name="guard", prioritized_rulesets=_block(score, "still no"))
    assert updated.version == 2
    for payload in (GPayload(input="bad"), OtherPayload(input="bad"), {"input": "bad"}):
        assert sg.invoke_protect(payload, stage_name="guard").text == "still no"
    inline = sg.invoke_protect(GPayload(input="bad", output="out"), prioritized_rulesets=_block(score, "x"))
    assert inline.triggered and inline.text == "x"


def test_galileo_core_objects_through_protect_and_models(protect: Protect, score: str) -> None:
    rule = GRule(metric=score, operator=GOp.gt, target_value=0.5)
    ours = sg.Ruleset(rules=[rule], action=g_action.OverrideAction(choices=["o"]))
    assert ours.rules[0] == sg.Rule(metric=score, operator="gt", target_value=0.5)
    assert ours.action.type is sg.ActionType.OVERRIDE
    assert sg.Ruleset.model_validate(_block(score, "o")[0]) == ours
    request = sg.Request(payload=GPayload(output="bad"), prioritized_rulesets=_block(score, "o"))
    assert request.payload.output == "bad" and request.prioritized_rulesets == [ours]
    protect.create_stage("local-guard")
    assert protect.invoke(GPayload(input="bad"), _block(score, "o"), stage_name="local-guard").text == "o"


async def test_galileo_core_objects_async(protect: Protect, score: str) -> None:
    response = await protect.ainvoke(GPayload(input="bad"), _block(score, "a"))
    assert response.text == "a"


# -- GalileoMetrics


def test_galileo_metrics_enum_matches_the_sdk() -> None:
    theirs = {m.name: m.value for m in g_metrics.GalileoMetrics}
    assert {m.name: m.value for m in sg.GalileoMetrics} == theirs
    galileo = pytest.importorskip("galileo")
    assert {m.name for m in galileo.GalileoMetrics} == set(theirs)
    assert sg.GalileoMetrics.input_pii_luna.canonical == "input_pii"
    assert sg.GalileoMetrics.context_adherence.supported and not sg.GalileoMetrics.correctness.supported


def test_galileo_metrics_accepted_wherever_a_metric_name_is(protect: Protect) -> None:
    ours = sg.Rule(metric=sg.GalileoMetrics.input_pii, operator="contains", target_value="email")
    theirs = GRule(
        metric=g_metrics.GalileoMetrics.input_pii_luna, operator=GOp.contains, target_value="email"
    )
    assert ours.metric == "input_pii" and sg.Ruleset(rules=[theirs]).rules[0] == ours
    assert sg.get_metric(sg.GalileoMetrics.output_toxicity).name == "output_toxicity"
    assert sg.normalize_metric_name(sg.GalileoMetrics.prompt_injection_luna) == "prompt_injection"
    ruleset = sg.Ruleset(rules=[ours], action=sg.OverrideAction(choices=["no emails"]))
    assert protect.invoke("write to me at jane.doe@example.com", [ruleset]).text == "no emails"
    with pytest.raises(ValueError, match=r"unknown metric 'Correctness'"):
        sg.Rule(metric=sg.GalileoMetrics.correctness, operator="gt", target_value=0.5)


# -- the SDK's default timeout


def test_default_timeout_is_the_sdks() -> None:
    sdk_constants = pytest.importorskip("galileo.constants.protect")
    for function in (sg.invoke_protect, sg.ainvoke_protect, Protect.invoke, Protect.ainvoke):
        assert inspect.signature(function).parameters["timeout"].default == sdk_constants.TIMEOUT_SECS == 10


# -- stage kinds: central with rulesets, local without


def test_central_stage_invoked_with_rulesets_ignores_them(api: Protect, score: str) -> None:
    sg.create_protect_stage(name="guard", stage_type="central", prioritized_rulesets=_block(score, "stage"))
    response = sg.invoke_protect(
        GPayload(input="bad"), prioritized_rulesets=_block(score, "inline"), stage_name="guard"
    )
    assert response.text == "stage" and response.notes is not None
    assert "were ignored" in response.notes[0]
    assert "notes" in response.model_dump(mode="json")


def test_local_stage_invoked_without_rulesets_is_not_triggered(api: Protect, score: str) -> None:
    sg.create_protect_stage(name="local-guard")
    rulesets: list[Any] | None
    for rulesets in (None, []):  # None here; the SDK always sends []
        response = sg.invoke_protect(
            GPayload(input="bad"), prioritized_rulesets=rulesets, stage_name="local-guard"
        )
        assert response.status is ExecutionStatus.not_triggered and response.text == "bad"
        assert response.notes is not None and "nothing was checked" in response.notes[0]
    plain = sg.invoke_protect(
        GPayload(input="bad"), prioritized_rulesets=_block(score, "x"), stage_name="local-guard"
    )
    assert plain.notes is None


# -- metric spellings echoed


def test_rule_results_echo_the_callers_spelling(protect: Protect) -> None:
    rulesets = [
        GRuleset(rules=[GRule(metric="Input PII", operator=GOp.contains, target_value="email")]),
        GRuleset(rules=[GRule(metric="input_pii", operator=GOp.contains, target_value="email")]),
        GRuleset(rules=[GRule(metric=g_metrics.GalileoMetrics.input_pii_luna, operator=GOp.not_empty)]),
    ]
    response = protect.invoke(GPayload(input="mail jane.doe@example.com"), rulesets)
    results = [r.rule_results[0] for r in response.ruleset_results]
    assert [(r.metric, r.canonical_metric) for r in results] == [
        ("Input PII", "input_pii"),
        ("input_pii", None),
        ("Input PII (SLM)", "input_pii"),
    ]
    assert set(response.metric_results) == {"input_pii"}  # keyed by the canonical name
    assert response.ruleset_results[0].rules[0].metric == "input_pii"  # the rule as stageguard reads it
    dumped = response.model_dump(mode="json")["ruleset_results"][0]["rule_results"][0]
    assert dumped["metric"] == "Input PII" and dumped["canonical_metric"] == "input_pii"

"""Galileo's own galileo-core models and ours read each other's JSON."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stageguard import Engine, Payload, Request, Response, Rule, Ruleset, Stage, StageType

galileo_rule = pytest.importorskip("galileo_core.schemas.protect.rule")
galileo_ruleset = pytest.importorskip("galileo_core.schemas.protect.ruleset")
galileo_action = pytest.importorskip("galileo_core.schemas.protect.action")
galileo_request = pytest.importorskip("galileo_core.schemas.protect.request")
galileo_response = pytest.importorskip("galileo_core.schemas.protect.response")
galileo_stage = pytest.importorskip("galileo_core.schemas.protect.stage")
galileo_payload = pytest.importorskip("galileo_core.schemas.protect.payload")
galileo_sub = pytest.importorskip("galileo_core.schemas.protect.subscription_config")

GRule, GOp = galileo_rule.Rule, galileo_rule.RuleOperator


def _galileo_rulesets() -> list:
    return [
        galileo_ruleset.Ruleset(
            rules=[GRule(metric="Input Toxicity", operator=GOp.gt, target_value=0.1)],
            action=galileo_action.OverrideAction(
                choices=["Sorry."],
                subscriptions=[galileo_sub.SubscriptionConfig(url="https://hooks.example.com/protect")],
            ),
            description="toxicity",
        ),
        galileo_ruleset.Ruleset(
            rules=[GRule(metric="output_pii", operator=GOp.any, target_value=["ssn", "email"])]
        ),
        galileo_ruleset.Ruleset(rules=[GRule(metric="input_tone", operator=GOp.neq, target_value="neutral")]),
        galileo_ruleset.Ruleset(rules=[GRule(metric="pii", operator=GOp.not_empty)]),
        galileo_ruleset.Ruleset(rules=[GRule(metric="input_sexist", operator=GOp.gt, target_value=0.95)]),
    ]


def test_galileo_rulesets_load_into_ours_and_back() -> None:
    theirs = _galileo_rulesets()
    ours = [Ruleset.model_validate(r.model_dump(mode="json")) for r in theirs]
    assert [r.rules[0].metric for r in ours] == [
        "input_toxicity",
        "output_pii",
        "input_tone",
        "output_pii",
        "input_sexism",
    ]
    assert ours[0].action.type == "OVERRIDE" and ours[0].action.choices == ["Sorry."]
    assert str(ours[0].action.subscriptions[0].url) == "https://hooks.example.com/protect"
    assert ours[1].action.type == "PASSTHROUGH"
    back = [galileo_ruleset.Ruleset.model_validate(r.model_dump(mode="json")) for r in ours]
    assert [r.rules[0].operator for r in back] == [r.rules[0].operator for r in theirs]
    assert [r.rules[0].target_value for r in back] == [r.rules[0].target_value for r in theirs]
    assert back[0].action.choices == ["Sorry."]
    assert back[0].action.subscriptions[0].statuses == ["triggered"]


def test_galileo_request_loads_into_ours() -> None:
    request = galileo_request.Request(
        payload=galileo_payload.Payload(input="hello", output="world"),
        prioritized_rulesets=_galileo_rulesets(),
        project_name="p",
        stage_name="s",
        stage_version=3,
        timeout=10,
        metadata={"k": "v"},
    )
    ours = Request.model_validate(request.model_dump(mode="json"))
    assert ours.payload.input == "hello" and ours.stage_version == 3 and ours.timeout == 10
    assert ours.prioritized_rulesets is not None and len(ours.prioritized_rulesets) == 5
    # and ours into theirs (rulesets under Galileo's input alias)
    theirs = galileo_request.Request.model_validate(ours.model_dump(mode="json", exclude_none=True))
    assert len(theirs.rulesets) == 5 and theirs.payload.output == "world"


def test_our_response_loads_into_galileo(metric: Callable[..., str]) -> None:
    name = metric("compat_metric", lambda _p: 0.9)
    response = Engine().evaluate(
        Payload(input="hi"),
        [Ruleset(rules=[Rule(metric=name, operator="gt", target_value=0.5)])],
        metadata={"a": "b"},
    )
    data = response.model_dump(mode="json")
    theirs = galileo_response.Response.model_validate(data)
    assert theirs.status == "triggered" and theirs.text == "hi"
    assert data["ruleset_results"][0]["status"] == "TRIGGERED"
    assert data["metric_results"][name]["status"] == "SUCCESS"
    # and back again: statuses in any case
    assert Response.model_validate(data).status == "triggered"


def test_galileo_sdk_invoke_response_parses_ours(metric: Callable[..., str]) -> None:
    sdk = pytest.importorskip("galileo.resources.models.invoke_response")
    from stageguard import StageMetadata

    name = metric("compat_metric2", lambda _p: 0.9)
    meta = StageMetadata(
        project_id="5f0e9a3b-8a8e-4b8f-9a51-1f6f3c7f9c11",
        stage_id="6f0e9a3b-8a8e-4b8f-9a51-1f6f3c7f9c11",
        stage_name="s",
        stage_version=1,
        stage_type=StageType.central,
    )
    response = Engine().evaluate(
        Payload(input="hi"),
        [Ruleset(rules=[Rule(metric=name, operator="gt", target_value=0.5)])],
        stage_metadata=meta,
    )
    parsed = sdk.InvokeResponse.from_dict(response.model_dump(mode="json"))
    assert parsed.text == "hi" and parsed.stage_metadata.stage_name == "s"
    assert parsed.ruleset_results[0].rule_results[0].value == 0.9


def test_stage_json_matches_galileo_stage() -> None:
    stage = Stage(
        id="6f0e9a3b-8a8e-4b8f-9a51-1f6f3c7f9c11",
        name="s",
        project_id="5f0e9a3b-8a8e-4b8f-9a51-1f6f3c7f9c11",
        type=StageType.central,
        version=2,
        prioritized_rulesets=[Ruleset.model_validate(r.model_dump(mode="json")) for r in _galileo_rulesets()],
    )
    theirs = galileo_stage.StageWithRulesets.model_validate(stage.model_dump(mode="json"))
    assert theirs.type == "central" and len(theirs.rulesets) == 5
    ours = Stage.model_validate({**theirs.model_dump(mode="json"), "id": stage.id})
    assert ours.prioritized_rulesets == stage.prioritized_rulesets

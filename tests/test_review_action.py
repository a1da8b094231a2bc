"""``review: true`` on an OVERRIDE or REDACT action: stored, loadable by Galileo, flagged in the response."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from stageguard import (
    ActionResult,
    ActionType,
    Engine,
    FailPolicy,
    OverrideAction,
    PassthroughAction,
    Payload,
    Protect,
    RedactAction,
    Response,
    Rule,
    Ruleset,
)
from stageguard.rules import LENIENT, parse_rulesets

galileo_action = pytest.importorskip("galileo_core.schemas.protect.action")
galileo_ruleset = pytest.importorskip("galileo_core.schemas.protect.ruleset")
galileo_response = pytest.importorskip("galileo_core.schemas.protect.response")

RULES = [{"metric": "input_pii", "operator": "not_empty"}]
TEXT = "write to alice@example.com"


def _rulesets(action: dict[str, Any]) -> list[Ruleset]:
    return parse_rulesets([{"rules": RULES, "action": action}])


# -- the stage JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [{"type": "OVERRIDE", "choices": ["no"], "review": True}, {"type": "REDACT", "review": True}],
)
def test_review_round_trips_through_json(action: dict[str, Any]) -> None:
    rulesets = _rulesets(action)
    assert rulesets[0].action.review is True  # type: ignore[union-attr]
    data = json.loads(json.dumps([r.model_dump(mode="json") for r in rulesets]))
    assert data[0]["action"]["review"] is True
    assert parse_rulesets(data) == rulesets


def test_review_in_yaml() -> None:
    policy = yaml.safe_load(
        """
        rulesets:
          - rules: [{metric: input_pii, operator: any, target_value: [ssn]}]
            action: {type: override, choices: ["Held for review."], review: true}
          - rules: [{metric: input_pii, operator: not_empty}]
            action: {type: redact, strategy: pseudonym, review: yes}
        """
    )
    first, second = parse_rulesets(policy)
    assert isinstance(first.action, OverrideAction) and first.action.review
    assert isinstance(second.action, RedactAction) and second.action.review
    assert "review" in str(first)


def test_without_review_the_json_is_unchanged() -> None:
    assert OverrideAction(choices=["no"]).model_dump(mode="json") == {
        "subscriptions": [],
        "type": "OVERRIDE",
        "choices": ["no"],
    }
    assert "review" not in RedactAction().model_dump(mode="json")
    assert OverrideAction(choices=["no"], review=False) == OverrideAction(choices=["no"])


def test_galileo_loads_a_stage_with_review() -> None:
    """Galileo's own models ignore the extension key: the stage JSON stays loadable by Galileo."""
    ruleset = _rulesets({"type": "OVERRIDE", "choices": ["Held."], "review": True})[0]
    data = ruleset.model_dump(mode="json")
    theirs = galileo_ruleset.Ruleset.model_validate(data)
    assert theirs.action.choices == ["Held."]
    action = galileo_action.OverrideAction.model_validate(data["action"])
    assert action.type == "OVERRIDE" and list(action.choices) == ["Held."]


@pytest.mark.parametrize("review", [True, False])
def test_passthrough_refuses_review(review: bool) -> None:
    with pytest.raises(ValueError, match="PASSTHROUGH never changes the text, so there is nothing to review"):
        _rulesets({"type": "PASSTHROUGH", "review": review})
    with pytest.raises(ValueError, match="review"):
        PassthroughAction.model_validate({"review": True})


def test_stored_stages_with_review_on_a_passthrough_still_load() -> None:
    ruleset = Ruleset.model_validate(
        {"rules": RULES, "action": {"type": "PASSTHROUGH", "review": True}}, context=LENIENT
    )
    assert isinstance(ruleset.action, PassthroughAction)


def test_review_at_the_ruleset_level_says_where_it_belongs() -> None:
    with pytest.raises(ValueError, match="'review' belongs in the ruleset's action"):
        parse_rulesets([{"rules": RULES, "review": True}])


def test_review_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match="review"):
        _rulesets({"type": "OVERRIDE", "choices": ["no"], "review": "maybe"})


# -- the engine: the action still applies, the response flags review -----------------------------------


def test_override_with_review_still_applies_and_is_flagged(protect: Protect) -> None:
    response = protect.invoke(TEXT, _rulesets({"type": "OVERRIDE", "choices": ["Held."], "review": True}))
    assert response.text == "Held." and response.applied
    assert response.action_result.review and response.review_requested
    assert json.loads(response.model_dump_json())["action_result"]["review"] is True
    assert "OVERRIDE (review requested)" in str(response)


def test_redact_with_review_still_applies_and_is_flagged(protect: Protect) -> None:
    response = protect.invoke(TEXT, _rulesets({"type": "REDACT", "review": True}))
    assert response.text == "write to <EMAIL>"
    assert response.review_requested


def test_actions_without_review_are_not_flagged_and_json_is_as_before(protect: Protect) -> None:
    response = protect.invoke(TEXT, _rulesets({"type": "OVERRIDE", "choices": ["Held."]}))
    assert response.text == "Held." and not response.review_requested
    assert "review" not in response.model_dump_json()


def test_nothing_to_review_when_nothing_triggers_or_nothing_changes(
    protect: Protect, metric: Callable[..., str]
) -> None:
    rulesets = _rulesets({"type": "OVERRIDE", "choices": ["Held."], "review": True})
    calm = protect.invoke("hello there", rulesets)
    assert not calm.triggered and not calm.review_requested
    # a REDACT whose rule triggered without spans to mask changes nothing: no review
    name = metric("always_high", lambda _p: 0.9)
    spanless = [
        Ruleset(rules=[Rule(metric=name, operator="gt", target_value=0.5)], action=RedactAction(review=True))
    ]
    response = protect.invoke(TEXT, spanless)
    assert response.triggered and not response.applied and not response.review_requested


def test_shadow_mode_reports_review_without_requesting_it(protect: Protect) -> None:
    response = protect.invoke(
        TEXT, _rulesets({"type": "OVERRIDE", "choices": ["Held."], "review": True}), shadow=True
    )
    assert response.text == TEXT and not response.review_requested
    assert response.shadow_action_result is not None and response.shadow_action_result.review


def test_a_fail_closed_block_is_not_sent_for_review(metric: Callable[..., str]) -> None:
    def broken(_payload: Payload) -> float:
        raise RuntimeError("scorer down")

    name = metric("broken_scorer", broken)
    rulesets = [
        Ruleset(
            rules=[Rule(metric=name, operator="gt", target_value=0.5)],
            action=OverrideAction(choices=["Held."], review=True),
        )
    ]
    response = Engine().evaluate(Payload(input="x"), rulesets, fail_policy=FailPolicy.fail_closed)
    assert response.text == "Held." and response.applied
    assert not response.review_requested


async def test_async_invoke_flags_review_too(protect: Protect) -> None:
    response = await protect.ainvoke(TEXT, _rulesets({"type": "REDACT", "strategy": "mask", "review": True}))
    assert response.text == "write to *****@*******.***" and response.review_requested


def test_the_response_with_review_round_trips_and_galileo_reads_it(protect: Protect) -> None:
    response = protect.invoke(TEXT, _rulesets({"type": "OVERRIDE", "choices": ["Held."], "review": True}))
    data = json.loads(response.model_dump_json())
    assert Response.model_validate(data).review_requested
    theirs = galileo_response.Response.model_validate(data)
    assert theirs.text == "Held."
    assert ActionResult(type=ActionType.OVERRIDE, value="x").model_dump() == {
        "type": ActionType.OVERRIDE,
        "value": "x",
        "spans": [],
    }

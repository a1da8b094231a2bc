"""Unknown keys in rules, rulesets, actions, subscriptions and stages: a typo is an error with a
suggestion (never silently dropped), while the keys Galileo's own JSON carries keep loading."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from stageguard import InvalidRequestError, Protect, Ruleset, Stage, Subscription
from stageguard.errors import one_line
from stageguard.rules import LENIENT, parse_rulesets

RULE = {"metric": "input_toxicity", "operator": "gt", "target_value": 0.5}


def _error(data: Any, model: type[Ruleset] | type[Stage] | type[Subscription] = Ruleset) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return one_line(caught.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"rules": [RULE], "action": {"type": "OVERRIDE", "choices": ["no"], "subscripton": []}},
            "action.OVERRIDE: unknown key 'subscripton' in an action of type OVERRIDE; "
            "did you mean 'subscriptions'?",
        ),
        (
            {"rules": [RULE], "descripton": "toxic input"},
            "unknown key 'descripton' in a ruleset; did you mean 'description'?",
        ),
        (
            {"rules": [{**RULE, "operater": "gt"}]},
            "rules.0: unknown key 'operater' in a rule; did you mean 'operator'?",
        ),
        (
            {"rules": [RULE], "action": {"type": "OVERRIDE", "choice": ["no"]}},
            "action.OVERRIDE: unknown key 'choice' in an action of type OVERRIDE; did you mean 'choices'?",
        ),
        (
            {"rules": [RULE], "action": {"type": "PASSTHROUGH", "choices": ["no"]}},
            "action.PASSTHROUGH: unknown key 'choices' in an action of type PASSTHROUGH: "
            "only OVERRIDE actions take 'choices'",
        ),
        (
            {"rules": [RULE], "subscriptions": [{"url": "https://hooks.example.com/x"}]},
            "unknown key 'subscriptions' in a ruleset: 'subscriptions' belongs in the ruleset's action",
        ),
        (
            {
                "rules": [RULE],
                "action": {
                    "type": "PASSTHROUGH",
                    "subscriptions": [{"url": "https://hooks.example.com/x", "status": ["triggered"]}],
                },
            },
            "action.PASSTHROUGH.subscriptions.0: unknown key 'status' in a subscription; "
            "did you mean 'statuses'?",
        ),
    ],
)
def test_a_typo_is_rejected_with_a_suggestion(data: dict[str, Any], expected: str) -> None:
    assert _error(data).startswith(expected)


def test_a_stage_typo_is_rejected() -> None:
    message = _error({"id": "s", "name": "n", "project_id": "p", "pasued": True}, Stage)
    assert message == "unknown key 'pasued' in a stage; did you mean 'paused'?"


def test_a_policy_file_typo_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'prioritized_ruleset' .*'prioritized_rulesets'"):
        parse_rulesets({"prioritized_ruleset": [{"rules": [RULE]}]})
    # a stage's JSON (what `stageguard stages get` prints) is a valid file: its rulesets are taken
    stage = Stage(id="s", name="n", project_id="p", prioritized_rulesets=[Ruleset(rules=[RULE])])
    data = {**stage.model_dump(mode="json"), "created_by": str(uuid.uuid4())}
    assert parse_rulesets(data) == stage.prioritized_rulesets


def test_create_stage_reports_the_typo(protect: Protect) -> None:
    ruleset = {
        "rules": [RULE],
        "action": {"type": "OVERRIDE", "choices": ["no"], "subscripton": [{"url": "https://x.example"}]},
    }
    with pytest.raises(InvalidRequestError, match="did you mean 'subscriptions'") as caught:
        protect.create_stage("typo", stage_type="central", prioritized_rulesets=[ruleset])
    assert str(caught.value).startswith("prioritized_rulesets[0].action.OVERRIDE: unknown key 'subscripton'")
    assert protect.list_stages() == []  # nothing written


def test_galileo_json_still_loads() -> None:
    """Galileo's own models, dumped, carry only keys stageguard reads (or knows to accept)."""
    from galileo_core.schemas.protect.action import OverrideAction
    from galileo_core.schemas.protect.rule import Rule
    from galileo_core.schemas.protect.ruleset import Ruleset as GalileoRuleset
    from galileo_core.schemas.protect.stage import StageDB
    from galileo_core.schemas.protect.subscription_config import SubscriptionConfig

    galileo = GalileoRuleset(
        rules=[Rule(metric="input_toxicity", operator="gt", target_value=0.5)],
        action=OverrideAction(
            choices=["blocked"], subscriptions=[SubscriptionConfig(url="https://hooks.example.com/a")]
        ),
        description="toxic",
    )
    ruleset = Ruleset.model_validate(galileo.model_dump(mode="json"))
    assert str(ruleset.action.subscriptions[0].url) == "https://hooks.example.com/a"
    assert Ruleset.model_validate(galileo) == ruleset  # the object itself, too

    stage = StageDB(
        name="s", project_id=uuid.uuid4(), created_by=uuid.uuid4(), id=uuid.uuid4(), version=3
    ).model_dump(mode="json")
    assert Stage.model_validate({**stage, "rulesets": [galileo.model_dump(mode="json")]}).version == 3


def test_stored_json_loads_and_lenient_ignores_unknown_keys() -> None:
    stage = Stage(id="s", name="n", project_id="p", prioritized_rulesets=[Ruleset(rules=[RULE])])
    assert Stage.model_validate(stage.model_dump(mode="json")) == stage
    assert Stage.model_validate_json(stage.model_dump_json()) == stage
    # stored data (or a newer server's answer) always loads: LENIENT ignores keys it does not know
    newer = stage.model_dump(mode="json")
    newer["prioritized_rulesets"][0]["added_later"] = 1
    newer["added_later"] = 2
    assert Stage.model_validate(newer, context=LENIENT) == stage
    assert parse_rulesets(newer, lenient=True) == stage.prioritized_rulesets


def test_a_ruleset_without_action_says_it_is_passthrough(protect: Protect) -> None:
    stage = protect.create_stage("quiet", stage_type="central", prioritized_rulesets=[{"rules": [RULE]}])
    ruleset = stage.prioritized_rulesets[0]
    assert ruleset.action_summary.startswith("PASSTHROUGH: the decision is reported, the text is kept")
    assert "the default for a ruleset without an action" in ruleset.action_summary
    text = str(protect.require_stage("quiet"))
    assert text.splitlines() == [
        "stage 'quiet': central v1, active, fail_open",
        "  1. input_toxicity gt 0.5 -> PASSTHROUGH: the decision is reported, the text is kept "
        "(the default for a ruleset without an action)",
    ]

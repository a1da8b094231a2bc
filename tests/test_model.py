"""The rule/ruleset/stage model: wire format, catalogue checks and clear errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stageguard import (
    ExecutionStatus,
    OverrideAction,
    PassthroughAction,
    Payload,
    Request,
    Rule,
    RuleOperator,
    Ruleset,
    Subscription,
    get_metric,
    list_metrics,
    normalize_metric_name,
)
from stageguard.metrics import PII_CATEGORIES, TONE_LABELS, ValueKind
from stageguard.rules import LENIENT

SEED_METRICS = {
    "input_toxicity",
    "output_toxicity",
    "input_pii",
    "output_pii",
    "prompt_injection",
    "input_sexism",
    "output_sexism",
    "input_tone",
    "output_tone",
    "context_adherence",
    "completeness",
    "tool_error_rate",
    "tool_selection_quality",
    "action_advancement",
    "action_completion",
}


def test_catalogue_has_every_seed_metric() -> None:
    assert {spec.name for spec in list_metrics()} >= SEED_METRICS


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Input Toxicity", "input_toxicity"),
        ("Input Toxicity (SLM)", "input_toxicity"),
        ("input_toxicity_luna", "input_toxicity"),
        ("toxicity", "output_toxicity"),
        ("pii", "output_pii"),
        ("input_sexist", "input_sexism"),
        ("sexist", "output_sexism"),
        ("Output Sexism", "output_sexism"),
        ("Context Adherence", "context_adherence"),
        ("Tool Error Rate", "tool_error_rate"),
        ("Tool Selection Quality (SLM)", "tool_selection_quality"),
        ("PROMPT-INJECTION", "prompt_injection"),
        ("groundedness", "context_adherence"),
    ],
)
def test_galileo_spellings_normalise(spelling: str, canonical: str) -> None:
    assert normalize_metric_name(spelling) == canonical
    operator, target = ("gt", 0.5) if get_metric(canonical).kind is ValueKind.score else ("not_empty", None)
    assert Rule(metric=spelling, operator=operator, target_value=target).metric == canonical


def test_catalogue_describes_kinds_labels_and_fields() -> None:
    pii = get_metric("input_pii")
    assert (
        pii.kind is ValueKind.categories
        and pii.labels == PII_CATEGORIES
        and pii.required_fields == ("input",)
    )
    tone = get_metric("output_tone")
    assert tone.kind is ValueKind.category and tone.labels == TONE_LABELS
    assert tone.operators == {RuleOperator.eq, RuleOperator.neq}
    adherence = get_metric("context_adherence")  # the seed's fields; the context may come from the input
    assert adherence.required_fields == ("input", "output")
    assert adherence.alternatives == (("output", "context"),) and "context" in adherence.fields_used


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"metric": "input_tone", "operator": "gt", "target_value": 0.5}, "does not support operator 'gt'"),
        (
            {"metric": "input_pii", "operator": "any", "target_value": ["ssn", "dna"]},
            "unknown categories ['dna']",
        ),
        ({"metric": "input_toxicity", "operator": "gt", "target_value": None}, "needs a number"),
        ({"metric": "input_toxicity", "operator": "gt", "target_value": "0.5"}, "needs a number"),
        ({"metric": "input_toxicity", "operator": "gt", "target_value": 1.5}, "score in [0, 1]"),
        (
            {"metric": "input_toxicity", "operator": "contains", "target_value": "x"},
            "does not support operator",
        ),
        ({"metric": "input_tone", "operator": "eq", "target_value": "grumpy"}, "unknown categories"),
        ({"metric": "output_pii", "operator": "contains", "target_value": ["ssn"]}, "single category"),
        ({"metric": "output_pii", "operator": "empty", "target_value": "ssn"}, "takes no target_value"),
        (
            {"metric": "no_such_metric", "operator": "gt", "target_value": 0.5},
            "unknown metric 'no_such_metric'",
        ),
        ({"metric": "prompt_injection", "operator": "bigger", "target_value": 0.5}, "operator"),
    ],
)
def test_bad_rules_fail_at_construction_with_a_clear_error(rule: dict, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Rule.model_validate(rule)
    assert message in str(info.value)


def test_error_names_the_metric_and_what_is_allowed() -> None:
    with pytest.raises(ValidationError) as info:
        Rule(metric="input_tone", operator="gt", target_value=0.5)
    text = str(info.value)
    assert "input_tone" in text and "allowed operators: eq, neq" in text


def test_empty_operators_need_no_target() -> None:
    rule = Rule.model_validate({"metric": "output_pii", "operator": "not_empty"})
    assert rule.target_value is None


def test_single_category_for_any_becomes_a_list() -> None:
    assert Rule(metric="input_pii", operator="any", target_value="ssn").target_value == ["ssn"]


def test_unknown_metric_loads_leniently_for_stored_stages() -> None:
    rule = Rule.model_validate(
        {"metric": "somebody_elses_metric", "operator": "gt", "target_value": 3}, context=LENIENT
    )
    assert rule.metric == "somebody_elses_metric"


def test_ruleset_wire_format() -> None:
    ruleset = Ruleset.model_validate(
        {
            "rules": [{"metric": "input_pii", "operator": "contains", "target_value": "ssn"}],
            "action": {
                "type": "override",
                "choices": ["no"],
                "subscriptions": [{"url": "http://hooks.test/x"}],
            },
        }
    )
    data = ruleset.model_dump(mode="json")
    assert data["action"]["type"] == "OVERRIDE"
    assert data["action"]["subscriptions"][0]["statuses"] == ["triggered"]
    assert Ruleset(rules=ruleset.rules).action == PassthroughAction()
    assert Ruleset.model_validate({"rules": ruleset.rules, "action": None}).action.type == "PASSTHROUGH"


def test_override_needs_a_choice_and_ruleset_a_rule() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        OverrideAction(choices=[])
    with pytest.raises(ValidationError, match="at least 1"):
        Ruleset(rules=[])


def test_statuses_in_any_case() -> None:
    sub = Subscription.model_validate({"url": "http://x.test", "statuses": ["TRIGGERED", "Not_Triggered"]})
    assert sub.statuses == [ExecutionStatus.triggered, ExecutionStatus.not_triggered]
    assert ExecutionStatus("ERROR") is ExecutionStatus.error


def test_empty_payload_is_rejected_clearly() -> None:
    with pytest.raises(ValidationError, match="payload is empty"):
        Payload()
    with pytest.raises(ValidationError, match="payload is empty"):
        Payload(input="", output="", context=["only context"])
    assert Payload(output="x").text == "x"
    assert Payload(input="q", output="a").text == "a"


def test_payload_extensions() -> None:
    payload = Payload.model_validate(
        {
            "input": "What's the weather in Paris?",
            "context": "one document",
            "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
            "tools": [{"name": "weather", "parameters": {"type": "object", "required": ["city"]}}],
            "tool_calls": [{"name": "weather", "arguments": {"city": "Paris"}, "error": "HTTP 503"}],
        }
    )
    assert payload.context == ["one document"]
    assert payload.tool_calls is not None and payload.tool_calls[0].failed
    assert "context" not in Payload(input="x").model_dump(exclude_none=True)


def test_request_accepts_galileo_and_stageguard_names() -> None:
    body = {
        "payload": {"input": "x"},
        "rulesets": [{"rules": [{"metric": "pii", "operator": "not_empty"}]}],
        "stage_name": "s",
        "project_name": "p",
    }
    request = Request.model_validate(body)
    assert (
        request.prioritized_rulesets is not None
        and request.prioritized_rulesets[0].rules[0].metric == "output_pii"
    )
    body["prioritized_rulesets"] = body.pop("rulesets")
    assert Request.model_validate(body).prioritized_rulesets == request.prioritized_rulesets

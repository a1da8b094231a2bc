"""Every operator against every value kind, through real rules and the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stageguard import Engine, ExecutionStatus, Payload, Rule, Ruleset
from stageguard.operators import RuleOperator, compare

# (operator, value, target, expected)
NUMBER_CASES = [
    ("gt", 0.6, 0.5, True),
    ("gt", 0.5, 0.5, False),
    ("gt", 0.4, 0.5, False),
    ("gte", 0.5, 0.5, True),
    ("gte", 0.49, 0.5, False),
    ("lt", 0.4, 0.5, True),
    ("lt", 0.5, 0.5, False),
    ("lte", 0.5, 0.5, True),
    ("lte", 0.51, 0.5, False),
    ("eq", 0.5, 0.5, True),
    ("eq", 0.4, 0.5, False),
    ("eq", 1, 1.0, True),
    ("neq", 0.4, 0.5, True),
    ("neq", 0.5, 0.5, False),
]
CATEGORY_CASES = [
    ("eq", "anger", "anger", True),
    ("eq", "joy", "anger", False),
    ("neq", "joy", "neutral", True),
    ("neq", "neutral", "neutral", False),
    ("any", "joy", ["joy", "love"], True),
    ("any", "fear", ["joy", "love"], False),
]
CATEGORIES_CASES = [
    ("contains", ["ssn", "email"], "ssn", True),
    ("contains", ["email"], "ssn", False),
    ("all", ["ssn", "email", "name"], ["ssn", "email"], True),
    ("all", ["ssn"], ["ssn", "email"], False),
    ("any", ["name"], ["ssn", "name"], True),
    ("any", ["email"], ["ssn", "name"], False),
    ("empty", [], None, True),
    ("empty", ["ssn"], None, False),
    ("not_empty", ["ssn"], None, True),
    ("not_empty", [], None, False),
    ("eq", ["ssn"], "ssn", True),
    ("eq", ["ssn", "email"], "ssn", False),
    ("eq", [], "ssn", False),
    ("neq", ["email"], "ssn", True),
    ("neq", ["ssn"], "ssn", False),
]


@pytest.mark.parametrize(
    ("operator", "value", "target", "expected"), NUMBER_CASES + CATEGORY_CASES + CATEGORIES_CASES
)
def test_compare(operator: str, value: Any, target: Any, expected: bool) -> None:
    assert compare(RuleOperator(operator), value, target) is expected


@pytest.mark.parametrize("operator", list(RuleOperator))
def test_missing_value_never_triggers(operator: RuleOperator) -> None:
    assert compare(operator, None, 0.5) is False
    assert compare(operator, None, None) is False


def _run(
    metric: Callable[..., str], kind: str, value: Any, operator: str, target: Any, **kw: Any
) -> ExecutionStatus:
    name = metric(f"op_{kind}", lambda _payload: value, kind=kind, **kw)
    ruleset = Ruleset(rules=[Rule(metric=name, operator=operator, target_value=target)])
    return Engine().evaluate(Payload(input="x"), [ruleset]).status


@pytest.mark.parametrize(("operator", "value", "target", "expected"), NUMBER_CASES)
def test_score_metric_through_engine(
    metric: Callable[..., str], operator: str, value: Any, target: Any, expected: bool
) -> None:
    status = _run(metric, "score", value, operator, target)
    assert status is (ExecutionStatus.triggered if expected else ExecutionStatus.not_triggered)


@pytest.mark.parametrize(("operator", "value", "target", "expected"), CATEGORY_CASES)
def test_category_metric_through_engine(
    metric: Callable[..., str], operator: str, value: Any, target: Any, expected: bool
) -> None:
    status = _run(metric, "category", value, operator, target)
    assert status is (ExecutionStatus.triggered if expected else ExecutionStatus.not_triggered)


@pytest.mark.parametrize(("operator", "value", "target", "expected"), CATEGORIES_CASES)
def test_categories_metric_through_engine(
    metric: Callable[..., str], operator: str, value: Any, target: Any, expected: bool
) -> None:
    status = _run(metric, "categories", value, operator, target)
    assert status is (ExecutionStatus.triggered if expected else ExecutionStatus.not_triggered)


def test_number_kind_allows_any_number(metric: Callable[..., str]) -> None:
    assert _run(metric, "number", 250.0, "gt", 120) is ExecutionStatus.triggered


def test_custom_labels_are_enforced(metric: Callable[..., str]) -> None:
    name = metric("lang", lambda _p: "fr", kind="category", labels=["en", "fr"])
    with pytest.raises(ValueError, match="unknown categories"):
        Rule(metric=name, operator="eq", target_value="de")

"""Rule operators and how they compare a metric value with a target."""

from __future__ import annotations

from enum import Enum
from typing import Any


class RuleOperator(str, Enum):
    """Galileo's rule operators (wire values)."""

    gt = "gt"
    lt = "lt"
    gte = "gte"
    lte = "lte"
    eq = "eq"
    neq = "neq"
    contains = "contains"
    all = "all"
    any = "any"
    empty = "empty"
    not_empty = "not_empty"


def compare(operator: RuleOperator, value: Any, target: Any) -> bool:
    """Whether ``value <operator> target`` holds. A missing value never triggers.

    Numbers use ``gt lt gte lte eq neq``; a single category ``eq neq any`` (``any``: the value is one of
    the targets); a list of categories ``contains all any empty not_empty`` and ``eq``/``neq``, which
    compare the set of categories found with the single target (``eq "ssn"``: SSN and nothing else).
    """
    if value is None:
        return False
    if isinstance(value, (list, tuple, set, frozenset)):
        found = set(value)
        match operator:
            case RuleOperator.contains:
                return target in found
            case RuleOperator.all:
                return all(t in found for t in target)
            case RuleOperator.any:
                return any(t in found for t in target)
            case RuleOperator.empty:
                return not found
            case RuleOperator.not_empty:
                return bool(found)
            case RuleOperator.eq:
                return found == {target}
            case RuleOperator.neq:
                return found != {target}
        return False
    if isinstance(value, str):
        match operator:
            case RuleOperator.eq:
                return bool(value == target)
            case RuleOperator.neq:
                return bool(value != target)
            case RuleOperator.any:
                return value in target
        return False
    if isinstance(value, (int, float)):
        match operator:
            case RuleOperator.gt:
                return bool(value > target)
            case RuleOperator.lt:
                return bool(value < target)
            case RuleOperator.gte:
                return bool(value >= target)
            case RuleOperator.lte:
                return bool(value <= target)
            case RuleOperator.eq:
                return bool(value == target)
            case RuleOperator.neq:
                return bool(value != target)
    return False

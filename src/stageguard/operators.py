"""Rule operators and how they compare a metric value with a target."""

from __future__ import annotations

from collections.abc import Callable
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
    return comparison(operator)(value, target)


Test = Callable[[Any, Any], bool]


def comparison(operator: RuleOperator) -> Test:
    """The function ``compare(operator, ...)`` applies, resolved once per rule by the engine."""
    return _COMPARISONS.get(operator, _never)


def _never(value: Any, target: Any) -> bool:
    return False


def _by_kind(*, categories: Test = _never, category: Test = _never, number: Test = _never) -> Test:
    """A comparison testing a number, one category or a list of categories (as the set of them) with
    the given function; any other value (None included) never triggers."""

    def test(value: Any, target: Any) -> bool:
        if isinstance(value, (int, float)):
            return number(value, target)
        if isinstance(value, str):
            return category(value, target)
        if isinstance(value, (list, tuple, set, frozenset)):
            return categories(set(value), target)
        return False

    return test


def _equal(value: Any, target: Any) -> bool:
    return bool(value == target)


def _unequal(value: Any, target: Any) -> bool:
    return bool(value != target)


_COMPARISONS: dict[RuleOperator, Test] = {
    RuleOperator.gt: _by_kind(number=lambda v, t: bool(v > t)),
    RuleOperator.lt: _by_kind(number=lambda v, t: bool(v < t)),
    RuleOperator.gte: _by_kind(number=lambda v, t: bool(v >= t)),
    RuleOperator.lte: _by_kind(number=lambda v, t: bool(v <= t)),
    RuleOperator.eq: _by_kind(categories=lambda f, t: f == {t}, category=_equal, number=_equal),
    RuleOperator.neq: _by_kind(categories=lambda f, t: f != {t}, category=_unequal, number=_unequal),
    RuleOperator.contains: _by_kind(categories=lambda f, t: t in f),
    RuleOperator.all: _by_kind(categories=lambda f, t: all(x in f for x in t)),
    RuleOperator.any: _by_kind(categories=lambda f, t: any(x in f for x in t), category=lambda v, t: v in t),
    RuleOperator.empty: _by_kind(categories=lambda f, t: not f),
    RuleOperator.not_empty: _by_kind(categories=lambda f, t: bool(f)),
}

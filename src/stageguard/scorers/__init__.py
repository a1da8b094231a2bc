"""Scorers compute metric values. Built-in ones load lazily; plug your own per metric."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported from their module on first access, like the package's (see ``stageguard/__init__``).
if TYPE_CHECKING:
    from .base import FunctionScorer, MetricValue, Scorer, ScoreResult, Span, TextScorer, redact
    from .registry import BUILTIN_SCORERS, ScorerRegistry, default_registry, register_metric, warm_up

_LAZY: dict[str, str] = {
    "BUILTIN_SCORERS": "registry",
    "FunctionScorer": "base",
    "MetricValue": "base",
    "ScoreResult": "base",
    "Scorer": "base",
    "ScorerRegistry": "registry",
    "Span": "base",
    "TextScorer": "base",
    "default_registry": "registry",
    "redact": "base",
    "register_metric": "registry",
    "warm_up": "registry",
}

__all__ = [
    "BUILTIN_SCORERS",
    "FunctionScorer",
    "MetricValue",
    "ScoreResult",
    "Scorer",
    "ScorerRegistry",
    "Span",
    "TextScorer",
    "default_registry",
    "redact",
    "register_metric",
    "warm_up",
]

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Scorers compute metric values. Built-in ones load lazily; plug your own per metric."""

from .base import FunctionScorer, MetricValue, Scorer, ScoreResult, Span, TextScorer, redact
from .registry import BUILTIN_SCORERS, ScorerRegistry, default_registry, register_metric

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
]

"""The metric catalogue: one canonical name per metric, its value kind, operators, targets and inputs.

Rules are checked against this catalogue when they are built, so a rule that can never work fails at
construction with an error that says what is allowed (Galileo accepts any string and fails late).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .errors import UnknownMetricError
from .operators import RuleOperator


class ValueKind(str, Enum):
    """The shape of a metric's value."""

    score = "score"  # a float in [0, 1]
    number = "number"  # any float (custom metrics only)
    category = "category"  # one label
    categories = "categories"  # a list of labels


NUMERIC_OPERATORS = frozenset({RuleOperator.gt, RuleOperator.lt, RuleOperator.gte, RuleOperator.lte})
KIND_OPERATORS: dict[ValueKind, frozenset[RuleOperator]] = {
    ValueKind.score: NUMERIC_OPERATORS | {RuleOperator.eq, RuleOperator.neq},
    ValueKind.number: NUMERIC_OPERATORS | {RuleOperator.eq, RuleOperator.neq},
    ValueKind.category: frozenset({RuleOperator.eq, RuleOperator.neq, RuleOperator.any}),
    ValueKind.categories: frozenset(
        {
            RuleOperator.contains,
            RuleOperator.all,
            RuleOperator.any,
            RuleOperator.eq,
            RuleOperator.neq,
            RuleOperator.empty,
            RuleOperator.not_empty,
        }
    ),
}

PII_CATEGORIES: tuple[str, ...] = (
    "account_info",
    "address",
    "credit_card_info",
    "date_of_birth",
    "email",
    "name",
    "network_info",
    "password",
    "phone_number",
    "ssn",
    "username",
)
TONE_LABELS: tuple[str, ...] = (
    "anger",
    "annoyance",
    "confusion",
    "fear",
    "joy",
    "love",
    "sadness",
    "surprise",
    "neutral",
)


@dataclass(frozen=True)
class MetricSpec:
    """What the catalogue knows about one metric."""

    name: str
    kind: ValueKind
    operators: frozenset[RuleOperator]
    required_fields: tuple[str, ...] = ()
    labels: tuple[str, ...] | None = None  # allowed targets for category metrics; None = any string
    description: str = ""
    custom: bool = False
    # Other sets of payload fields that are also enough, e.g. ``("output", "context")`` for
    # ``context_adherence``, whose seed fields are ``input`` and ``output`` (the input holds the context).
    alternatives: tuple[tuple[str, ...], ...] = ()

    @property
    def fields_used(self) -> frozenset[str]:
        """Every payload field the metric reads when present: the required fields and the alternatives'."""
        return frozenset(self.required_fields).union(*self.alternatives)

    def missing(self, has: Callable[[str], bool]) -> list[str]:
        """The required fields ``has`` lacks, or ``[]`` when they or one set of ``alternatives`` are there."""
        lacking = [f for f in self.required_fields if not has(f)]
        if lacking and any(all(has(f) for f in option) for option in self.alternatives):
            return []
        return lacking


def _text_metric(name: str, kind: ValueKind, field_: str, description: str, **kw: object) -> MetricSpec:
    ops = kw.pop("operators", NUMERIC_OPERATORS if kind is ValueKind.score else KIND_OPERATORS[kind])
    return MetricSpec(name, kind, ops, (field_,), description=description, **kw)  # type: ignore[arg-type]


_PII_OPS = KIND_OPERATORS[ValueKind.categories]
_TONE_OPS = frozenset({RuleOperator.eq, RuleOperator.neq})

BUILTIN_METRICS: tuple[MetricSpec, ...] = (
    _text_metric("input_toxicity", ValueKind.score, "input", "Toxic or abusive language in the input."),
    _text_metric("output_toxicity", ValueKind.score, "output", "Toxic or abusive language in the output."),
    _text_metric("input_sexism", ValueKind.score, "input", "Sexist language in the input."),
    _text_metric("output_sexism", ValueKind.score, "output", "Sexist language in the output."),
    _text_metric("prompt_injection", ValueKind.score, "input", "Prompt injection or jailbreak attempt."),
    _text_metric(
        "input_pii",
        ValueKind.categories,
        "input",
        "PII categories in the input.",
        labels=PII_CATEGORIES,
        operators=_PII_OPS,
    ),
    _text_metric(
        "output_pii",
        ValueKind.categories,
        "output",
        "PII categories in the output.",
        labels=PII_CATEGORIES,
        operators=_PII_OPS,
    ),
    _text_metric(
        "input_tone",
        ValueKind.category,
        "input",
        "Primary tone of the input.",
        labels=TONE_LABELS,
        operators=_TONE_OPS,
    ),
    _text_metric(
        "output_tone",
        ValueKind.category,
        "output",
        "Primary tone of the output.",
        labels=TONE_LABELS,
        operators=_TONE_OPS,
    ),
    # The seed's fields are ``input`` and ``output`` for the RAG and agent metrics: without ``context`` the
    # RAG metrics read it from the input (the prompt), without ``tool_calls`` the agent metrics read them from
    # a transcript serialised in the input/output (see docs/rag_agent.md, "Metrics from input and output").
    MetricSpec(
        "context_adherence",
        ValueKind.score,
        NUMERIC_OPERATORS,
        ("input", "output"),
        description="How well the output is supported by the retrieved context (given, or in the input).",
        alternatives=(("output", "context"),),
    ),
    MetricSpec(
        "completeness",
        ValueKind.score,
        NUMERIC_OPERATORS,
        ("input", "output"),
        description="How much of the relevant context (given, or in the input) the output covers.",
        alternatives=(("output", "context"),),
    ),
    MetricSpec(
        "tool_error_rate",
        ValueKind.score,
        NUMERIC_OPERATORS,
        ("input", "output"),
        description="Share of the agent's tool calls (given, or in a transcript) that ran and failed.",
        alternatives=(("tool_calls",),),
    ),
    MetricSpec(
        "tool_selection_quality",
        ValueKind.score,
        NUMERIC_OPERATORS,
        ("input", "output"),
        description="Whether the agent chose fitting tools and passed valid, grounded arguments.",
        alternatives=(("input", "tool_calls"), ("messages", "tool_calls")),
    ),
    MetricSpec(
        "action_advancement",
        ValueKind.score,
        NUMERIC_OPERATORS,
        ("input", "output"),
        description="Whether the agent is making progress toward the user's goals.",
    ),
    MetricSpec(
        "action_completion",
        ValueKind.score,
        NUMERIC_OPERATORS,
        ("input", "output"),
        description="Whether the agent accomplished all of the user's goals.",
    ),
)

# Galileo's other spellings, after normalisation (lower case, spaces and dashes to underscores,
# "(slm)"/"_luna"/"_gpt"/"_plus" suffixes dropped). Legacy bare names meant the output side.
ALIASES: dict[str, str] = {
    "toxicity": "output_toxicity",
    "pii": "output_pii",
    "sexist": "output_sexism",
    "sexism": "output_sexism",
    "input_sexist": "input_sexism",
    "output_sexist": "output_sexism",
    "tone": "output_tone",
    "groundedness": "context_adherence",
    "adherence": "context_adherence",
    "rag_nli_adherence": "context_adherence",
    "rag_nli_completeness": "completeness",
    "tool_errors": "tool_error_rate",
    "tool_error": "tool_error_rate",
}

_SUFFIX = re.compile(r"(?:_?\(slm\)|_luna|_gpt|_plus)$")
_lock = threading.Lock()
_catalogue: dict[str, MetricSpec] = {spec.name: spec for spec in BUILTIN_METRICS}


def normalize_metric_name(name: str) -> str:
    """Map any of Galileo's spellings to the canonical name (unknown names are only tidied)."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    key = _SUFFIX.sub("", key).strip("_")
    if key in _catalogue:
        return key
    return ALIASES.get(key, key)


def get_metric(name: str) -> MetricSpec:
    """The catalogue entry for ``name`` (any accepted spelling), or :class:`UnknownMetricError`."""
    spec = _catalogue.get(name) or _catalogue.get(normalize_metric_name(name))
    if spec is None:
        known = ", ".join(spec.name for spec in BUILTIN_METRICS)
        custom = ", ".join(sorted(n for n, s in _catalogue.items() if s.custom)) or "none"
        raise UnknownMetricError(
            f"unknown metric {name!r}: built-in metrics are {known}; registered custom metrics: {custom}. "
            "Register a code metric with stageguard.register_metric(name, fn, kind=...)."
        )
    return spec


def find_metric(name: str) -> MetricSpec | None:
    """Like :func:`get_metric` but returns ``None`` for unknown names."""
    spec = _catalogue.get(name)  # a canonical name (every rule's): the engine's hot path
    if spec is not None:
        return spec
    try:
        return get_metric(name)
    except UnknownMetricError:
        return None


def list_metrics() -> list[MetricSpec]:
    """Every metric a rule can use now: built-ins first, then registered custom metrics."""
    return list(_catalogue.values())


def add_custom_metric(
    name: str,
    kind: ValueKind | str,
    *,
    labels: tuple[str, ...] | list[str] | None = None,
    required_fields: tuple[str, ...] | list[str] = (),
    description: str = "",
    replace: bool = False,
) -> MetricSpec:
    """Add a custom metric to the catalogue (the scorer registry calls this from ``register_metric``)."""
    kind = ValueKind(kind)
    canonical = re.sub(r"[\s\-]+", "_", name.strip().lower())
    if not canonical:
        raise ValueError("a custom metric needs a non-empty name")
    from .payload import (
        PAYLOAD_FIELDS,
    )  # here: the catalogue alone (``stageguard metrics``) needs no pydantic

    bad = [f for f in required_fields if f not in PAYLOAD_FIELDS]
    if bad:
        raise ValueError(
            f"required_fields {bad} are not payload fields; allowed: {', '.join(PAYLOAD_FIELDS)}"
        )
    with _lock:
        existing = _catalogue.get(canonical) or _catalogue.get(normalize_metric_name(canonical))
        if existing is not None and not existing.custom:
            raise ValueError(
                f"{name!r} is a built-in metric; plug a scorer for it with a ScorerRegistry instead"
            )
        if existing is not None and not replace:
            raise ValueError(
                f"custom metric {name!r} is already registered; pass replace=True to redefine it"
            )
        spec = MetricSpec(
            canonical,
            kind,
            KIND_OPERATORS[kind],
            tuple(required_fields),
            labels=tuple(labels) if labels else None,
            description=description,
            custom=True,
        )
        _catalogue[canonical] = spec
    return spec


def remove_custom_metric(name: str) -> None:
    """Forget a custom metric (mostly for tests)."""
    with _lock:
        spec = _catalogue.get(normalize_metric_name(name))
        if spec is not None and spec.custom:
            del _catalogue[spec.name]

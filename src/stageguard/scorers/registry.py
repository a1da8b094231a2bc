"""Which scorer computes which metric: built-ins by default, custom and pluggable ones on top."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from ..metrics import ValueKind, add_custom_metric, normalize_metric_name
from ..payload import PAYLOAD_FIELDS
from .base import FunctionScorer, ScoreFunction, Scorer

# metric -> (module, class, constructor argument). Imported on first use so that start-up stays cheap
# and a scorer's weights load only when a rule needs its metric.
BUILTIN_SCORERS: dict[str, tuple[str, str, Any]] = {
    "input_pii": ("stageguard.scorers.pii", "PIIScorer", "input"),
    "output_pii": ("stageguard.scorers.pii", "PIIScorer", "output"),
    "input_toxicity": ("stageguard.scorers.classifiers", "ToxicityScorer", "input"),
    "output_toxicity": ("stageguard.scorers.classifiers", "ToxicityScorer", "output"),
    "input_sexism": ("stageguard.scorers.classifiers", "SexismScorer", "input"),
    "output_sexism": ("stageguard.scorers.classifiers", "SexismScorer", "output"),
    "prompt_injection": ("stageguard.scorers.classifiers", "PromptInjectionScorer", "input"),
    "input_tone": ("stageguard.scorers.classifiers", "ToneScorer", "input"),
    "output_tone": ("stageguard.scorers.classifiers", "ToneScorer", "output"),
    "context_adherence": ("stageguard.scorers.rag", "ContextAdherenceScorer", None),
    "completeness": ("stageguard.scorers.rag", "CompletenessScorer", None),
    "tool_error_rate": ("stageguard.scorers.agent", "ToolErrorRateScorer", None),
    "tool_selection_quality": ("stageguard.scorers.agent", "ToolSelectionQualityScorer", None),
    "action_advancement": ("stageguard.scorers.agent", "ActionAdvancementScorer", None),
    "action_completion": ("stageguard.scorers.agent", "ActionCompletionScorer", None),
}


def load_builtin_scorer(metric: str) -> Scorer | None:
    """A new instance of the built-in scorer for ``metric``, or ``None`` if there is none."""
    entry = BUILTIN_SCORERS.get(metric)
    if entry is None:
        return None
    module_name, class_name, arg = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    cls = getattr(module, class_name)
    scorer: Scorer = cls(arg) if arg is not None else cls()
    return scorer


class ScorerRegistry:
    """Maps canonical metric names to scorers.

    A registry may have a ``parent`` it falls back to, so an app can override one metric (say,
    an LLM judge for ``completeness``) and keep every other default.
    """

    def __init__(
        self, scorers: Mapping[str, Scorer] | None = None, *, parent: ScorerRegistry | None = None
    ) -> None:
        self._scorers: dict[str, Scorer] = {}
        self._parent = parent
        self._lock = threading.Lock()
        self._changes = 0
        for metric, scorer in (scorers or {}).items():
            self.register(metric, scorer)

    def register(self, metric: str, scorer: Scorer) -> None:
        """Use ``scorer`` for ``metric`` (any spelling) in this registry."""
        if not isinstance(scorer, Scorer):
            raise TypeError(f"scorer for {metric!r} must be a stageguard Scorer, got {type(scorer).__name__}")
        self._scorers[normalize_metric_name(metric)] = scorer
        self._changes += 1

    def unregister(self, metric: str) -> None:
        self._scorers.pop(normalize_metric_name(metric), None)
        self._changes += 1

    @property
    def version(self) -> tuple[int, ...]:
        """Changes whenever a scorer is registered or unregistered here or in a parent (for caches of
        what the scorers of a stage read)."""
        parent = self._parent.version if self._parent is not None else ()
        return (self._changes, *parent)

    def get(self, metric: str) -> Scorer | None:
        """The scorer for ``metric``, loading the built-in one on first use."""
        scorer = self._scorers.get(metric)
        if scorer is not None:
            return scorer
        if self._parent is not None:
            return self._parent.get(metric)
        with self._lock:
            scorer = self._scorers.get(metric)
            if scorer is None:
                scorer = load_builtin_scorer(metric)
                if scorer is not None:
                    self._scorers[metric] = scorer
        return scorer


default_registry = ScorerRegistry()

logger = logging.getLogger("stageguard")

_WARM_UP_TEXT = "Warming up the guardrails."


def warm_up(metrics: Iterable[str] | None = None, *, registry: ScorerRegistry | None = None) -> list[str]:
    """Load the scorers of ``metrics`` (default: every built-in metric) and their models and word lists
    now (:meth:`Scorer.load <stageguard.scorers.base.Scorer.load>`, then scoring a short text once), so
    the first real invoke doesn't pay for it: for servers and long-running workers. Without it each
    model loads on the first use of its metric.

    Only in-process (``inline``) scorers are touched, so nothing here calls the network; a scorer that
    fails is logged and skipped (its invokes will fail by the stage's fail policy). Returns the metrics
    warmed up.
    """
    from ..payload import Payload
    from ._lazy_re import compile_all

    registry = registry or default_registry
    names = BUILTIN_SCORERS if metrics is None else [normalize_metric_name(m) for m in metrics]
    payload = Payload(input=_WARM_UP_TEXT, output=_WARM_UP_TEXT, context=[_WARM_UP_TEXT])
    warmed = []
    for metric in names:
        try:
            scorer = registry.get(metric)
            if scorer is None or scorer.mode != "inline":
                continue
            scorer.load()
            scorer.score(payload)
        except Exception as exc:
            logger.warning("could not warm up the scorer of %s: %s: %s", metric, type(exc).__name__, exc)
            continue
        warmed.append(metric)
    compile_all()  # the patterns of the scorers loaded above that only some texts reach
    return warmed


def register_metric(
    name: str,
    fn: ScoreFunction,
    *,
    kind: ValueKind | str = ValueKind.score,
    labels: list[str] | tuple[str, ...] | None = None,
    required_fields: list[str] | tuple[str, ...] = (),
    fields_read: list[str] | tuple[str, ...] | None = None,
    blocking: bool = False,
    max_concurrency: int | None = None,
    description: str = "",
    replace: bool = False,
    registry: ScorerRegistry | None = None,
) -> None:
    """Register a custom code metric: ``fn(payload)`` (sync or async) returns its value.

    ``kind`` decides which operators rules may use (score, number, category, categories);
    ``labels`` restricts category targets; ``required_fields`` are the payload fields the function
    needs (the metric is skipped, and says so, when they are missing); ``fields_read`` every payload field
    it reads (default ``None``: any, so adapters build the whole payload for its stages; with a list they
    leave out the conversation, tools or context it doesn't name). Set ``blocking=True`` for a
    sync function that waits on I/O so the invoke's time-out can stop waiting for it; ``max_concurrency``
    then bounds how many of its calls run at once (default: the engine's ``max_workers``, 4), so a hung
    function holds at most that many threads and other metrics keep theirs.
    """
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
    ):
        raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
    if fields_read is not None:
        fields_read = list(fields_read) if not isinstance(fields_read, str) else [fields_read]
        unknown = [f for f in [*fields_read, *required_fields] if f not in PAYLOAD_FIELDS]
        if unknown or not set(required_fields) <= set(fields_read):
            raise ValueError(
                f"fields_read must list payload fields ({', '.join(PAYLOAD_FIELDS)}) including every one of "
                f"required_fields; got fields_read={fields_read!r}, required_fields={list(required_fields)!r}"
            )
    spec = add_custom_metric(
        name, kind, labels=labels, required_fields=required_fields, description=description, replace=replace
    )
    scorer = FunctionScorer(spec.name, fn, blocking=blocking, max_concurrency=max_concurrency)
    if fields_read is not None:
        scorer.fields_read = frozenset(fields_read)
    (registry or default_registry).register(spec.name, scorer)


ENTRY_POINT_GROUP = "stageguard.metrics"

_loaded_lock = threading.Lock()
_loaded_entry_points: set[str] = set()


class MetricPluginError(ValueError):
    """A ``--metrics`` module or a ``stageguard.metrics`` entry point could not be loaded."""


def load_metric_modules(modules: list[str] | tuple[str, ...]) -> list[str]:
    """Import each module (``my_pkg.metrics``), which registers its metrics with :func:`register_metric`
    when imported. Importing again is a no-op (Python caches modules). Returns the modules; a module
    that can't be imported raises :class:`MetricPluginError` saying why."""
    loaded = []
    for name in modules:
        name = name.strip()
        if not name:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise MetricPluginError(
                f"could not import the metrics module {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        loaded.append(name)
    return loaded


def load_metric_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Load every installed entry point of ``group`` (``stageguard.metrics``): an entry point naming a
    module registers its metrics when imported; one naming a callable is called once with no
    arguments and registers them. Each entry point is loaded once per process. Returns their names
    (``name = value``); a failing one raises :class:`MetricPluginError` naming it."""
    from importlib.metadata import entry_points

    loaded = []
    for entry in sorted(entry_points(group=group), key=lambda ep: (ep.name, ep.value)):
        label = f"{entry.name} = {entry.value}"
        with _loaded_lock:
            if label in _loaded_entry_points:
                loaded.append(label)
                continue
            try:
                target = entry.load()
                if callable(target):
                    target()
            except Exception as exc:
                raise MetricPluginError(
                    f"could not load the {group!r} entry point {label!r}: {type(exc).__name__}: {exc}"
                ) from exc
            _loaded_entry_points.add(label)
        loaded.append(label)
    return loaded


def describe_metrics() -> list[dict[str, Any]]:
    """The metric catalogue as JSON-able dicts (built-ins first, then custom metrics): what the
    server's ``GET /metrics/catalogue`` and ``stageguard metrics`` list."""
    from ..metrics import list_metrics

    described = []
    for spec in list_metrics():
        described.append(
            {
                "name": spec.name,
                "kind": spec.kind.value,
                "custom": spec.custom,
                "operators": sorted(op.value for op in spec.operators),
                "required_fields": list(spec.required_fields),
                "alternative_fields": [list(option) for option in getattr(spec, "alternatives", ())],
                "labels": list(spec.labels) if spec.labels is not None else None,
                "description": spec.description,
            }
        )
    return described

"""Policy evaluation before rollout: run a stage version over labelled rows and measure what it decides.

:func:`evaluate` runs every row of a labelled set (JSON objects holding payload fields such as ``input``,
``output``, ``context``, ``messages``, ``tool_calls``, plus an optional ``expected`` label) through one
version of a stage and returns an :class:`Evaluation`: the decision per row, precision / recall / false
positive rate against the labels, how often each ruleset and rule triggers, the metric values, latency,
fail-policy failures and, with ``against=``, the rows whose decision changed between two versions.

A version is evaluated by its rulesets, read with :meth:`Protect.get_stage` and checked inline (with the
stage's fail policy): ``Protect.invoke(stage_name=..., stage_version=N)`` would answer ``PAUSED`` for a
paused stage without evaluating anything, and a stage is usually paused (or shadowed) precisely while a
new version is being evaluated.

This module is core: it imports neither LangChain, LlamaIndex nor the HTTP client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import multiprocessing
import os
import signal
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ._pools import stop_pool, wait_result
from .errors import InvalidRequestError, StageguardError, one_line
from .metrics import BUILTIN_METRICS
from .payload import PAYLOAD_FIELDS, Payload
from .protect import Protect, as_rulesets
from .response import Response
from .rules import Ruleset
from .status import ExecutionStatus, FailPolicy

__all__ = [
    "BadRow",
    "Evaluation",
    "RowOutcome",
    "aevaluate",
    "evaluate",
    "read_rows",
]

# Labels meaning "the stage should trigger" / "the stage should let it through".
_BLOCK = {"block", "blocked", "trigger", "triggered", "flag", "flagged", "1", "true", "positive"}
_ALLOW = {"allow", "allowed", "pass", "passed", "not_triggered", "ok", "0", "false", "negative"}
_STATUSES = {status.value for status in ExecutionStatus}
_PARALLEL_MIN_ROWS = 1000  # below this, starting worker processes costs more than it saves
_CHUNK = 200  # rows per task sent to a worker process


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read (not JSON, not an object): it becomes an errored :class:`RowOutcome`."""

    line: int
    error: str


@dataclass
class RowOutcome:
    """What one version decided for one row.

    ``status`` is the invoke's execution status (``triggered``, ``not_triggered``, ``error``, ...);
    ``triggered`` whether the stage triggered (its action applies: override, redact...); ``ruleset`` the
    label of the ruleset that decided (the first triggered one), ``ruleset_statuses`` / ``rule_statuses``
    every ruleset's and rule's status, ``metrics`` the metric values computed, ``latency`` the invoke's
    execution time in seconds, ``failure`` the fail policy applied when a metric failed. ``error`` is set
    (and nothing else) for a row that could not be evaluated.
    """

    row: int
    expected: str | None = None
    expected_ruleset: str | None = None
    status: str | None = None
    triggered: bool = False
    action: str | None = None
    ruleset: str | None = None
    ruleset_statuses: dict[str, str] = field(default_factory=dict)
    rule_statuses: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    metric_problems: dict[str, str] = field(default_factory=dict)
    latency: float | None = None
    failure: str | None = None
    error: str | None = None

    @property
    def expected_block(self) -> bool | None:
        """The label as block (True) / allow (False); ``None`` when the row has no such label."""
        return _label_block(self.expected)

    @property
    def correct(self) -> bool | None:
        """Whether the decision matches every label the row has (``None``: no label, or an error)."""
        if self.error is not None or (self.expected is None and self.expected_ruleset is None):
            return None
        ok = True
        if self.expected is not None:
            label = self.expected.strip().lower()
            block = _label_block(label)
            ok = self.triggered == block if block is not None else self.status == label
        if self.expected_ruleset is not None:
            ok = ok and self.ruleset == self.expected_ruleset
        return ok


def _label_block(label: str | None) -> bool | None:
    if label is None:
        return None
    text = label.strip().lower()
    if text in _BLOCK:
        return True
    if text in _ALLOW:
        return False
    return None


def ruleset_labels(rulesets: Sequence[Ruleset]) -> list[str]:
    """A readable, unique name per ruleset: its description, else ``ruleset N`` (1-based)."""
    labels: list[str] = []
    for i, ruleset in enumerate(rulesets, 1):
        label = ruleset.description or f"ruleset {i}"
        labels.append(label if label not in labels else f"{label} ({i})")
    return labels


def rule_labels(rulesets: Sequence[Ruleset]) -> list[list[str]]:
    """``"<ruleset>: <metric> <operator> <target>"`` for every rule of every ruleset."""
    out = []
    for name, ruleset in zip(ruleset_labels(rulesets), rulesets, strict=True):
        row = []
        for rule in ruleset.rules:
            target = "" if rule.target_value is None else f" {json.dumps(rule.target_value)}"
            row.append(f"{name}: {rule.given_metric} {rule.operator.value}{target}")
        out.append(row)
    return out


# -- reading rows ------------------------------------------------------------------------------------


def read_rows(path: str | os.PathLike[str]) -> Iterator[dict[str, Any] | BadRow]:
    """The rows of a JSONL file: each line's JSON object, or a :class:`BadRow` saying what is wrong with
    it (blank lines are skipped). A missing file is a ``FileNotFoundError``."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadRow(number, f"not valid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                yield BadRow(number, f"expected a JSON object, got {type(row).__name__}")
                continue
            row.setdefault("_line", number)
            yield row


def _prepare(index: int, row: Any) -> tuple[int, Payload | None, RowOutcome | None]:
    """``(row number, payload, None)``, or an errored outcome for a row that can't be a payload.
    A row's number is its ``_line`` (set by :func:`read_rows`), else its 1-based position."""
    if isinstance(row, BadRow):
        return row.line, None, RowOutcome(row=row.line, error=row.error)
    if isinstance(row, Payload):
        return index, row, None
    if not isinstance(row, Mapping):
        return index, None, RowOutcome(row=index, error=f"expected an object, got {type(row).__name__}")
    number = row.get("_line", index)
    number = number if isinstance(number, int) else index
    fields: dict[str, Any] = {k: row[k] for k in PAYLOAD_FIELDS if k in row}
    if "text" in row and "input" not in fields:  # as `stageguard score`
        fields["input"] = row["text"]
    expected, expected_ruleset = row.get("expected"), row.get("expected_ruleset")
    problem = None
    if expected is not None and not isinstance(expected, str):
        problem = f"expected must be a string such as 'block' or 'allow', got {json.dumps(expected)}"
    elif isinstance(expected, str) and _label_block(expected) is None and expected.lower() not in _STATUSES:
        problem = f"expected {expected!r} is not 'block', 'allow' or an execution status"
    elif expected_ruleset is not None and not isinstance(expected_ruleset, str):
        problem = "expected_ruleset must be a ruleset's description (a string)"
    elif not fields:
        problem = f"no payload field ({', '.join(PAYLOAD_FIELDS)})"
    else:
        try:
            return number, Payload(**fields), None
        except (ValidationError, ValueError, TypeError) as exc:
            problem = one_line(exc)
    label = expected if isinstance(expected, str) else None
    return number, None, RowOutcome(row=number, expected=label, error=problem)


# -- evaluating one row ------------------------------------------------------------------------------


def _outcome(
    number: int,
    labels: tuple[str | None, str | None],
    response: Response,
    names: Sequence[str],
    rule_names: Sequence[str],
) -> RowOutcome:
    """The compact record of one response (what the summary, the diff and the report need)."""
    rule_results = [r for rs in response.ruleset_results for r in rs.rule_results]
    # the deciding ruleset, found as the engine finds it: the first triggered one, unless a failed one
    # came first under fail_closed (then the fail policy decided)
    deciding = None
    closed = response.failure is not None and response.failure.policy is FailPolicy.fail_closed
    if response.status is ExecutionStatus.triggered:
        for name, ruleset in zip(names, response.ruleset_results, strict=False):
            if ruleset.status is ExecutionStatus.triggered:
                deciding = name
                break
            if closed and ruleset.status in (ExecutionStatus.error, ExecutionStatus.timeout):
                deciding = "(fail policy)"
                break
    metrics: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for metric, result in response.metric_results.items():
        if result.status in (None, "success"):
            metrics[metric] = result.value
        else:
            problems[metric] = result.status or "error"
    action = response.shadow_action_result or response.action_result
    return RowOutcome(
        row=number,
        expected=labels[0],
        expected_ruleset=labels[1],
        status=response.status.value,
        triggered=response.triggered,
        action=action.type.value,
        ruleset=deciding,
        ruleset_statuses={n: r.status.value for n, r in zip(names, response.ruleset_results, strict=False)},
        rule_statuses={n: r.status.value for n, r in zip(rule_names, rule_results, strict=False)},
        metrics=metrics,
        metric_problems=problems,
        latency=response.trace_metadata.execution_time,
        failure=response.failure.policy.value if response.failure is not None else None,
    )


_Row = tuple[int, Payload, tuple[str | None, str | None]]  # row number, payload, labels


@dataclass(frozen=True)
class _Plan:
    """One version to evaluate: its rulesets, their names and the fail policy."""

    rulesets: list[Ruleset]
    fail_policy: FailPolicy
    timeout: float

    @property
    def names(self) -> list[str]:
        return ruleset_labels(self.rulesets)

    @property
    def rule_names(self) -> list[str]:
        return [name for group in rule_labels(self.rulesets) for name in group]


_warm: set[tuple[int, frozenset[str]]] = set()  # (Protect, metrics) whose scorers are loaded


def _run_rows(protect: Protect, plan: _Plan, rows: Sequence[_Row]) -> list[RowOutcome]:
    out = []
    names, rule_names = plan.names, plan.rule_names
    warm = (id(protect), frozenset(m for ruleset in plan.rulesets for m in ruleset.metrics))
    if rows and warm not in _warm:
        # load the scorers' models first, so the first row's latency is not the models' loading time
        with contextlib.suppress(Exception):
            protect.engine.evaluate(rows[0][1], plan.rulesets, timeout=plan.timeout)
        _warm.add(warm)
    for number, payload, labels in rows:
        try:  # what Protect.invoke does with inline rulesets, minus re-validating them for every row
            response = protect.engine.evaluate(
                payload, plan.rulesets, timeout=plan.timeout, fail_policy=plan.fail_policy
            )
        except Exception as exc:  # one row's failure is that row's error; the run goes on
            out.append(RowOutcome(row=number, expected=labels[0], error=one_line(exc)))
            continue
        out.append(_outcome(number, labels, response, names, rule_names))
    return out


# Worker processes (large sets on more than one core): each builds its own Protect once.
_worker_protect: Protect | None = None


def _worker_run(plan_json: str, rows: list[_Row]) -> list[RowOutcome]:
    global _worker_protect
    if _worker_protect is None:
        from .store.sqlite import SQLiteStageStore

        _worker_protect = Protect(SQLiteStageStore(":memory:"))  # rulesets come inline: nothing stored
    data = json.loads(plan_json)
    plan = _Plan(
        rulesets=as_rulesets(data["rulesets"]),
        fail_policy=FailPolicy(data["fail_policy"]),
        timeout=data["timeout"],
    )
    return _run_rows(_worker_protect, plan, rows)


def _parallel_ok(protect: Protect, plans: Sequence[_Plan]) -> bool:
    """Worker processes only know the built-in scorers: use them only when nothing else is needed."""
    from .scorers.registry import default_registry

    builtin = {spec.name for spec in BUILTIN_METRICS}
    metrics = {metric for plan in plans for ruleset in plan.rulesets for metric in ruleset.metrics}
    return protect.engine.registry is default_registry and metrics <= builtin


def _main_is_safe() -> bool:
    """Whether worker processes can start without running the main script again: they import the main
    module, which re-runs a script's top-level code unless it has an ``if __name__ == "__main__":`` guard.
    Interactive sessions and notebooks have no main file; ``python -m package`` is never re-run."""
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", "") or ""
    return getattr(main, "__file__", None) is None or spec_name.endswith("__main__")


def _workers(
    requested: int | Literal["auto"] | None, protect: Protect, plans: Sequence[_Plan], rows: int
) -> int:
    if isinstance(requested, int) and not isinstance(requested, bool):
        if requested < 1:
            raise InvalidRequestError(f"workers must be at least 1 or 'auto', got {requested}")
        return requested if requested == 1 or _parallel_ok(protect, plans) else 1
    if requested not in (None, "auto"):
        raise InvalidRequestError(f"workers must be at least 1 or 'auto', got {requested!r}")
    if requested is None and not _main_is_safe():
        return 1
    if rows < _PARALLEL_MIN_ROWS or not _parallel_ok(protect, plans):
        return 1
    return min(os.cpu_count() or 1, 8)


def _evaluate_all(
    protect: Protect,
    plan: _Plan,
    rows: list[_Row],
    workers: int,
    step: Callable[[int], None],
) -> list[RowOutcome]:
    if workers <= 1:
        out: list[RowOutcome] = []
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            out.extend(_run_rows(protect, plan, chunk))
            step(len(chunk))
        return out
    plan_json = json.dumps(
        {
            "rulesets": [r.model_dump(mode="json") for r in plan.rulesets],
            "fail_policy": plan.fail_policy.value,
            "timeout": plan.timeout,
        }
    )
    chunks = [rows[i : i + _CHUNK] for i in range(0, len(rows), _CHUNK)]
    results: list[RowOutcome] = []
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_sigint)
    try:
        futures = [pool.submit(_worker_run, plan_json, chunk) for chunk in chunks]
        for chunk, future in zip(chunks, futures, strict=True):
            done: list[RowOutcome] = wait_result(future, pool)
            results.extend(done)
            step(len(chunk))
    except BaseException as exc:  # Ctrl-C or a failure: the workers are stopped, queued chunks dropped
        stop_pool(pool, 0.0, "evaluation worker")
        if isinstance(exc, BrokenProcessPool):
            raise StageguardError(
                f"an evaluation worker process died ({exc}); out of memory? "
                "Evaluate again, or with workers=1 (--workers 1) to stay in this process"
            ) from exc
        raise
    pool.shutdown()
    return results


def _ignore_sigint() -> None:
    """Ctrl-C stops the evaluation in the calling process, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


# -- the result --------------------------------------------------------------------------------------


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * q
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass
class Evaluation:
    """What one stage version decided on a labelled set (see :func:`evaluate`).

    ``rows`` holds one :class:`RowOutcome` per row, in order; ``against`` the evaluation of the version it
    was compared with (``None`` without ``against=``). Everything else is computed from ``rows``.
    """

    stage: str | None
    version: int | None
    rulesets: list[Ruleset]
    rows: list[RowOutcome]
    elapsed: float
    fail_policy: FailPolicy = FailPolicy.fail_open
    against: Evaluation | None = None
    workers: int = 1  # processes the rows were spread over

    # -- counts

    @property
    def evaluated(self) -> list[RowOutcome]:
        return [row for row in self.rows if row.error is None]

    @property
    def errors(self) -> list[RowOutcome]:
        """Rows that could not be evaluated (bad JSON, not a payload...)."""
        return [row for row in self.rows if row.error is not None]

    def confusion(self) -> dict[str, int]:
        """``tp`` / ``fp`` / ``tn`` / ``fn`` over the rows labelled block or allow."""
        counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
        for row in self.evaluated:
            expected = row.expected_block
            if expected is None:
                continue
            key = ("t" if row.triggered == expected else "f") + ("p" if row.triggered else "n")
            counts[key] += 1
        return counts

    @property
    def precision(self) -> float | None:
        c = self.confusion()
        return _ratio(c["tp"], c["tp"] + c["fp"])

    @property
    def recall(self) -> float | None:
        c = self.confusion()
        return _ratio(c["tp"], c["tp"] + c["fn"])

    @property
    def fpr(self) -> float | None:
        """False positive rate: the share of rows labelled allow that the stage triggers on."""
        c = self.confusion()
        return _ratio(c["fp"], c["fp"] + c["tn"])

    @property
    def accuracy(self) -> float | None:
        """The share of labelled rows (any label: block/allow, a status, a ruleset) decided as labelled."""
        checked = [row.correct for row in self.evaluated if row.correct is not None]
        return _ratio(sum(checked), len(checked))

    def decisions(self) -> dict[str, int]:
        """Evaluated rows per execution status (``triggered``, ``not_triggered``, ``error``...)."""
        counts = Counter(row.status for row in self.evaluated if row.status is not None)
        return dict(counts.most_common())

    def ruleset_rates(self) -> dict[str, dict[str, float | int]]:
        """Per ruleset: ``triggered`` (rows where it triggered, evaluated or not), ``decided`` (rows where it
        was the first to trigger, so its action applied) and their rates over the evaluated rows."""
        rows = self.evaluated
        out: dict[str, dict[str, float | int]] = {}
        for name in ruleset_labels(self.rulesets):
            hit = sum(1 for row in rows if row.ruleset_statuses.get(name) == "triggered")
            decided = sum(1 for row in rows if row.ruleset == name)
            out[name] = {
                "triggered": hit,
                "trigger_rate": hit / len(rows) if rows else 0.0,
                "decided": decided,
                "decide_rate": decided / len(rows) if rows else 0.0,
            }
        return out

    def rule_rates(self) -> dict[str, dict[str, float | int]]:
        """Per rule (``"<ruleset>: <metric> <op> <target>"``): rows where it triggered, and the rate."""
        rows = self.evaluated
        out: dict[str, dict[str, float | int]] = {}
        for name in (n for group in rule_labels(self.rulesets) for n in group):
            hit = sum(1 for row in rows if row.rule_statuses.get(name) == "triggered")
            out[name] = {"triggered": hit, "trigger_rate": hit / len(rows) if rows else 0.0}
        return out

    def metric_values(self, metric: str, label: bool | None = None) -> list[Any]:
        """Every value of ``metric`` (rows labelled block only with ``label=True``, allow with False)."""
        return [
            row.metrics[metric]
            for row in self.evaluated
            if metric in row.metrics and (label is None or row.expected_block is label)
        ]

    @property
    def metric_names(self) -> list[str]:
        return list(dict.fromkeys(m for row in self.evaluated for m in row.metrics))

    def metric_distributions(self) -> dict[str, dict[str, Any]]:
        """Per metric: quantiles of numeric values, or the most common categories; failures counted."""
        out: dict[str, dict[str, Any]] = {}
        problems: dict[str, Counter[str]] = defaultdict(Counter)
        for row in self.evaluated:
            for metric, status in row.metric_problems.items():
                problems[metric][status] += 1
        for metric in dict.fromkeys([*self.metric_names, *problems]):
            values = self.metric_values(metric)
            numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            entry: dict[str, Any] = {"count": len(values), "problems": dict(problems.get(metric, {}))}
            if numbers:
                entry.update(
                    min=min(numbers),
                    p10=_quantile(numbers, 0.1),
                    p50=_quantile(numbers, 0.5),
                    p90=_quantile(numbers, 0.9),
                    max=max(numbers),
                    mean=statistics.fmean(numbers),
                )
            else:
                labels: Counter[str] = Counter()
                for value in values:
                    if isinstance(value, list):
                        labels.update([str(v) for v in value] or ["(none)"])
                    else:
                        labels[str(value)] += 1
                entry["categories"] = dict(labels.most_common(10))
            out[metric] = entry
        return out

    def latency(self) -> dict[str, float | None]:
        """p50, p99 and max invoke latency in milliseconds."""
        values = [
            row.latency * 1000 for row in self.evaluated if row.latency is not None and row.latency >= 0
        ]
        if not values:
            return {"p50_ms": None, "p99_ms": None, "max_ms": None}
        return {"p50_ms": _quantile(values, 0.5), "p99_ms": _quantile(values, 0.99), "max_ms": max(values)}

    def failures(self) -> dict[str, dict[str, int]]:
        """Rows where a metric failed, by the fail policy applied, and per metric."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for row in self.evaluated:
            if row.failure is not None:
                out[row.failure]["rows"] += 1
                for metric, status in row.metric_problems.items():
                    if status in ("error", "timeout"):
                        out[row.failure][metric] += 1
        return {policy: dict(counts) for policy, counts in out.items()}

    # -- the diff

    def diff(self) -> list[dict[str, Any]]:
        """Rows whose decision differs from the ``against`` version's: ``change`` is ``newly_triggered``
        (this version triggers, the other did not), ``no_longer_triggered``, or ``other_ruleset`` (both
        trigger, on a different ruleset); ``cause`` the ruleset responsible (this version's for the first
        and last, the other version's for ``no_longer_triggered``). Empty without ``against``."""
        if self.against is None:
            return []
        before = {row.row: row for row in self.against.rows}
        out = []
        for after in self.rows:
            old = before.get(after.row)
            if old is None or after.error is not None or old.error is not None:
                continue
            if after.triggered and not old.triggered:
                change, cause = "newly_triggered", after.ruleset
            elif old.triggered and not after.triggered:
                change, cause = "no_longer_triggered", old.ruleset
            elif after.triggered and after.ruleset != old.ruleset:
                change, cause = "other_ruleset", after.ruleset
            else:
                continue
            out.append(
                {
                    "row": after.row,
                    "expected": after.expected,
                    "change": change,
                    "cause": cause,
                    "before": {"status": old.status, "ruleset": old.ruleset},
                    "after": {"status": after.status, "ruleset": after.ruleset},
                    "correct_before": old.correct,
                    "correct_after": after.correct,
                }
            )
        return out

    def diff_by_cause(self) -> dict[str, dict[str, int]]:
        """:meth:`diff` counted by ``(change, cause)``: ``{"newly_triggered: pii": {"rows": 3, "fixed": 2,
        "broken": 1}}`` (``fixed``: now as labelled, ``broken``: no longer as labelled)."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for entry in self.diff():
            key = f"{entry['change']}: {entry['cause']}"
            out[key]["rows"] += 1
            if entry["correct_after"] is True and entry["correct_before"] is False:
                out[key]["fixed"] += 1
            elif entry["correct_after"] is False and entry["correct_before"] is True:
                out[key]["broken"] += 1
        return {key: dict(counts) for key, counts in sorted(out.items(), key=lambda kv: -kv[1]["rows"])}

    # -- output

    def summary(self) -> dict[str, Any]:
        """Everything but the rows, as JSON-ready data."""
        data: dict[str, Any] = {
            "stage": self.stage,
            "version": self.version,
            "rows": len(self.rows),
            "row_errors": len(self.errors),
            "elapsed_s": round(self.elapsed, 3),
            "workers": self.workers,
            "decisions": self.decisions(),
            "confusion": self.confusion(),
            "precision": self.precision,
            "recall": self.recall,
            "fpr": self.fpr,
            "accuracy": self.accuracy,
            "rulesets": self.ruleset_rates(),
            "rules": self.rule_rates(),
            "metrics": self.metric_distributions(),
            "latency": self.latency(),
            "failures": self.failures(),
        }
        if self.against is not None:
            data["against"] = {
                key: value
                for key, value in self.against.summary().items()
                if key not in ("rows", "row_errors", "elapsed_s", "workers")
            }
            data["diff"] = {"changed": len(self.diff()), "by_cause": self.diff_by_cause()}
        return data

    def tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """The summary as ``(title, header, rows)`` tables, for a terminal or a report."""
        result = self
        versions = [result] + ([result.against] if result.against is not None else [])
        names = [f"v{r.version}" if r.version is not None else "rulesets" for r in versions]
        tables = []
        overview = [
            ["rows", *[str(len(r.rows)) for r in versions]],
            ["row errors", *[str(len(r.errors)) for r in versions]],
        ]
        for status in dict.fromkeys(s for r in versions for s in r.decisions()):
            overview.append([status, *[str(r.decisions().get(status, 0)) for r in versions]])
        confusion = [r.confusion() for r in versions]
        overview += [
            ["precision", *[_pct(r.precision) for r in versions]],
            ["recall", *[_pct(r.recall) for r in versions]],
            ["false positive rate", *[_pct(r.fpr) for r in versions]],
            ["accuracy (all labels)", *[_pct(r.accuracy) for r in versions]],
            ["tp / fp / tn / fn", *[f"{c['tp']} / {c['fp']} / {c['tn']} / {c['fn']}" for c in confusion]],
            ["latency p50 (ms)", *[_num(r.latency()["p50_ms"]) for r in versions]],
            ["latency p99 (ms)", *[_num(r.latency()["p99_ms"]) for r in versions]],
        ]
        for r, name in zip(versions, names, strict=True):
            for policy, counts in r.failures().items():
                overview.append([f"failures ({policy}, {name})", str(counts.get("rows", 0))])
        tables.append((f"stage {result.stage or '(inline)'}", ["", *names], overview))
        for r, name in zip(versions, names, strict=True):
            rows = [
                [ruleset, str(v["triggered"]), _pct(float(v["trigger_rate"])), str(v["decided"])]
                for ruleset, v in r.ruleset_rates().items()
            ]
            rows += [
                [f"  {rule}", str(v["triggered"]), _pct(float(v["trigger_rate"])), ""]
                for rule, v in r.rule_rates().items()
            ]
            tables.append((f"rulesets and rules, {name}", ["", "triggered", "rate", "decided"], rows))
        dist = []
        for metric, entry in result.metric_distributions().items():
            if "p50" in entry:
                shape = ", ".join(f"{k} {_num(entry[k])}" for k in ("min", "p10", "p50", "p90", "max"))
            else:
                shape = ", ".join(f"{k} {v}" for k, v in entry.get("categories", {}).items())
            problems = ", ".join(f"{k} {v}" for k, v in entry["problems"].items())
            dist.append([metric, str(entry["count"]), shape, problems])
        tables.append((f"metric values, {names[0]}", ["metric", "values", "distribution", "problems"], dist))
        if result.against is not None:
            diff = [
                [cause, str(c["rows"]), str(c.get("fixed", 0)), str(c.get("broken", 0))]
                for cause, c in result.diff_by_cause().items()
            ]
            title = f"rows changed from {names[1]} to {names[0]}: {len(result.diff())}"
            tables.append((title, ["change: ruleset", "rows", "now as labelled", "no longer"], diff))
        return tables

    def to_dict(self, *, rows: bool = True) -> dict[str, Any]:
        """:meth:`summary`, plus every row's outcome (and the diff rows) with ``rows=True``."""
        data = self.summary()
        if rows:
            data["row_outcomes"] = [asdict(row) for row in self.rows]
            if self.against is not None:
                data["diff"]["rows"] = self.diff()
        return data

    def write_html(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """A self-contained HTML report (tables and plots, nothing fetched to view it). Needs matplotlib:
        ``pip install "stageguard[report]"``."""
        from ._html_report import write_report

        written: Path = write_report(self, Path(path), title=title)
        return written

    def __str__(self) -> str:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.1f}%"

        version = f" v{self.version}" if self.version is not None else ""
        head = f"stage {self.stage or '(inline rulesets)'}{version}: {len(self.rows)} rows"
        lines = [
            head + f" in {self.elapsed:.1f} s, {len(self.errors)} row errors",
            f"precision {pct(self.precision)}, recall {pct(self.recall)}, FPR {pct(self.fpr)}",
        ]
        if self.against is not None:
            lines.append(f"{len(self.diff())} rows changed against v{self.against.version}")
        return "\n".join(lines)


# -- entry points ------------------------------------------------------------------------------------


def _plan_for(
    protect: Protect,
    stage_name: str | None,
    version: int | None,
    rulesets: Any,
    project_name: str | None,
    project_id: str | None,
    timeout: float,
) -> tuple[_Plan, int | None]:
    if rulesets is not None:
        parsed = _quiet(as_rulesets(rulesets, "rulesets"))
        return _Plan(parsed, FailPolicy.fail_open, timeout), version
    if stage_name is None:
        raise InvalidRequestError("give a stage_name or rulesets to evaluate")
    stage = protect.require_stage(
        stage_name, version=version, project_name=project_name, project_id=project_id
    )
    if stage.version is None:
        raise InvalidRequestError(
            f"stage {stage_name!r} is local: it stores no rulesets, pass them with rulesets=[...]"
        )
    return _Plan(_quiet(stage.prioritized_rulesets), stage.fail_policy, timeout), stage.version


def _quiet(rulesets: Sequence[Ruleset]) -> list[Ruleset]:
    """The rulesets without their subscriptions: evaluating a labelled set must not call webhooks."""
    return [
        r.model_copy(update={"action": r.action.model_copy(update={"subscriptions": []})})
        if r.action.subscriptions
        else r
        for r in rulesets
    ]


def evaluate(
    protect: Protect,
    rows: Iterable[Mapping[str, Any] | BadRow | Payload] | str | os.PathLike[str],
    *,
    stage_name: str | None = None,
    version: int | None = None,
    against: int | None = None,
    rulesets: Any = None,
    project_name: str | None = None,
    project_id: str | None = None,
    timeout: float = 300.0,
    workers: int | Literal["auto"] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Evaluate a stage version (the latest, or ``version``) on ``rows`` and return an :class:`Evaluation`.

    ``rows``: dicts with payload fields (``input``, ``output``, ``context``, ``messages``, ``tools``,
    ``tool_calls``; ``text`` is taken as ``input``) and optional labels: ``expected`` (``"block"`` /
    ``"allow"``, or an execution status such as ``"triggered"``) and ``expected_ruleset`` (the description
    of the ruleset that should decide); or the path of a JSONL file of them. A row that can't be evaluated
    is recorded with its ``error`` and the run goes on.

    ``against``: another version of the same stage, evaluated on the same rows (``result.against``);
    ``result.diff()`` lists the rows whose decision changed. ``rulesets``: evaluate these instead of a
    stored version (a local stage, or a draft before it is stored: with ``stage_name`` and ``against=N``
    it is compared with the stored version N). A paused stage is evaluated all the
    same (its version's rulesets are checked inline, with its fail policy).

    ``workers``: processes for large sets. ``"auto"``: a set of 1,000 rows or more whose rules use only
    built-in metrics is spread over the machine's cores (custom scorers always run in this process). The
    default does the same in a notebook, an interactive session or ``python -m``, and stays in this
    process when called from a script: worker processes import the main script again, so a script must
    guard its code with ``if __name__ == "__main__":`` and pass ``workers="auto"`` (or a number).
    ``progress`` is called with the number of rows done after each chunk.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86_400:
        raise InvalidRequestError(f"timeout must be a number of seconds in (0, 86400], got {timeout!r}")
    if isinstance(rows, (str, os.PathLike)):
        rows = read_rows(rows)
    plan, evaluated_version = _plan_for(
        protect, stage_name, version, rulesets, project_name, project_id, timeout
    )
    other = None
    if against is not None:
        if stage_name is None:
            raise InvalidRequestError("against= compares two versions of a stage: give stage_name too")
        other = _plan_for(protect, stage_name, against, None, project_name, project_id, timeout)
    prepared: list[_Row] = []
    order: list[int | RowOutcome] = []  # a row number to evaluate, or a row already errored
    for index, row in enumerate(rows, 1):
        number, payload, errored = _prepare(index, row)
        if errored is not None:
            order.append(errored)
            continue
        assert payload is not None
        labels = (
            (row.get("expected"), row.get("expected_ruleset")) if isinstance(row, Mapping) else (None, None)
        )
        prepared.append((number, payload, labels))
        order.append(number)
    step = progress or (lambda n: None)
    plans = [plan] + ([other[0]] if other else [])
    workers = _workers(workers, protect, plans, len(prepared) * len(plans))

    def run(p: _Plan, version_: int | None) -> Evaluation:
        started = time.perf_counter()
        done = iter(_evaluate_all(protect, p, prepared, workers, step))
        outcomes = [item if isinstance(item, RowOutcome) else next(done) for item in order]
        return Evaluation(
            stage=stage_name,
            version=version_,
            rulesets=p.rulesets,
            rows=outcomes,
            elapsed=time.perf_counter() - started,
            fail_policy=p.fail_policy,
            workers=workers,
        )

    result = run(plan, evaluated_version)
    if other is not None:
        result.against = run(*other)
    step(sum(1 for item in order if isinstance(item, RowOutcome)))
    return result


async def aevaluate(
    protect: Protect,
    rows: Iterable[Mapping[str, Any] | BadRow | Payload] | str | os.PathLike[str],
    **kwargs: Any,
) -> Evaluation:
    """Async :func:`evaluate`: the (CPU-bound) evaluation runs on a thread, the event loop stays free."""
    if not isinstance(rows, (str, os.PathLike)):
        rows = list(rows)
    return await asyncio.to_thread(evaluate, protect, rows, **kwargs)

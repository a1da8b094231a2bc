"""``stageguard check`` (one text against a stage) and ``stageguard score`` (a metric over a JSONL file)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import UnknownMetricError, one_line
from ..metrics import BUILTIN_METRICS, MetricSpec, find_metric, get_metric
from ._common import project_args, protect_from
from ._metrics import SUGGESTED_RULES, legacy_name, load_metrics, metrics_arg

if TYPE_CHECKING:  # the models and scorers are imported when a command runs, not for ``--help``
    from ..payload import Payload
    from ..response import Response
    from ..scorers.base import Scorer

_MAX_ERRORS_SHOWN = 10  # per-row errors echoed on stderr; all of them are in the output rows


def add_parsers(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="check a text against a stage and print the decision",
        epilog="Exit codes: 0 checked (with --fail-on-trigger: not triggered); 1 triggered, with "
        "--fail-on-trigger; 2 error.",
    )
    check.add_argument("text", nargs="?", help="the text (default: read stdin)")
    check.add_argument("--stage", required=True, help="stage name")
    check.add_argument("--version", type=int, help="pin a stage version")
    check.add_argument(
        "--field", choices=["input", "output"], default="input", help="payload field of the text"
    )
    check.add_argument("--context", action="append", help="a retrieved document (repeatable)")
    check.add_argument("--rulesets", help="JSON/YAML rulesets for a local stage")
    check.add_argument("--timeout", type=float, default=300.0)
    check.add_argument("--shadow", action="store_true", help="report what would happen, change nothing")
    check.add_argument("--json", action="store_true", help="print the full response as JSON")
    check.add_argument(
        "--fail-on-trigger", action="store_true", help="exit 1 when the stage triggers (to gate a CI job)"
    )
    project_args(check)
    metrics_arg(check)
    check.set_defaults(handler=_check)

    builtin = ", ".join(spec.name for spec in BUILTIN_METRICS)
    score = commands.add_parser(
        "score",
        help="score every row of a JSONL file with one metric",
        description="Adds a 'value' to every row (and an 'error' to rows that could not be scored), then "
        "prints a summary on stderr.",
        epilog="Exit codes: 0 every row scored; 1 some rows have an 'error'; 2 nothing scored (unknown "
        "metric, missing file...). --out is replaced only when the run completes.",
    )
    score.add_argument(
        "file", help="JSONL rows with input/output/context (or text, taken as input); - is stdin"
    )
    score.add_argument(
        "--metric",
        required=True,
        metavar="NAME",
        help=f"one of {builtin}, a custom metric, or a Galileo spelling (stageguard metrics lists them)",
    )
    score.add_argument("--out", help="write rows here, atomically (default, or -: stdout)")
    score.add_argument(
        "--threshold",
        type=float,
        help="the summary reports the share of values above it (default: the metric's suggested rule)",
    )
    metrics_arg(score)
    score.set_defaults(handler=_score)


def _check(args: argparse.Namespace) -> int:
    from ..payload import Payload
    from ..rules import parse_rulesets
    from ._common import read_structured

    load_metrics(args)
    if args.text is not None:
        text = args.text
    else:
        if sys.stdin.isatty():  # someone at a terminal: say what we are waiting for
            end = "Ctrl-Z Enter" if os.name == "nt" else "Ctrl-D"
            print(f"Type the text to check, then {end}:", file=sys.stderr, flush=True)
        text = sys.stdin.read()
    payload = Payload(**{args.field: text, "context": args.context})
    rulesets = parse_rulesets(read_structured(args.rulesets)) if args.rulesets else None
    response = protect_from(args).invoke(
        payload,
        rulesets,
        project_name=args.project,
        project_id=args.project_id,
        stage_name=args.stage,
        stage_version=args.version,
        timeout=args.timeout,
        shadow=args.shadow,
    )
    print(response.model_dump_json(indent=2) if args.json else describe(response))
    return 1 if args.fail_on_trigger and response.triggered else 0


def describe(response: Response) -> str:
    """A short human-readable account of a decision."""
    from ..status import ExecutionStatus

    meta = response.stage_metadata
    head = f"stage {meta.stage_name} v{meta.stage_version}" if meta and meta.stage_version else "stage"
    if meta and meta.stage_version is None:
        head = f"stage {meta.stage_name} (local)"
    lines = [
        f"{head}: {response.status.value.upper()}" + (" (shadow: nothing changed)" if response.shadow else "")
    ]
    for index, ruleset in enumerate(response.ruleset_results, 1):
        label = ruleset.description or f"ruleset {index}"
        lines.append(f"  [{ruleset.status.value}] {label}")
        for rule in ruleset.rule_results:
            value = json.dumps(rule.value) if rule.value is not None else "-"
            target = "" if rule.target_value is None else f" {json.dumps(rule.target_value)}"
            lines.append(
                f"      {rule.metric} {rule.operator.value}{target}: value {value} -> {rule.status.value}"
            )
    for name, metric in response.metric_results.items():
        if metric.error_message:
            lines.append(f"  ! {name}: {metric.error_message}")
        elif metric.explanation:
            lines.append(f"  why {name}: {metric.explanation}")
    if response.failure:
        lines.append(f"  fail policy {response.failure.policy.value} applied")
    action = response.shadow_action_result or response.action_result
    lines.append(f"action: {action.type.value}")
    lines.append(f"text: {response.text}")
    if response.status is ExecutionStatus.paused:
        lines.append("(the stage is paused: everything passes)")
    return "\n".join(lines)


# -- score ---------------------------------------------------------------------------------------


def _metric_for(name: str) -> Callable[[Payload], MetricSpec]:
    """The metric to compute for each row. Galileo's legacy names (``toxicity``, ``pii``, ``tone``...)
    name the output metric, and Galileo scores the input with them when a payload has no output: so does
    this."""
    spec = get_metric(name)
    twin = find_metric("input_" + spec.name.removeprefix("output_")) if legacy_name(name) else None
    if twin is None:
        return lambda payload: spec
    return lambda payload: spec if payload.has("output") or not payload.has("input") else twin


def _scorer(spec: MetricSpec) -> Scorer:
    from ..scorers.registry import default_registry

    scorer = default_registry.get(spec.name)
    if scorer is None:
        raise UnknownMetricError(f"no scorer is available for metric {spec.name!r}")
    return scorer


@contextmanager
def _input(name: str) -> Iterator[IO[str]]:
    if name == "-":
        yield sys.stdin
        return
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {name}")
    with path.open(encoding="utf-8") as lines:
        yield lines


@contextmanager
def _output(name: str | None) -> Iterator[IO[str]]:
    """stdout, or a temporary file next to ``name`` that replaces it once everything is written: a run
    that fails or is interrupted leaves the old file as it was."""
    if name is None or name == "-":
        yield sys.stdout
        return
    path = Path(name)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no such directory: {path.parent}")
    if path.is_dir():
        raise IsADirectoryError(f"--out {name} is a directory")
    import tempfile  # here, like the other modules only a command needs: ``--help`` stays fast

    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
        mode = path.stat().st_mode if path.exists() else 0o666 & ~_umask()
        os.chmod(temporary, mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _progress(total: int | None) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when it is a terminal (and rich is installed); else nothing."""
    try:
        if not sys.stderr.isatty():
            raise ImportError
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:
        yield lambda: None
        return
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("scoring", total=total)
        yield lambda: progress.advance(task)


def _score_line(
    line: str, number: int, metric_for: Callable[[Payload], MetricSpec]
) -> tuple[dict[str, Any], MetricSpec | None]:
    """The output row of one input line: the row with its ``value``, or with an ``error`` (a line that is
    not a JSON object becomes ``{"line": number, "value": null, "error": ...}``)."""
    from ..payload import Payload

    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"line": number, "value": None, "error": f"not valid JSON ({exc.msg})"}, None
    if not isinstance(row, dict):
        error = f"expected a JSON object, got {type(row).__name__}"
        return {"line": number, "value": None, "error": error}, None
    fields = {
        k: row[k] for k in ("input", "output", "context", "messages", "tools", "tool_calls") if k in row
    }
    if "text" in row and "input" not in fields:
        fields["input"] = row["text"]
    try:
        payload = Payload(**fields)
    except ValueError as exc:
        return {**row, "value": None, "error": one_line(exc)}, None
    spec = metric_for(payload)
    missing = spec.missing(payload.has)
    if missing:
        return {**row, "value": None, "error": f"{spec.name} needs {' and '.join(missing)}"}, spec
    try:
        value = _scorer(spec).score(payload).value
    except Exception as exc:  # one row's failure is that row's error; the run goes on
        return {**row, "value": None, "error": f"{spec.name} failed: {one_line(exc)}"}, spec
    return {**row, "value": value}, spec


def _score(args: argparse.Namespace) -> int:
    load_metrics(args)
    metric_for = _metric_for(args.metric)
    _scorer(get_metric(args.metric))  # no scorer at all: fail before reading anything
    where = "<stdin>" if args.file == "-" else args.file
    total = None if args.file == "-" else sum(1 for line in _lines(args.file) if line.strip())
    summary = _Summary(args.metric, args.threshold)
    with _input(args.file) as lines, _output(args.out) as out, _progress(total) as step:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row, spec = _score_line(line, number, metric_for)
            summary.add(row, spec, f"{where}:{number}")
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            step()
    print(summary.text(), file=sys.stderr)
    return 1 if summary.errors else 0


def _lines(name: str) -> Iterator[str]:
    with _input(name) as lines:
        yield from lines


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


class _Summary:
    """Counts rows, errors and values for the closing summary."""

    def __init__(self, metric: str, threshold: float | None) -> None:
        self.metric, self.threshold = metric, threshold
        self.rows, self.errors = 0, 0
        self.started = time.perf_counter()
        self.numbers: list[float] = []
        self.labels: Counter[str] = Counter()
        self.metrics: Counter[str] = Counter()

    def add(self, row: dict[str, Any], spec: MetricSpec | None, where: str) -> None:
        self.rows += 1
        if spec is not None:
            self.metrics[spec.name] += 1
        if row.get("error") is not None:
            self.errors += 1
            if self.errors <= _MAX_ERRORS_SHOWN:
                print(f"stageguard: {where}: {row['error']}", file=sys.stderr)
            return
        value = row["value"]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.numbers.append(float(value))
        elif isinstance(value, list):
            self.labels.update([str(v) for v in value] or ["(none)"])
        else:
            self.labels[str(value)] += 1

    def _rule(self) -> tuple[str, float] | None:
        if self.threshold is not None:
            return "gt", self.threshold
        names = list(self.metrics) or [get_metric(self.metric).name]
        operator, _, target = SUGGESTED_RULES.get(names[0], "").partition(" ")
        try:
            return (operator, float(target)) if operator in _COMPARE else None
        except ValueError:
            return None

    def text(self) -> str:
        used = ", ".join(f"{name} ({count} rows)" for name, count in self.metrics.items()) or self.metric
        scored = self.rows - self.errors
        head = (
            f"scored {self.rows} rows with {used} in {time.perf_counter() - self.started:.1f} s: "
            f"{scored} values, {self.errors} errors"
        )
        if self.errors > _MAX_ERRORS_SHOWN:
            head += f" (the first {_MAX_ERRORS_SHOWN} above; every row's 'error' is in the output)"
        lines = [head]
        if self.numbers:
            import statistics

            n = self.numbers
            lines.append(
                f"values: min {min(n):.3g}, median {statistics.median(n):.3g}, "
                f"mean {statistics.fmean(n):.3g}, max {max(n):.3g}"
            )
            rule = self._rule()
            if rule is not None:
                hits = sum(1 for v in n if _COMPARE[rule[0]](v, rule[1]))
                lines.append(f"{rule[0]} {rule[1]:g}: {hits} of {len(n)} values ({100 * hits / len(n):.1f}%)")
        if self.labels:
            top = ", ".join(f"{label} {count}" for label, count in self.labels.most_common(8))
            lines.append(f"labels: {top}")
        return "\n".join(lines)

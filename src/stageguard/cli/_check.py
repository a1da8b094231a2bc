"""``stageguard check`` (one text against a stage) and ``stageguard score`` (a metric over a JSONL file)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import UnknownMetricError, one_line
from ..metrics import get_metric
from ..payload import Payload
from ..response import Response
from ..scorers.registry import default_registry
from ..status import ExecutionStatus
from ._common import project_args, protect_from


def add_parsers(commands: Any) -> None:
    check = commands.add_parser("check", help="check a text against a stage and print the decision")
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
    project_args(check)
    check.set_defaults(handler=_check)

    score = commands.add_parser("score", help="score every row of a JSONL file with one metric")
    score.add_argument("file", help="JSONL rows with input/output/context (or text, taken as input)")
    score.add_argument("--metric", required=True)
    score.add_argument("--out", help="write rows here (default: stdout)")
    score.set_defaults(handler=_score)


def _check(args: argparse.Namespace) -> int:
    from ..rules import parse_rulesets
    from ._common import read_structured

    text = args.text if args.text is not None else sys.stdin.read()
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
    return 0


def describe(response: Response) -> str:
    """A short human-readable account of a decision."""
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
    if response.failure:
        lines.append(f"  fail policy {response.failure.policy.value} applied")
    action = response.shadow_action_result or response.action_result
    lines.append(f"action: {action.type.value}")
    lines.append(f"text: {response.text}")
    if response.status is ExecutionStatus.paused:
        lines.append("(the stage is paused: everything passes)")
    return "\n".join(lines)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def _payload(row: dict[str, Any], where: str) -> Payload:
    fields = {
        k: row[k] for k in ("input", "output", "context", "messages", "tools", "tool_calls") if k in row
    }
    if "text" in row and "input" not in fields:
        fields["input"] = row["text"]
    try:
        return Payload(**fields)
    except ValueError as exc:
        raise ValueError(f"{where}: {one_line(exc)}") from None


def _score(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {args.file}")
    spec = get_metric(args.metric)
    scorer = default_registry.get(spec.name)
    if scorer is None:
        raise UnknownMetricError(f"no scorer is available for metric {spec.name!r}")
    total = sum(1 for line in path.open(encoding="utf-8") if line.strip())
    out: IO[str] = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    progress = _Progress(total, enabled=sys.stderr.isatty())
    try:
        for number, row in _rows(path):
            payload = _payload(row, f"{path}:{number}")
            missing = spec.missing(payload.has)
            if missing:
                row["value"], row["error"] = None, f"row has no {' or '.join(missing)}"
            else:
                result = scorer.score(payload)
                row["value"] = result.value
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            progress.step()
    finally:
        progress.close()
        if out is not sys.stdout:
            out.close()
    return 0


class _Progress:
    """A one-line progress bar on stderr, only on a terminal."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total, self.done, self.enabled = max(total, 1), 0, enabled

    def step(self) -> None:
        self.done += 1
        if self.enabled and (self.done % 25 == 0 or self.done == self.total):
            filled = int(30 * self.done / self.total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")

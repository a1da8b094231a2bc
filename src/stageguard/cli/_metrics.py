"""``stageguard metrics [NAME]``: the metric catalogue (built-in and custom metrics), as a table or JSON.

Also the ``--metrics MODULE`` option shared by the commands that score (``serve``, ``check``, ``score``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from typing import Any

from ..metrics import ALIASES, MetricSpec, get_metric, list_metrics, normalize_metric_name

# A starting rule per built-in metric. Documented operating points where there is one (docs/classifiers.md,
# docs/rag_agent.md, docs/checkpoints.md); the others are the scale's midpoint, to tune on your own data.
SUGGESTED_RULES: dict[str, str] = {
    "input_toxicity": "gt 0.1",
    "output_toxicity": "gt 0.1",
    "input_sexism": "gt 0.95",
    "output_sexism": "gt 0.95",
    "prompt_injection": "gte 0.5",
    "input_pii": "not_empty",
    "output_pii": "not_empty",
    "input_tone": 'eq "anger"',
    "output_tone": 'eq "anger"',
    "context_adherence": "lt 0.1",
    "completeness": "lt 0.5",
    "tool_error_rate": "gte 0.5",
    "tool_selection_quality": "lt 0.5",
    "action_advancement": "lt 0.5",
    "action_completion": "lt 0.5",
}

_TABLE_WIDTH = 140  # the table needs this many columns; narrower terminals get one block per metric
_BACKENDS = {  # all offline
    "stageguard.scorers.classifiers": "hashed n-grams fused with a static-embedding head",
    "stageguard.scorers.pii": "patterns, checksums, lexicons",
    "stageguard.scorers.rag": "lexical match with the context",
    "stageguard.scorers.agent": "rules over the tool calls",
}


def add_parser(commands: Any) -> None:
    metrics = commands.add_parser(
        "metrics",
        help="list the metrics rules can use (kind, operators, targets, fields, scorer, suggested rule)",
        description="The metric catalogue: built-in metrics and the custom metrics registered by --metrics "
        "modules and installed entry points. Any of Galileo's spellings of a NAME is accepted.",
    )
    metrics.add_argument("name", nargs="?", metavar="NAME", help="show one metric")
    metrics_arg(metrics)
    metrics.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    metrics.set_defaults(handler=_metrics)


def metrics_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        action="append",
        metavar="MODULE",
        help="a module that registers custom metrics with stageguard.register_metric when imported, "
        "e.g. my_pkg.metrics (repeatable; the current directory is importable; default: "
        "$STAGEGUARD_METRICS). Installed 'stageguard.metrics' entry points are loaded too.",
    )
    parser.add_argument(
        "--no-metric-entry-points",
        dest="metric_entry_points",
        action="store_false",
        default=None,
        help="don't load the installed 'stageguard.metrics' entry points "
        "(default: $STAGEGUARD_METRIC_ENTRY_POINTS or load them)",
    )


def metric_modules(args: argparse.Namespace) -> tuple[str, ...]:
    """The ``--metrics`` modules (or ``$STAGEGUARD_METRICS``'s), importable from the current directory."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn's --app-dir: local modules are importable
    if args.metrics:
        return tuple(m.strip() for m in args.metrics if m.strip())
    return tuple(m for m in os.environ.get("STAGEGUARD_METRICS", "").replace(",", " ").split() if m)


def entry_points_enabled(args: argparse.Namespace) -> bool:
    if args.metric_entry_points is not None:
        return bool(args.metric_entry_points)
    raw = os.environ.get("STAGEGUARD_METRIC_ENTRY_POINTS", "").strip().lower()
    return raw not in ("0", "false", "no", "off")


def load_metrics(args: argparse.Namespace) -> tuple[str, ...]:
    """Import the custom metrics now: a module that fails is a one-line error, not a traceback."""
    from ..scorers.registry import load_metric_entry_points, load_metric_modules

    modules = metric_modules(args)
    load_metric_modules(modules)
    if entry_points_enabled(args):
        load_metric_entry_points()
    return modules


def legacy_name(name: str) -> bool:
    """Whether ``name`` is one of Galileo's legacy names (``toxicity``, ``pii``, ``tone``...): they name the
    output metric, and Galileo scores the input with it when a payload has no output."""
    return name.strip().lower() in ALIASES and normalize_metric_name(name).startswith("output_")


def describe(spec: MetricSpec) -> dict[str, Any]:
    """One catalogue entry: what a rule may say about the metric and what computes it."""
    from ..scorers.registry import BUILTIN_SCORERS

    builtin = None if spec.custom else BUILTIN_SCORERS.get(spec.name)
    if builtin is not None:
        scorer, backend = f"{builtin[1]} ({builtin[0]})", _BACKENDS.get(builtin[0], "offline")
    else:
        scorer, backend = ("custom function", "your code") if spec.custom else ("none", "-")
    if spec.labels is not None:
        targets: str = "one or more of: " + ", ".join(spec.labels)
    elif spec.kind.value == "score":
        targets = "0 to 1"
    elif spec.kind.value == "number":
        targets = "a number"
    else:
        targets = "any label"
    return {
        "name": spec.name,
        "kind": spec.kind.value,
        "custom": spec.custom,
        "operators": sorted(op.value for op in spec.operators),
        "targets": targets,
        "labels": list(spec.labels) if spec.labels is not None else None,
        "required_fields": list(spec.required_fields),
        "alternative_fields": [list(option) for option in spec.alternatives],
        "scorer": scorer,
        "backend": backend,
        "suggested_rule": f"{spec.name} {SUGGESTED_RULES[spec.name]}"
        if spec.name in SUGGESTED_RULES
        else None,
        "aliases": sorted(alias for alias, target in ALIASES.items() if target == spec.name),
        "description": spec.description,
    }


def _needs(entry: dict[str, Any]) -> str:
    needs = " + ".join(entry["required_fields"]) or "-"
    for option in entry["alternative_fields"]:
        needs += f" (or {' + '.join(option)})"
    return needs


def _targets(entry: dict[str, Any]) -> str:
    return ", ".join(entry["labels"]) if entry["labels"] else str(entry["targets"])


def _print_entry(entry: dict[str, Any]) -> None:
    """One metric, one property a line, wrapped to the terminal (80 columns when piped)."""
    width = max(shutil.get_terminal_size().columns, 40)
    fields = [
        *((key.replace("_", " "), entry[key]) for key in ("name", "description", "kind", "targets")),
        ("operators", ", ".join(entry["operators"])),
        ("needs", _needs(entry)),
        *((key.replace("_", " "), entry[key]) for key in ("scorer", "backend", "suggested_rule")),
    ]
    if entry["aliases"]:
        fields.append(("also called", ", ".join(entry["aliases"])))
    for label, value in fields:
        text = f"{label + ':':<16}{value if value is not None else '-'}"
        print(textwrap.fill(text, width, subsequent_indent=" " * 16, break_on_hyphens=False))


def _metrics(args: argparse.Namespace) -> int:
    load_metrics(args)
    specs = [get_metric(args.name)] if args.name else list_metrics()
    entries = [describe(spec) for spec in specs]
    if args.json:
        print(json.dumps(entries[0] if args.name else entries, indent=2))
        return 0
    if args.name:
        if legacy_name(args.name):
            print(
                f"{args.name} is Galileo's legacy name for {entries[0]['name']} "
                "(the input metric on input-only rows)"
            )
        _print_entry(entries[0])
        return 0
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # no rich (the demo extra)
        console = None
    else:
        console = Console()
    if console is None or not console.is_terminal:  # piped: one greppable line per metric
        for entry in entries:
            origin = "custom" if entry["custom"] else "built-in"
            print(
                f"{entry['name']:<24} {entry['kind']:<10} {origin:<8} needs {_needs(entry)}; "
                f"operators {', '.join(entry['operators'])}; targets {_targets(entry)}; "
                f"scorer {entry['scorer']}: {entry['backend']}; suggested {entry['suggested_rule'] or '-'}"
            )
        return 0
    if console.width < _TABLE_WIDTH:  # a narrow terminal: one block per metric
        for entry in entries:
            _print_entry(entry)
            print()
        return 0
    table = Table(title="stageguard metrics [NAME] [--json]", box=box.SIMPLE_HEAD, show_lines=True)
    for header in ("metric", "kind", "operators", "targets", "needs", "scorer / backend", "suggested rule"):
        table.add_column(header, overflow="fold", no_wrap=header in ("metric", "kind"))
    for entry in entries:
        table.add_row(
            entry["name"] + (" (custom)" if entry["custom"] else ""),
            entry["kind"],
            " ".join(entry["operators"]),
            _targets(entry),
            _needs(entry),
            f"{entry['scorer'].split(' (')[0]}: {entry['backend']}",
            (entry["suggested_rule"] or "-").removeprefix(entry["name"] + " "),
        )
    console.print(table)
    return 0

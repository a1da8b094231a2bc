"""``stageguard eval``: evaluate a stage version on a labelled JSONL file, optionally against another."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import project_args, protect_from
from ._metrics import load_metrics, metrics_arg

if TYPE_CHECKING:  # the evaluation (and the engine under it) is imported when the command runs
    from ..evaluation import Evaluation

_MAX_ERRORS_SHOWN = 10

EPILOG = (
    "Rows: JSON objects with payload fields (input, output, context, messages, tools, tool_calls; text is "
    "taken as input) and optional labels: expected ('block' / 'allow', or a status such as 'triggered') "
    "and expected_ruleset (a ruleset's description). Exit codes: 0 evaluated, every gate passed; "
    "1 some rows could not be evaluated (each is reported, the rest are); 3 a --max-fpr / --min-recall "
    "gate failed; 2 error (no such stage, file...)."
)
GATE_FAILED = 3


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "eval",
        help="evaluate a stage version on a labelled JSONL file (precision, recall, diff between versions)",
        description="Runs every row through a version of a stage (paused stages too) and prints the "
        "decisions, precision / recall / false positive rate against the labels, trigger rates per "
        "ruleset and rule, metric distributions, latency and failures; with --against, the rows whose "
        "decision changed, grouped by the ruleset that caused it.",
        epilog=EPILOG,
    )
    parser.add_argument("file", help="labelled JSONL rows")
    parser.add_argument("--stage", required=True, help="stage name (with --rulesets: the stage of --against)")
    parser.add_argument("--version", type=int, help="the version to evaluate (default: the latest)")
    parser.add_argument("--against", type=int, metavar="M", help="compare with this version of the stage")
    parser.add_argument(
        "--rulesets",
        metavar="FILE",
        help="evaluate these rulesets (JSON/YAML, as 'stages update --file') instead of a stored version: "
        "a draft, compared with --against M before it is stored",
    )
    parser.add_argument("--json", action="store_true", help="print the full result (every row) as JSON")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report here")
    parser.add_argument(
        "--save",
        metavar="FILE",
        help="also write the result as JSON to FILE (what --json prints, plus the summary tables), "
        "atomically (a reader never sees half a file); the server console lists the results saved in "
        "$STAGEGUARD_CONSOLE_REPORTS/<project name or id>/",
    )
    parser.add_argument("--max-fpr", type=float, metavar="RATE", help="exit 3 when the FPR is above RATE")
    parser.add_argument(
        "--min-recall", type=float, metavar="RATE", help="exit 3 when the recall is below RATE"
    )
    parser.add_argument("--workers", type=int, help="worker processes (default: the cores, for large files)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per-row time budget, in seconds")
    project_args(parser)
    metrics_arg(parser)
    parser.set_defaults(handler=_eval)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal (and rich is installed); else nothing."""
    try:
        if not sys.stderr.isatty():
            raise ImportError
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:
        yield lambda n: None
        return
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("evaluating", total=total)
        yield lambda n: progress.advance(task, n)


def _gates(args: argparse.Namespace, result: Evaluation) -> list[str]:
    """What failed among the --max-fpr / --min-recall gates (a gate without labelled rows fails)."""
    failed = []
    if args.max_fpr is not None:
        fpr = result.fpr
        if fpr is None:
            failed.append("--max-fpr: no row is labelled allow, the FPR is unknown")
        elif fpr > args.max_fpr:
            failed.append(f"FPR {fpr:.3f} is above --max-fpr {args.max_fpr:g}")
    if args.min_recall is not None:
        recall = result.recall
        if recall is None:
            failed.append("--min-recall: no row is labelled block, the recall is unknown")
        elif recall < args.min_recall:
            failed.append(f"recall {recall:.3f} is below --min-recall {args.min_recall:g}")
    return failed


def _eval(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate, read_rows

    load_metrics(args)
    for rate in (args.max_fpr, args.min_recall):
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError(f"--max-fpr and --min-recall are rates between 0 and 1, got {rate:g}")
    rulesets = None
    if args.rulesets:
        from ..rules import parse_rulesets
        from ._common import read_structured

        if args.version is not None:
            raise ValueError("give --version or --rulesets, not both")
        rulesets = parse_rulesets(read_structured(args.rulesets))
    rows = list(read_rows(args.file))
    protect = protect_from(args)
    passes = 1 if args.against is None else 2
    with _progress(len(rows) * passes) as step:
        result = evaluate(
            protect,
            rows,
            stage_name=args.stage,
            version=args.version,
            against=args.against,
            rulesets=rulesets,
            project_name=args.project,
            project_id=args.project_id,
            timeout=args.timeout,
            workers=args.workers or "auto",
            progress=step,
        )
    for row in result.errors[:_MAX_ERRORS_SHOWN]:
        print(f"stageguard: {args.file}:{row.row}: {row.error}", file=sys.stderr)
    if len(result.errors) > _MAX_ERRORS_SHOWN:
        print(
            f"stageguard: ... and {len(result.errors) - _MAX_ERRORS_SHOWN} more row errors", file=sys.stderr
        )
    if args.html:
        path = result.write_html(args.html)
        print(f"stageguard: report written to {path}", file=sys.stderr)
    failed = _gates(args, result)
    data = result.to_dict() if args.json or args.save else {}
    data["gates"] = {"failed": failed}
    if args.save:
        tables = [{"title": t, "header": h, "rows": r} for t, h, r in result.tables()]
        path = save_json(args.save, {**data, "tables": tables})
        print(f"stageguard: result saved to {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print_summary(result)
    for problem in failed:
        print(f"stageguard: gate failed: {problem}", file=sys.stderr)
    if failed:
        return GATE_FAILED
    return 1 if result.errors else 0


def save_json(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write ``data`` as JSON to ``path`` (its folder created if need be) through a hidden temporary file
    renamed over it, so a reader (the console) sees the old file or the new one, never half of one."""
    import secrets  # here, not for ``--help``: it loads OpenSSL

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # created like any new file (the umask applies), only once: never over someone else's file
        with open(
            os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8"
        ) as out:
            json.dump(data, out, ensure_ascii=False, indent=2, default=str)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def print_summary(result: Evaluation) -> None:
    print_tables(result.tables())


def print_tables(tables: list[tuple[str, list[str], list[list[str]]]]) -> None:
    """Tables with rich when it is installed (the ``demo`` extra), else as plain text."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for title, header, rows in tables:
            print(f"\n{title}")
            print("  " + " | ".join(header))
            for row in rows:
                print("  " + " | ".join(row))
        return
    console = Console()
    for title, header, rows in tables:
        console.print(title, style="bold", highlight=False, soft_wrap=True)  # a title never wraps
        table = Table()
        for name in header:
            table.add_column(name)
        for row in rows:
            table.add_row(*row)
        console.print(table)

"""``stageguard report``: live and shadow decisions of a stage per version, from the server's decision log."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="summarise a stage's live and shadow decisions per version, from the server's decision log",
        description="Reads the decision log of a stageguard server (STAGEGUARD_DECISION_LOG=1) from its "
        "database and prints, per version and mode (live / shadow), the decisions, trigger rates per "
        "ruleset and latency; for a shadow version, what it decided differently from the live one on the "
        "same payloads.",
        epilog="--db is the server's database (default: $STAGEGUARD_SERVER_DB, else $STAGEGUARD_DB, else "
        "the default file). Exit codes: 0 ok (an empty log too); 2 error.",
    )
    parser.add_argument("--stage", required=True, help="stage name")
    parser.add_argument("--since", default="7d", help="how far back: 90s, 30m, 24h, 7d, 2w (default 7d)")
    parser.add_argument("--project", help="only this project's stage (default: every project's stage NAME)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=_report)


def _server_db(args: argparse.Namespace) -> str:
    from ..store.sqlite import default_db_path

    return (
        getattr(args, "db", None)
        or os.environ.get("STAGEGUARD_SERVER_DB")
        or os.environ.get("STAGEGUARD_DB")
        or str(default_db_path())
    )


def _report(args: argparse.Namespace) -> int:
    from ..server._decision_log import open_engine, parse_since, read_decisions, summarise

    window = parse_since(args.since)
    db = _server_db(args)
    project_id = None
    if args.project is not None:
        from ._db import open_store

        store = open_store(db)
        try:
            project = store.get_project(name=args.project)
        finally:
            store.close()
        if project is None:
            raise ValueError(f"project {args.project!r} does not exist")
        project_id = project.id
    engine = open_engine(db)
    try:
        decisions = read_decisions(engine, args.stage, time.time() - window, project_id=project_id)
    finally:
        engine.dispose()
    summary = {"stage": args.stage, "since": args.since, **summarise(decisions)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    _print(summary)
    return 0


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _print(summary: dict[str, Any]) -> None:
    from ._eval import print_tables

    if not summary["decisions"]:
        print(
            f"no decisions of stage {summary['stage']!r} logged in the last {summary['since']} "
            "(is the server's decision log on? STAGEGUARD_DECISION_LOG=1)"
        )
        return
    tables = []
    rows = []
    for v in summary["versions"]:
        statuses = ", ".join(f"{k} {n}" for k, n in v["statuses"].items())
        p50, p99 = v["latency_p50_ms"], v["latency_p99_ms"]
        latency = "-" if p50 is None else f"{p50:.1f} / {p99:.1f}"
        rows.append(
            [f"v{v['version']}", v["mode"], str(v["decisions"]), _pct(v["trigger_rate"]), statuses, latency]
        )
    header = ["version", "mode", "decisions", "triggered", "statuses", "latency p50 / p99 ms"]
    tables.append((f"stage {summary['stage']}, last {summary['since']}", header, rows))
    rulesets = [
        [f"v{v['version']} {v['mode']}", name, str(r["triggered"]), _pct(r["rate"])]
        for v in summary["versions"]
        for name, r in v["rulesets"].items()
    ]
    tables.append(("rulesets triggered", ["version", "ruleset", "decisions", "rate"], rulesets))
    for c in summary["shadow_vs_live"]:
        rows = [[cause, str(n)] for cause, n in c["by_cause"].items()]
        title = (
            f"shadow v{c['shadow_version']} vs live: {c['changed']} of {c['paired']} payloads decided "
            "differently"
        )
        tables.append((title, ["difference", "payloads"], rows))
    print_tables(tables)

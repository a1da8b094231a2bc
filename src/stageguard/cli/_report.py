"""``stageguard report``: live and shadow decisions of a stage per version, from the server's decision log."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..server._decision_log import LoggedDecision

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


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


def parse_since(value: str) -> float:
    """``"7d"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if match is None:
        raise ValueError(f"--since {value!r} is not a duration such as 30m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(decisions: list[LoggedDecision]) -> dict[str, Any]:
    """Per ``(version, live|shadow)``: counts, statuses, ruleset trigger rates, latency, metric means;
    and per shadow version, the payloads also decided live whose decision differs."""
    groups: dict[tuple[int | None, bool], list[LoggedDecision]] = defaultdict(list)
    for decision in decisions:
        groups[(decision.stage_version, decision.shadow)].append(decision)
    versions = []
    for (version, shadow), rows in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
        statuses = Counter(row.status for row in rows)
        rulesets = Counter(name for row in rows for name in row.triggered_rulesets)
        latencies = [row.latency_ms for row in rows if row.latency_ms is not None]
        numbers: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            for metric, value in row.metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    numbers[metric].append(float(value))
        versions.append(
            {
                "version": version,
                "mode": "shadow" if shadow else "live",
                "decisions": len(rows),
                "statuses": dict(statuses.most_common()),
                "trigger_rate": statuses.get("triggered", 0) / len(rows),
                "rulesets": {name: {"triggered": n, "rate": n / len(rows)} for name, n in rulesets.items()},
                "latency_p50_ms": _quantile(latencies, 0.5),
                "latency_p99_ms": _quantile(latencies, 0.99),
                "metric_means": {m: statistics.fmean(v) for m, v in numbers.items()},
            }
        )
    live: dict[str, LoggedDecision] = {}
    for decision in decisions:  # the latest live decision on each payload
        if not decision.shadow:
            live[decision.payload_hash] = decision
    comparisons = []
    for version in sorted({d.stage_version or 0 for d in decisions if d.shadow}):
        paired = changed = 0
        causes: Counter[str] = Counter()
        for decision in decisions:
            if not decision.shadow or (decision.stage_version or 0) != version:
                continue
            other = live.get(decision.payload_hash)
            if other is None:
                continue
            paired += 1
            shadow_hit, live_hit = decision.status == "triggered", other.status == "triggered"
            if shadow_hit and not live_hit:
                changed += 1
                causes[f"would trigger: {decision.decided_by}"] += 1
            elif live_hit and not shadow_hit:
                changed += 1
                causes[f"would let through: {other.decided_by} (live v{other.stage_version})"] += 1
            elif shadow_hit and decision.decided_by != other.decided_by:
                changed += 1
                causes[f"other ruleset: {decision.decided_by} instead of {other.decided_by}"] += 1
        comparisons.append(
            {"shadow_version": version, "paired": paired, "changed": changed, "by_cause": dict(causes)}
        )
    return {"decisions": len(decisions), "versions": versions, "shadow_vs_live": comparisons}


def _server_db(args: argparse.Namespace) -> str:
    from ..store.sqlite import default_db_path

    return (
        getattr(args, "db", None)
        or os.environ.get("STAGEGUARD_SERVER_DB")
        or os.environ.get("STAGEGUARD_DB")
        or str(default_db_path())
    )


def _report(args: argparse.Namespace) -> int:
    from ..server._decision_log import open_engine, read_decisions

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

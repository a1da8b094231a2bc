"""The decision log: what each invoke of a stage decided, kept for ``stageguard report``.

Off by default (``STAGEGUARD_DECISION_LOG=1`` turns it on). Each invoke of a stage adds one row: when,
the stage, its version, live or shadow, the status, the action, the rulesets that triggered (the first one
decided), the metric values and the latency, plus a hash of the payload (so a shadow decision can be
paired with the live decision on the same payload). Texts (the payload and the resulting text) are kept
only with ``STAGEGUARD_DECISION_LOG_TEXTS=1``. Rows older than the retention are purged.

The invoke never waits for the database: the route puts ``(time, request, response JSON)`` on a bounded
queue and a background thread parses, batches and writes them. A full queue or a failing database drops
log rows (counted and logged), never an invoke.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, text

from ..response import Request

logger = logging.getLogger("stageguard.server")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sg_decision_log (
    logged_at DOUBLE PRECISION NOT NULL,
    project_id TEXT,
    stage_id TEXT,
    stage_name TEXT,
    stage_version BIGINT,
    shadow INTEGER NOT NULL,
    status TEXT NOT NULL,
    action TEXT,
    decided_by TEXT,
    triggered_rulesets TEXT NOT NULL,
    metrics TEXT NOT NULL,
    latency_ms DOUBLE PRECISION,
    payload_hash TEXT NOT NULL,
    payload TEXT,
    result_text TEXT
);
CREATE INDEX IF NOT EXISTS sg_decision_log_stage ON sg_decision_log (stage_name, logged_at);
CREATE INDEX IF NOT EXISTS sg_decision_log_time ON sg_decision_log (logged_at)
"""
_SCHEMA_LOCK = 0x5347_0018
_COLUMNS = (
    "logged_at",
    "project_id",
    "stage_id",
    "stage_name",
    "stage_version",
    "shadow",
    "status",
    "action",
    "decided_by",
    "triggered_rulesets",
    "metrics",
    "latency_ms",
    "payload_hash",
    "payload",
    "result_text",
)
_INSERT = (
    f"INSERT INTO sg_decision_log ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)})"
)
_BATCH = 500
_PURGE_EVERY = 600.0  # seconds between retention purges


def create_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(text(statement))


def open_engine(db: str) -> Engine:
    """A SQLAlchemy engine on the server database named like ``STAGEGUARD_SERVER_DB`` (a PostgreSQL URL,
    ``sqlite:///path`` or a SQLite file path)."""
    from ..store.postgres import is_postgres_url
    from ._db import sqlite_path

    if is_postgres_url(db):
        from ..store.postgres import create_postgres_engine

        return create_postgres_engine(db)
    return create_engine(f"sqlite:///{sqlite_path(db)}")


def result_labels(ruleset_results: Sequence[dict[str, Any]]) -> list[str]:
    """The names :mod:`stageguard.evaluation` gives rulesets: description, else ``ruleset N``."""
    labels: list[str] = []
    for i, ruleset in enumerate(ruleset_results, 1):
        label = ruleset.get("description") or f"ruleset {i}"
        labels.append(label if label not in labels else f"{label} ({i})")
    return labels


def log_row(logged_at: float, request: Request, content: bytes, *, texts: bool) -> dict[str, Any] | None:
    """The log row of one invoke (``None`` for an invoke of inline rulesets, without a stage)."""
    data = json.loads(content)
    meta = data.get("stage_metadata") or {}
    if not meta.get("stage_name"):
        return None
    results = data.get("ruleset_results") or []
    labels = result_labels(results)
    triggered = [
        name for name, r in zip(labels, results, strict=False) if str(r.get("status")).lower() == "triggered"
    ]
    status = str(data.get("status", "")).lower()
    metrics = {
        name: result.get("value")
        for name, result in (data.get("metric_results") or {}).items()
        if str(result.get("status") or "success").lower() == "success"
    }
    action = data.get("shadow_action_result") or data.get("action_result") or {}
    payload_json = request.payload.model_dump_json(exclude_none=True)
    execution_time = (data.get("trace_metadata") or {}).get("execution_time")
    return {
        "logged_at": logged_at,
        "project_id": meta.get("project_id"),
        "stage_id": meta.get("stage_id"),
        "stage_name": meta.get("stage_name"),
        "stage_version": meta.get("stage_version"),
        "shadow": 1 if data.get("shadow") else 0,
        "status": status,
        "action": action.get("type"),
        "decided_by": triggered[0] if status == "triggered" and triggered else None,
        "triggered_rulesets": json.dumps(triggered),
        "metrics": json.dumps(metrics, default=str),
        "latency_ms": execution_time * 1000 if isinstance(execution_time, (int, float)) else None,
        "payload_hash": hashlib.sha256(payload_json.encode()).hexdigest(),
        "payload": payload_json if texts else None,
        "result_text": data.get("text") if texts else None,
    }


class DecisionLog:
    """Writes invoke decisions to ``sg_decision_log`` from a background thread (see the module doc)."""

    def __init__(
        self,
        engine: Engine,
        *,
        retention_days: float = 30.0,
        texts: bool = False,
        max_queue: int = 100_000,
    ) -> None:
        self.engine = engine
        self.retention_days = retention_days
        self.texts = texts
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[tuple[float, Request, bytes] | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_purge = 0.0
        create_schema(engine)

    def record(self, request: Request, content: bytes) -> None:
        """Queue one invoke's decision; returns at once (a full queue drops it, counted)."""
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait((time.time(), request, content))
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning("decision log queue full: %d decisions dropped so far", self.dropped)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stageguard-decision-log", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            batch = [item]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(entry is None for entry in batch)
            self._write([entry for entry in batch if entry is not None])
            if time.monotonic() - self._last_purge > _PURGE_EVERY:
                self.purge()
            # done only now, so that flush() returning means the purge that came with the batch is over
            for _ in batch:
                self._queue.task_done()

    def _write(self, batch: Iterable[tuple[float, Request, bytes]]) -> None:
        rows = []
        for logged_at, request, content in batch:
            try:
                row = log_row(logged_at, request, content, texts=self.texts)
            except Exception as exc:  # a response we can't read: skip it, keep logging the others
                logger.warning("decision log: could not read a response: %s", exc)
                continue
            if row is not None:
                rows.append(row)
        if not rows:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(text(_INSERT), rows)
            self.written += len(rows)
        except Exception as exc:
            self.dropped += len(rows)
            logger.warning("decision log: %d decisions not written: %s", len(rows), exc)

    def purge(self) -> int:
        """Delete rows older than the retention; how many were deleted."""
        self._last_purge = time.monotonic()
        cutoff = time.time() - self.retention_days * 86_400
        try:
            with self.engine.begin() as conn:
                deleted = conn.execute(
                    text("DELETE FROM sg_decision_log WHERE logged_at < :cutoff"), {"cutoff": cutoff}
                ).rowcount
        except Exception as exc:
            logger.warning("decision log: purge failed: %s", exc)
            return 0
        return int(deleted or 0)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued decision is written (``False`` if that took longer than ``timeout``)."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        thread = self._thread
        if thread is not None:
            self.flush(timeout)
            self._queue.put(None)
            thread.join(timeout)
            self._thread = None


# -- reading it back (stageguard report) -------------------------------------------------------------


@dataclass
class LoggedDecision:
    logged_at: float
    stage_version: int | None
    shadow: bool
    status: str
    decided_by: str | None
    triggered_rulesets: list[str]
    metrics: dict[str, Any]
    latency_ms: float | None
    payload_hash: str


def read_decisions(
    engine: Engine,
    stage_name: str,
    since: float,
    *,
    project_id: str | None = None,
    limit: int | None = None,
) -> list[LoggedDecision]:
    """The stage's logged decisions since ``since`` (a UNIX time), oldest first (in one project, or in
    every project having a stage of that name); with ``limit``, only the newest ``limit`` of them."""
    create_schema(engine)
    where = "stage_name = :stage AND logged_at >= :since"
    if project_id is not None:
        where += " AND project_id = :project"
    # the newest ``limit`` rows, put back in time order below
    order = "logged_at" if limit is None else f"logged_at DESC LIMIT {int(limit)}"
    with engine.connect() as conn:
        rows = list(
            conn.execute(
                text(
                    "SELECT logged_at, stage_version, shadow, status, decided_by, triggered_rulesets,"
                    f" metrics, latency_ms, payload_hash FROM sg_decision_log WHERE {where} ORDER BY {order}"
                ),
                {"stage": stage_name, "since": since, "project": project_id},
            ).mappings()
        )
        if limit is not None:
            rows.reverse()
        return [
            LoggedDecision(
                logged_at=row["logged_at"],
                stage_version=row["stage_version"],
                shadow=bool(row["shadow"]),
                status=row["status"],
                decided_by=row["decided_by"],
                triggered_rulesets=json.loads(row["triggered_rulesets"]),
                metrics=json.loads(row["metrics"]),
                latency_ms=row["latency_ms"],
                payload_hash=row["payload_hash"],
            )
            for row in rows
        ]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(value: str) -> float:
    """``"7d"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if match is None:
        raise ValueError(f"--since {value!r} is not a duration such as 30m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def quantile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of ``values`` (``None`` when empty)."""
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
                "latency_p50_ms": quantile(latencies, 0.5),
                "latency_p99_ms": quantile(latencies, 0.99),
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

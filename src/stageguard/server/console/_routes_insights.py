"""What a stage does: the try-it form, decision-log charts, and evaluation reports."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..._subscriptions import SubscriptionDelivery
from ...engine import Engine
from ...evaluation import ruleset_labels
from ...protect import Protect, finish_json
from ...response import Request as InvokeRequest
from ...stages import Stage, StageType
from .._auth import Principal
from .._decision_log import LoggedDecision, parse_since, quantile, read_decisions, result_labels, summarise
from .._errors import ApiError, as_api_error, check_text_lengths, check_version, invalid
from .._runtime import InvokeRunner
from .._state import ServerState
from ._charts import Series, rate_chart
from ._render import page
from ._session import Session, Viewer, checked_form, state_of

router = APIRouter()
_T = TypeVar("_T", dict[str, Any], list[Any])


NOTHING = "\N{EN DASH}"  # what an empty cell shows


def _shown(value: Any) -> str:
    """A metric value, rule target or result as short text."""
    if value is None:
        return NOTHING
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _utc(timestamp: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime(fmt)


# -- try it ------------------------------------------------------------------------------------------

_TRY_FIELDS = ("input", "output", "context", "rulesets")


def _json_field(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"not valid JSON: {exc}", (name,)) from None


def _invoke_request(
    stage: Stage, principal: Principal, version: int | None, form: dict[str, str]
) -> InvokeRequest:
    """The invoke the form asks for, as ``POST /protect/invoke`` would receive it (422 when it is not
    valid: the API's messages). ``context`` is one document, or a JSON list of them when it starts
    with ``[``; ``rulesets`` (local stages only) is JSON: a list of rulesets or
    ``{"prioritized_rulesets": [...]}``."""
    payload: dict[str, Any] = {name: form[name] for name in ("input", "output") if form[name].strip()}
    context = form["context"].strip()
    if context:
        payload["context"] = _json_field("context", context) if context.startswith("[") else form["context"]
    body: dict[str, Any] = {
        "payload": payload,
        "project_id": principal.project_id,
        "stage_id": stage.id,
        "stage_version": version,
    }
    if stage.type is StageType.local and form["rulesets"].strip():
        rulesets = _json_field("rulesets", form["rulesets"])
        if isinstance(rulesets, dict) and "prioritized_rulesets" in rulesets:
            rulesets = rulesets["prioritized_rulesets"]
        body["prioritized_rulesets"] = rulesets
    return InvokeRequest.model_validate(body)


class _Muted(SubscriptionDelivery):
    """Subscriptions of a try-it run are not notified: trying a payload must not page anyone."""

    def deliver(self, urls: Iterable[str], body: bytes) -> list[concurrent.futures.Future[bool]]:
        return []


def try_runner(state: ServerState) -> InvokeRunner:
    """The runner of try-it: the server's stages, scorers, limits and deadline, on threads (the
    worker processes would notify subscriptions), with subscriptions muted."""
    engine = Engine(state.protect.engine.registry, subscriptions=_Muted())
    settings = dataclasses.replace(state.settings, invoke_processes=0)
    return InvokeRunner(Protect(state.databases.stages, engine=engine), settings)


async def _decide(request: Request, invoke: InvokeRequest) -> dict[str, Any]:
    """The invoke's response, evaluated as ``POST /protect/invoke`` evaluates it (same limits, deadline
    and fail policy), but not written to the decision log and notifying no subscription."""
    state = state_of(request)
    chars = check_text_lengths(
        invoke.payload.model_dump(exclude_none=True), ("payload",), state.settings.max_text_chars
    )
    state.check_subscriptions(invoke.prioritized_rulesets)
    runner: InvokeRunner = request.app.state.try_runner
    content = finish_json(invoke, await runner.invoke(invoke, chars))
    data: dict[str, Any] = json.loads(content)
    return data


def _decision_view(data: dict[str, Any]) -> dict[str, Any]:
    """The response as rows for the template: rulesets, their rules, the metrics."""
    results = data.get("ruleset_results") or []
    rulesets, rules = [], []
    for label, result in zip(result_labels(results), results, strict=True):
        status = str(result.get("status") or "").lower()
        action = result.get("action") or {}
        rulesets.append({"label": label, "status": status, "action": action.get("type") or NOTHING})
        for rule in result.get("rule_results") or []:
            rule_status = str(rule.get("status") or "").lower()
            rules.append(
                {
                    "ruleset": label,
                    "metric": rule.get("metric"),
                    "operator": rule.get("operator"),
                    "target": _shown(rule.get("target_value")),
                    "value": _shown(rule.get("value")),
                    "status": rule_status,
                }
            )
    metrics = [
        {
            "name": name,
            "value": _shown(result.get("value")),
            "status": str(result.get("status") or "").lower(),
            "explanation": result.get("explanation") or result.get("error_message") or "",
        }
        for name, result in (data.get("metric_results") or {}).items()
    ]
    action = data.get("action_result") or {}
    execution_time = (data.get("trace_metadata") or {}).get("execution_time")
    return {
        "status": str(data.get("status") or "").lower(),
        "text": data.get("text"),
        "action": action.get("type"),
        "rulesets": rulesets,
        "rules": rules,
        "metrics": metrics,
        "notes": data.get("notes") or [],
        "failure": data.get("failure"),
        "version": (data.get("stage_metadata") or {}).get("stage_version"),
        "latency_ms": execution_time * 1000
        if isinstance(execution_time, (int, float)) and execution_time >= 0
        else None,
    }


def _problems(error: ApiError) -> list[str]:
    if isinstance(error.detail, str):
        return [error.detail]
    return [
        ": ".join(
            part for part in (".".join(str(p) for p in item.get("loc", ())), str(item.get("msg", ""))) if part
        )
        for item in error.detail
    ]


def _try_page(
    request: Request,
    session: Session,
    stage: Stage,
    version: int | None,
    form: dict[str, str],
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    return page(
        request,
        "try.html",
        session,
        status=status,
        stage=stage,
        stage_version=version,  # ``version`` is the console's own (the footer's)
        form=form,
        query=f"?version={version}" if version is not None else "",
        **context,
    )


def _stage(request: Request, session: Session, stage_id: str, version: int | None) -> Stage:
    check_version(version, ("query", "version"))
    return state_of(request).stage(session.principal, stage_id, version)


@router.get("/stages/{stage_id}/try", name="try")
def try_form(request: Request, stage_id: str, session: Viewer, version: int | None = None) -> Response:
    stage = _stage(request, session, stage_id, version)
    rulesets = [ruleset.model_dump(mode="json", exclude_none=True) for ruleset in stage.prioritized_rulesets]
    form = {name: "" for name in _TRY_FIELDS}
    form["rulesets"] = json.dumps(rulesets, indent=2, ensure_ascii=False)
    return _try_page(request, session, stage, version, form)


@router.post("/stages/{stage_id}/try")
async def try_run(request: Request, stage_id: str, session: Viewer, version: int | None = None) -> Response:
    """Any logged-in key may run it: it changes nothing (the decision log included). The CSRF check
    still applies, so another site can't spend this server's time with the user's session."""
    posted = await checked_form(request, session)
    stage = await run_in_threadpool(_stage, request, session, stage_id, version)
    form = {name: str(posted.get(name) or "") for name in _TRY_FIELDS}
    try:
        invoke = _invoke_request(stage, session.principal, version, form)
        decision = _decision_view(await _decide(request, invoke))
    except Exception as exc:
        error = as_api_error(exc)  # the API's status and messages
        if error is None:
            raise
        return _try_page(request, session, stage, version, form, status=error.status, errors=_problems(error))
    return _try_page(request, session, stage, version, form, decision=decision)


# -- activity (the decision log) ---------------------------------------------------------------------

SINCE_CHOICES = ("1h", "24h", "7d", "30d")
# Bucket widths of the trigger chart (seconds): the narrowest giving at most _MAX_BUCKETS buckets.
_BUCKET_SIZES = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86_400, 7 * 86_400, 30 * 86_400)
_MAX_BUCKETS = 24


def trigger_series(
    decisions: list[LoggedDecision], rulesets: list[str]
) -> tuple[list[str], list[Series], int]:
    """Live decisions in time buckets: the bucket labels (UTC), the share of decisions each ruleset
    triggered on per bucket (``None`` for buckets without decisions; ``rulesets`` first, then any other
    ruleset seen in the log), and the bucket width in seconds."""
    live = [d for d in decisions if not d.shadow]
    if not live:
        return [], [], 0
    first, last = live[0].logged_at, live[-1].logged_at
    size = next((s for s in _BUCKET_SIZES if (last - first) / s < _MAX_BUCKETS), _BUCKET_SIZES[-1])
    start = first - first % size
    count = int((last - start) // size) + 1
    totals = [0] * count
    names = list(dict.fromkeys([*rulesets, *(n for d in live for n in d.triggered_rulesets)]))
    hits = {name: [0] * count for name in names}
    for decision in live:
        bucket = int((decision.logged_at - start) // size)
        totals[bucket] += 1
        for name in decision.triggered_rulesets:
            hits[name][bucket] += 1
    fmt = "%m-%d" if size >= 86_400 else "%m-%d %H:%M"
    labels = [_utc(start + i * size, fmt) for i in range(count)]
    series = [
        Series(name, [n / total if total else None for n, total in zip(hits[name], totals, strict=True)])
        for name in names
    ]
    return labels, series, size


def _latency_rows(summary: dict[str, Any], decisions: list[LoggedDecision]) -> list[dict[str, Any]]:
    """p50 / p99 from :func:`summarise`, with p90 from the same quantile."""
    latencies: dict[tuple[int | None, str], list[float]] = defaultdict(list)
    for d in decisions:
        if d.latency_ms is not None:
            latencies[(d.stage_version, "shadow" if d.shadow else "live")].append(d.latency_ms)
    return [
        {
            "version": v["version"],
            "mode": v["mode"],
            "decisions": v["decisions"],
            "p50": v["latency_p50_ms"],
            "p90": quantile(latencies[(v["version"], v["mode"])], 0.9),
            "p99": v["latency_p99_ms"],
        }
        for v in summary["versions"]
    ]


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


# The page summarises at most this many decisions (the newest of the window), so that a busy stage's
# month of decisions can't take the server's memory and time.
MAX_DECISIONS = 100_000


@router.get("/stages/{stage_id}/activity", name="activity")
def activity(request: Request, stage_id: str, session: Viewer, since: str = "7d") -> Response:
    """Trigger rate per ruleset over time, status mix, latency percentiles and what shadow versions
    would have changed, from the decision log (``stageguard report``'s summary)."""
    state = state_of(request)
    stage = state.stage(session.principal, stage_id)
    try:
        window = parse_since(since)
    except ValueError as exc:
        raise invalid(str(exc), ("query", "since")) from None
    context: dict[str, Any] = {"stage": stage, "since": since, "since_choices": SINCE_CHOICES}
    engine = state.databases.sql
    if state.databases.decisions is None or engine is None:
        return page(request, "activity.html", session, log_off=True, **context)
    decisions = read_decisions(
        engine,
        stage.name,
        time.time() - window,
        project_id=session.principal.project_id,
        limit=MAX_DECISIONS,
    )
    summary = summarise(decisions)
    labels, series, size = trigger_series(decisions, ruleset_labels(stage.prioritized_rulesets))
    chart = (
        rate_chart(
            "trigger-chart", f"Trigger rate per ruleset of stage {stage.name}, live decisions", labels, series
        )
        if series
        else None
    )
    statuses = list(dict.fromkeys(s for v in summary["versions"] for s in v["statuses"]))
    return page(
        request,
        "activity.html",
        session,
        summary=summary,
        chart=chart,
        bucket=_duration(size) if size else "",
        statuses=statuses,
        latency=_latency_rows(summary, decisions),
        truncated=len(decisions) >= MAX_DECISIONS,
        first=_utc(decisions[0].logged_at) if decisions else "",
        last=_utc(decisions[-1].logged_at) if decisions else "",
        **context,
    )


# -- evaluation reports ------------------------------------------------------------------------------

_MAX_REPORT_BYTES = 50 * 1024 * 1024
_MAX_DIFF_ROWS = 200
_MAX_ERROR_ROWS = 50


def _reports_folder(state: ServerState, principal: Principal) -> Path | None:
    """The key's project's folder of reports: ``<console_reports>/<project name>`` (when the name is a
    plain file name) or ``<console_reports>/<project id>``, so a project sees only its own reports."""
    if not state.settings.console_reports:
        return None
    base = Path(state.settings.console_reports)
    name = principal.project_name
    plain = name not in ("", ".", "..") and not any(c in name for c in "/\\\0") and not name.startswith(".")
    for folder in ([name] if plain else []) + [principal.project_id]:
        if (base / folder).is_dir():
            return base / folder
    return None


def _listing(folder: Path | None) -> dict[str, tuple[Path, os.stat_result]]:
    """The JSON files directly in ``folder`` (regular files, not links or hidden files): their paths
    and ``stat`` by name."""
    if folder is None:
        return {}
    with os.scandir(folder) as entries:
        return {
            entry.name: (Path(entry.path), entry.stat(follow_symlinks=False))
            for entry in entries
            if entry.name.endswith(".json")
            and not entry.name.startswith(".")
            and entry.is_file(follow_symlinks=False)
        }


def _load(path: Path, size: int) -> dict[str, Any]:
    """A ``stageguard eval`` JSON result (ValueError when it isn't one)."""
    if size > _MAX_REPORT_BYTES:
        raise ValueError(
            f"too large to show ({size / 1e6:.0f} MB; the limit is {_MAX_REPORT_BYTES // 10**6} MB)"
        )
    try:
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not readable as JSON: {exc}") from None
    if not isinstance(data, dict) or "rows" not in data:
        raise ValueError("not a stageguard eval result (no 'rows' count)")
    return data


def _facts(data: dict[str, Any]) -> dict[str, str]:
    """The headline numbers of a result, as text."""

    def pct(value: Any) -> str:
        return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else NOTHING

    against = data.get("against")
    return {
        "stage": str(data.get("stage") or "(inline rulesets)"),
        "version": _shown(data.get("version")),
        "against": _shown(against.get("version")) if isinstance(against, dict) else "",
        "rows": _shown(data.get("rows")),
        "row_errors": _shown(data.get("row_errors")),
        "precision": pct(data.get("precision")),
        "recall": pct(data.get("recall")),
        "fpr": pct(data.get("fpr")),
        "accuracy": pct(data.get("accuracy")),
    }


@lru_cache(maxsize=512)
def _listed_facts(path: Path, size: int, mtime_ns: int) -> dict[str, str] | str:
    """:func:`_facts` of a file (or why it can't be shown), cached while the file is unchanged."""
    try:
        return _facts(_load(path, size))
    except ValueError as exc:
        return str(exc)


@router.get("/reports", name="reports")
def reports_page(request: Request, session: Viewer) -> Response:
    state = state_of(request)
    folder = _reports_folder(state, session.principal)
    reports = []
    for name, (path, stat) in sorted(_listing(folder).items(), key=lambda item: -item[1][1].st_mtime):
        facts = _listed_facts(path, stat.st_size, stat.st_mtime_ns)
        reports.append(
            {
                "name": name,
                "modified": _utc(stat.st_mtime),
                "facts": facts if isinstance(facts, dict) else None,
                "problem": facts if isinstance(facts, str) else None,
            }
        )
    return page(
        request,
        "reports.html",
        session,
        reports=reports,
        configured=bool(state.settings.console_reports),
        folder_found=folder is not None,
    )


def _part(data: dict[str, Any], key: str, kind: type[_T]) -> _T:
    """``data[key]`` when it is a ``kind`` (a dict or a list), else an empty one."""
    value = data.get(key)
    return value if isinstance(value, kind) else kind()


def _tables(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The result's ``tables`` (written by ``stageguard eval --save``), every cell as text."""
    tables = []
    for table in data.get("tables") or []:
        if isinstance(table, dict):
            tables.append(
                {
                    "title": _shown(table.get("title")),
                    "header": [_shown(cell) for cell in table.get("header") or []],
                    "rows": [
                        [_shown(cell) for cell in row]
                        for row in table.get("rows") or []
                        if isinstance(row, list)
                    ],
                }
            )
    return tables


@router.get("/reports/{report}", name="report")
def report_page(request: Request, report: str, session: Viewer) -> Response:
    """One report, rendered from its JSON by the console's templates (never the file itself: only names
    listed in the project's folder are read)."""
    state = state_of(request)
    folder = _reports_folder(state, session.principal)
    listed = _listing(folder).get(report)
    if listed is None:
        raise ApiError(404, f"no report named {report!r} in this project's reports")
    path, stat = listed
    try:
        data = _load(path, stat.st_size)
    except ValueError as exc:
        raise ApiError(422, f"{report}: {exc}") from None
    diff, gates = _part(data, "diff", dict), _part(data, "gates", dict)
    errors = [row for row in _part(data, "row_outcomes", list) if isinstance(row, dict) and row.get("error")]
    return page(
        request,
        "report.html",
        session,
        name=report,
        modified=_utc(stat.st_mtime),
        facts=_facts(data),
        tables=_tables(data),
        gates_failed=[_shown(g) for g in gates.get("failed") or []],
        diff_rows=[row for row in diff.get("rows") or [] if isinstance(row, dict)][:_MAX_DIFF_ROWS],
        diff_changed=diff.get("changed"),
        error_rows=errors[:_MAX_ERROR_ROWS],
        error_count=len(errors),
        shown=_shown,
    )

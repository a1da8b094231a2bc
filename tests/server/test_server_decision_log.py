"""The server's decision log (SQLite and PostgreSQL) and ``stageguard report`` reading it back."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _server_support import EMAIL_TEXT, Harness, make_harness, start_live
from sqlalchemy import create_engine, text

from stageguard import Protect
from stageguard.response import Request
from stageguard.server._decision_log import DecisionLog, read_decisions
from stageguard.server._settings import ServerSettings
from stageguard.store.sqlite import SQLiteStageStore

TOXIC = {
    "rules": [{"metric": "input_toxicity", "operator": "gt", "target_value": 0.5}],
    "action": {"type": "OVERRIDE", "choices": ["be nice"]},
    "description": "toxic",
}


def _invoke(h: Harness, text_: str, **body: Any) -> dict[str, Any]:
    response = h.client.post(
        "/protect/invoke",
        json={"payload": {"input": text_}, "stage_name": "guard", **body},
        headers=h.headers(),
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _report(db_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "stageguard", "report", "--db", db_url, "--stage", "guard", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_log_is_off_by_default(harness: Harness) -> None:
    assert harness.settings.decision_log is False
    assert harness.databases.decisions is None
    harness.create_stage()
    assert _invoke(harness, EMAIL_TEXT)["status"] == "TRIGGERED"


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEGUARD_DECISION_LOG", "1")
    monkeypatch.setenv("STAGEGUARD_DECISION_LOG_RETENTION_DAYS", "7")
    monkeypatch.setenv("STAGEGUARD_DECISION_LOG_TEXTS", "yes")
    settings = ServerSettings.from_env(db="x.db")
    assert (settings.decision_log, settings.decision_log_retention_days, settings.decision_log_texts) == (
        True,
        7.0,
        True,
    )
    with pytest.raises(ValueError, match="decision_log_retention_days"):
        ServerSettings(db="x.db", decision_log_retention_days=0)


def test_live_and_shadow_decisions_are_logged_and_reported(logged: Harness, db_url: str) -> None:
    stage = logged.create_stage()  # v1: blocks e-mail addresses
    pid = logged.project_id("acme")
    v2 = logged.client.post(
        f"/projects/{pid}/stages/{stage['id']}",
        json={"prioritized_rulesets": [TOXIC]},
        headers=logged.headers(),
    )
    assert v2.json()["version"] == 2
    texts = [EMAIL_TEXT, "hello there, how are you?", "you are a worthless idiot and I hate you"]
    for text_ in texts:  # the app runs v1 live and v2 in shadow on the same payloads
        _invoke(logged, text_, stage_version=1)
        _invoke(logged, text_, stage_version=2, shadow=True)
    log = logged.databases.decisions
    assert log is not None and log.flush()
    assert log.written == 6 and log.dropped == 0

    assert logged.databases.sql is not None
    decisions = read_decisions(logged.databases.sql, "guard", time.time() - 60)
    assert [(d.stage_version, d.shadow) for d in decisions] == [(1, False), (2, True)] * 3
    email_live = decisions[0]
    assert email_live.status == "triggered" and email_live.decided_by == "no emails"
    assert email_live.triggered_rulesets == ["no emails"]
    assert email_live.metrics["input_pii"] == ["email"]
    assert email_live.latency_ms is not None and email_live.latency_ms >= 0
    assert decisions[0].payload_hash == decisions[1].payload_hash != decisions[2].payload_hash
    with logged.databases.sql.connect() as conn:  # no texts unless the setting allows them
        stored = conn.execute(text("SELECT payload, result_text FROM sg_decision_log")).all()
    assert stored and all(row == (None, None) for row in stored)

    result = _report(db_url, "--since", "1h", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["decisions"] == 6
    modes = {(v["version"], v["mode"]): v for v in report["versions"]}
    assert modes[(1, "live")]["statuses"] == {"triggered": 1, "not_triggered": 2}
    assert modes[(2, "shadow")]["rulesets"] == {"toxic": {"triggered": 1, "rate": pytest.approx(1 / 3)}}
    (comparison,) = report["shadow_vs_live"]
    assert comparison["shadow_version"] == 2 and comparison["paired"] == 3 and comparison["changed"] == 2
    assert comparison["by_cause"] == {
        "would trigger: toxic": 1,
        "would let through: no emails (live v1)": 1,
    }

    table = _report(db_url, "--since", "7d")
    assert table.returncode == 0, table.stderr
    assert "shadow v2 vs live: 2 of 3 payloads decided differently" in table.stdout
    assert "would trigger: toxic" in table.stdout

    scoped = _report(db_url, "--project", "acme", "--json")
    assert scoped.returncode == 0, scoped.stderr
    assert json.loads(scoped.stdout)["decisions"] == 6
    logged.project_id("other")  # a project without that stage: nothing
    assert json.loads(_report(db_url, "--project", "other", "--json").stdout)["decisions"] == 0
    missing = _report(db_url, "--project", "ghost")
    assert missing.returncode == 2 and "project 'ghost' does not exist" in missing.stderr

    other = _report(db_url, "--since", "7d", "--stage", "nope")
    assert other.returncode == 0 and "no decisions of stage 'nope'" in other.stdout
    bad = _report(db_url, "--since", "a week")
    assert bad.returncode == 2 and "--since 'a week' is not a duration" in bad.stderr


def test_texts_are_kept_only_when_allowed(db_url: str) -> None:
    server = make_harness(db_url, decision_log=True, decision_log_texts=True)
    with server.client:
        server.create_stage()
        _invoke(server, EMAIL_TEXT)
        log = server.databases.decisions
        assert log is not None and log.flush()
        assert server.databases.sql is not None
        with server.databases.sql.connect() as conn:
            payload, result_text = conn.execute(
                text("SELECT payload, result_text FROM sg_decision_log")
            ).one()
    server.databases.close()
    assert json.loads(payload) == {"input": EMAIL_TEXT} and result_text == "blocked"


def test_retention_purge(logged: Harness) -> None:
    logged.create_stage()
    _invoke(logged, EMAIL_TEXT)
    log = logged.databases.decisions
    assert log is not None and log.flush()
    assert logged.databases.sql is not None
    with logged.databases.sql.begin() as conn:  # a decision logged 40 days ago (retention: 30)
        conn.execute(text("UPDATE sg_decision_log SET logged_at = :t"), {"t": time.time() - 40 * 86_400})
    _invoke(logged, "hello")
    assert log.flush()
    assert log.purge() == 1
    assert len(read_decisions(logged.databases.sql, "guard", 0)) == 1


def test_a_failing_log_never_fails_the_invoke(logged: Harness) -> None:
    logged.create_stage()
    log = logged.databases.decisions
    assert log is not None and logged.databases.sql is not None
    with logged.databases.sql.begin() as conn:
        conn.execute(text("DROP TABLE sg_decision_log"))
    assert _invoke(logged, EMAIL_TEXT)["status"] == "TRIGGERED"
    assert log.flush()
    assert log.dropped == 1 and log.written == 0


def test_recording_does_not_wait_for_the_database(tmp_path: Path) -> None:
    """record() only queues: with the database locked by another process, it still returns at once, and
    the decisions are written once the lock is released."""
    protect = Protect(SQLiteStageStore(":memory:"))
    protect.create_stage("guard", stage_type="central", prioritized_rulesets=[TOXIC])
    request = Request(payload={"input": "hello"}, stage_name="guard")
    content = protect.invoke_request(request).model_dump_json().encode()
    db = tmp_path / "log.db"
    engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 30})
    log = DecisionLog(engine)
    locker = sqlite3.connect(db)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.perf_counter()
        for _ in range(200):
            log.record(request, content)
        assert time.perf_counter() - started < 0.5
        time.sleep(0.2)
        assert log.written == 0  # the writer is waiting for the lock
    finally:
        locker.rollback()
        locker.close()
    assert log.flush(timeout=30) and log.written == 200
    log.close()
    engine.dispose()


def test_over_http_with_uvicorn(logged: Harness) -> None:
    """The same path through a real socket: the log is written while the server keeps answering."""
    logged.create_stage()
    server = start_live(logged)
    try:
        with httpx.Client(base_url=server.url, headers=logged.headers(), timeout=30) as client:
            for text_ in (EMAIL_TEXT, "hello"):
                body = {"payload": {"input": text_}, "stage_name": "guard"}
                assert client.post("/protect/invoke", json=body).status_code == 200
    finally:
        server.stop()
    log = logged.databases.decisions
    assert log is not None and log.flush() and log.written == 2
    assert logged.databases.sql is not None
    statuses = [d.status for d in read_decisions(logged.databases.sql, "guard", 0)]
    assert statuses == ["triggered", "not_triggered"]

"""RemoteStageStore: central stages from the server, evaluated in the app, refreshed within the TTL."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _server_support import EMAIL_TEXT, PII_RULESET, LiveServer

from stageguard import (
    ExecutionStatus,
    ProjectNotFoundError,
    Protect,
    create_protect_stage,
    get_protect_stage,
    invoke_protect,
    pause_protect_stage,
    set_default_protect,
)
from stageguard.client import RemoteStageStore

TTL = 0.3


@pytest.fixture
def remote(live: LiveServer) -> Iterator[Protect]:
    protect = Protect(RemoteStageStore(live.url, live.harness.key("acme", "app"), cache_ttl=TTL))
    yield protect
    protect.close()


def _wait_for(predicate: object, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_apps_pick_up_versions_and_pause_within_the_ttl(live: LiveServer, remote: Protect) -> None:
    harness = live.harness
    stage = harness.create_stage()
    assert remote.invoke({"input": EMAIL_TEXT}, stage_name="guard", project_name="acme").text == "blocked"
    admin = harness.headers()
    harness.client.post(f"/stages/{stage['id']}", json={"prioritized_rulesets": []}, headers=admin)

    def version_2() -> bool:
        response = remote.invoke({"input": EMAIL_TEXT}, stage_name="guard", project_name="acme")
        return response.stage_metadata is not None and response.stage_metadata.stage_version == 2

    assert _wait_for(version_2) < TTL + 1.0
    harness.client.put(f"/stages/{stage['id']}", params={"pause": "true"}, headers=admin)
    paused = lambda: remote.invoke(EMAIL_TEXT, stage_id=stage["id"]).status is ExecutionStatus.paused  # noqa: E731
    assert _wait_for(paused) < TTL + 1.0
    # pinned versions, async invokes, and the project "default" meaning the key's project
    pinned = remote.invoke(EMAIL_TEXT, stage_name="guard", project_name="acme", stage_version=1)
    assert pinned.status is ExecutionStatus.paused  # pause applies to every version
    harness.client.put(f"/stages/{stage['id']}", params={"pause": "false"}, headers=admin)
    time.sleep(TTL)
    pinned = asyncio.run(remote.ainvoke({"input": EMAIL_TEXT}, stage_name="guard", stage_version=1))
    assert pinned.text == "blocked" and pinned.stage_metadata is not None
    assert pinned.stage_metadata.project_id == harness.project_id("acme")


def test_stages_are_cached_between_refreshes(live: LiveServer, remote: Protect) -> None:
    live.harness.create_stage()
    store = remote.store
    assert isinstance(store, RemoteStageStore)
    calls: list[str] = []
    original = store.client.http.send

    def counting(call):  # type: ignore[no-untyped-def]
        calls.append(call.path)
        return original(call)

    store.client.http.send = counting  # type: ignore[method-assign]
    start = time.monotonic()
    while time.monotonic() - start < TTL * 3:
        remote.invoke(EMAIL_TEXT, stage_name="guard", project_name="acme")
    stage_fetches = [path for path in calls if "/stages" in path]
    assert 2 <= len(stage_fetches) <= 5  # one per TTL window, not one per invoke


def test_server_down_serves_the_last_known_stage(
    live: LiveServer, remote: Protect, caplog: pytest.LogCaptureFixture
) -> None:
    live.harness.create_stage()
    assert remote.invoke(EMAIL_TEXT, stage_name="guard", project_name="acme").text == "blocked"
    live.stop()
    time.sleep(TTL)
    with caplog.at_level(logging.WARNING, logger="stageguard"):
        response = remote.invoke(EMAIL_TEXT, stage_name="guard", project_name="acme")
        assert response.text == "blocked" and response.failure is None
        assert "serving the last known version (v1) of stage 'guard'" in caplog.text
        # never fetched: the fail policy answers (fail-open by default), nothing is raised
        unknown = remote.invoke({"input": EMAIL_TEXT}, stage_name="other", project_name="acme")
        assert unknown.status is ExecutionStatus.error and unknown.text == EMAIL_TEXT
        assert unknown.failure is not None and "unavailable" in unknown.failure.reason
        closed = remote.invoke(EMAIL_TEXT, stage_name="other", project_name="acme", fail_policy="fail_closed")
        assert closed.status is ExecutionStatus.triggered and closed.text != EMAIL_TEXT
        assert "answering fail_open" in caplog.text


def test_writes_through_the_store_are_seen_at_once(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    protect = Protect(RemoteStageStore(live.url, live.harness.key("acme", "admin"), cache_ttl=60))
    stage = protect.create_stage("guard", stage_type="central", prioritized_rulesets=[PII_RULESET])
    assert stage.project_id == live.harness.project_id("acme")  # "default" is the key's project
    assert protect.invoke(EMAIL_TEXT, stage_name="guard").text == "blocked"
    protect.pause_stage("guard")
    assert protect.invoke(EMAIL_TEXT, stage_name="guard").status is ExecutionStatus.paused
    protect.resume_stage("guard")
    assert protect.update_stage("guard", prioritized_rulesets=[]).version == 2
    assert protect.store.list_versions(stage.id) == [1, 2]
    assert protect.invoke(EMAIL_TEXT, stage_name="guard").status is ExecutionStatus.not_triggered
    assert [s.name for s in protect.list_stages()] == ["guard"]
    assert protect.delete_stage("guard") is True
    with pytest.raises(ProjectNotFoundError, match="not visible to this API key"):
        protect.create_stage("x", project_name="globex")
    protect.close()


def test_functional_api_uses_the_server_from_the_environment(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEGUARD_URL", live.url)
    monkeypatch.setenv("STAGEGUARD_API_KEY", live.harness.key("acme", "admin"))
    monkeypatch.setenv("STAGEGUARD_CACHE_TTL", "1.5")
    monkeypatch.setenv("GALILEO_PROJECT", "acme")
    set_default_protect(None)
    try:
        create_protect_stage(name="guard", stage_type="central", prioritized_rulesets=[PII_RULESET])
        # it is on the server, not in an embedded store
        on_server = live.harness.databases.stages.get_stage(live.harness.project_id("acme"), name="guard")
        assert on_server is not None and on_server.version == 1
        assert invoke_protect({"input": EMAIL_TEXT}, stage_name="guard").text == "blocked"
        assert pause_protect_stage(stage_name="guard").paused
        assert get_protect_stage(stage_name="guard").paused
        from stageguard import get_default_protect

        store = get_default_protect().store
        assert isinstance(store, RemoteStageStore) and store.cache_ttl == 1.5
    finally:
        set_default_protect(None)


def test_cache_ttl_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="cache_ttl"):
        RemoteStageStore("http://127.0.0.1:1", "sgk_x", cache_ttl=3600)
    monkeypatch.setenv("STAGEGUARD_CACHE_TTL", "soon")
    with pytest.raises(ValueError, match="STAGEGUARD_CACHE_TTL must be a number"):
        RemoteStageStore("http://127.0.0.1:1", "sgk_x")
    monkeypatch.delenv("STAGEGUARD_CACHE_TTL")
    assert RemoteStageStore("http://127.0.0.1:1", "sgk_x").cache_ttl == 5.0
    no_cache = RemoteStageStore("http://127.0.0.1:1", "sgk_x", cache_ttl=0)
    assert no_cache.generation() != no_cache.generation()


def test_a_blackholed_server_does_not_stall_every_invoke() -> None:
    """Connections open but nothing answers: the first fetch times out, the next ones fail at once."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as hole:
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        protect = Protect(RemoteStageStore(url, "sgk_x", timeout=0.3, cache_ttl=0.1, outage_backoff=5))
        start = time.monotonic()
        first = protect.invoke("hello", stage_name="guard", project_name="acme")
        assert first.status is ExecutionStatus.error and 0.25 < time.monotonic() - start < 1.5
        start = time.monotonic()
        for _ in range(5):
            assert protect.invoke("hello", stage_name="guard", project_name="acme").text == "hello"
        assert time.monotonic() - start < 0.2
        protect.close()


def test_library_default_store_takes_a_postgres_url(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``STAGEGUARD_DB=postgresql://...`` gives the functional API a PostgreSQL store (it used to be taken
    for a file path: a SQLite file under ``./postgresql:/user:password@host/``)."""
    from stageguard.api import store_from_env
    from stageguard.store.postgres import PostgresStageStore

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STAGEGUARD_URL", raising=False)
    monkeypatch.setenv("STAGEGUARD_DB", postgres_url)
    store = store_from_env()
    try:
        assert isinstance(store, PostgresStageStore)
    finally:
        store.close()
    assert list(tmp_path.iterdir()) == []  # no directory made from the URL
    monkeypatch.setenv("STAGEGUARD_DB", "mysql://u:secret@h/db")
    with pytest.raises(ValueError, match=r"unsupported database URL 'mysql://u:\*\*\*@h/db'"):
        store_from_env()

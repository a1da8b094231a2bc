"""``stageguard keys create|list|revoke`` and ``stageguard serve`` argument checks; the stage commands
against a server (``STAGEGUARD_URL``)."""

from __future__ import annotations

import json
import os

import pytest
from _server_support import LiveServer

from stageguard.cli import main
from stageguard.server import open_databases


def test_keys_create_list_revoke(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["keys", "create", "--db", db_url, "--project", "acme", "--role", "admin", "--name", "ci"]) == 0
    )
    out = capsys.readouterr()
    secret = out.out.strip()
    assert secret.startswith("sgk_") and "only time the key is shown" in out.err
    assert main(["keys", "create", "--db", db_url, "--project", "acme", "--role", "app", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["role"] == "app" and created["api_key"].startswith("sgk_")

    assert main(["keys", "list", "--db", db_url]) == 0
    listing = capsys.readouterr().out
    assert secret[:12] in listing and secret not in listing and "acme" in listing and "active" in listing
    assert main(["keys", "revoke", "--db", db_url, secret[:12]]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "list", "--db", db_url, "--project", "acme", "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)
    assert [k["revoked_at"] is not None for k in keys] == [True, False]
    assert main(["keys", "revoke", "--db", db_url, "sgk_nope"]) == 2
    assert "no key with id or prefix 'sgk_nope'" in capsys.readouterr().err

    databases = open_databases(db_url)
    try:
        project = databases.stages.get_project(name="acme")
        assert project is not None and databases.keys.find(secret) is not None
        assert databases.keys.find(created["api_key"]).project_id == project.id  # type: ignore[union-attr]
    finally:
        databases.close()


def test_serve_rejects_bad_arguments(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STAGEGUARD_SERVER_DB", raising=False)
    assert main(["serve", "--db", "mysql://x/y", "--workers", "1"]) == 2
    assert "unsupported database URL" in capsys.readouterr().err
    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert "STAGEGUARD_SERVER_DB" not in os.environ  # nothing leaks when serve fails


def test_stage_commands_use_the_server(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STAGEGUARD_URL", live.url)
    monkeypatch.setenv("STAGEGUARD_API_KEY", live.harness.key("acme", "admin"))
    assert main(["stages", "create", "remote-guard", "--type", "central"]) == 0
    assert main(["stages", "pause", "remote-guard"]) == 0
    assert main(["stages", "list"]) == 0
    out = capsys.readouterr().out
    assert "remote-guard" in out and "paused" in out
    stage = live.harness.databases.stages.get_stage(live.harness.project_id("acme"), name="remote-guard")
    assert stage is not None and stage.paused


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from stageguard.server import ServerSettings

    monkeypatch.setenv("STAGEGUARD_SERVER_DB", "postgresql://u:p@db/sg")
    monkeypatch.setenv("STAGEGUARD_WEBHOOK_ALLOWLIST", "hooks.example.com, *.corp.example 10.0.0.0/8")
    monkeypatch.setenv("STAGEGUARD_TOKEN_TTL", "7200")
    settings = ServerSettings.from_env()
    assert settings.db == "postgresql://u:p@db/sg" and settings.token_ttl == 7200
    assert settings.webhook_allowlist == ("hooks.example.com", "*.corp.example", "10.0.0.0/8")
    assert ServerSettings.from_env(db="other.db").db == "other.db"
    monkeypatch.setenv("STAGEGUARD_WEBHOOK_ALLOWLIST", "")
    assert ServerSettings.from_env().webhook_allowlist == ()  # no subscriptions at all
    monkeypatch.setenv("STAGEGUARD_TOKEN_TTL", "60")
    with pytest.raises(ValueError, match="more than 300 seconds"):
        ServerSettings.from_env()
    monkeypatch.setenv("STAGEGUARD_TOKEN_TTL", "an hour")
    with pytest.raises(ValueError, match="STAGEGUARD_TOKEN_TTL must be a number"):
        ServerSettings.from_env()
    monkeypatch.delenv("STAGEGUARD_TOKEN_TTL")
    monkeypatch.setenv("STAGEGUARD_JWT_SECRET", "short")
    with pytest.raises(ValueError, match="at least 32 characters"):
        ServerSettings.from_env()


def test_warm_up_loads_text_scorers_without_failing(caplog: pytest.LogCaptureFixture) -> None:
    import gc
    import logging

    from stageguard.engine import Engine
    from stageguard.server._warmup import warm_up

    with caplog.at_level(logging.INFO, logger="stageguard.server"):
        try:
            warm_up(Engine())
            assert gc.get_freeze_count() > 0
        finally:
            gc.unfreeze()  # this is the test process, not a server
    assert "warmed up" in caplog.text and "input_pii" in caplog.text
    assert "context_adherence" in caplog.text  # every built-in, inline scorer (as stageguard.warm_up)

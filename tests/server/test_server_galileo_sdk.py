"""Galileo's own Python SDK (galileo 2.7) against a real stageguard server on loopback.

The SDK is pointed at the server with ``GALILEO_CONSOLE_URL``/``GALILEO_API_URL`` and
``GALILEO_API_KEY``; it checks ``/healthcheck``, logs in (``/login/api_key``, ``/current_user``), looks
projects up and calls the stage and invoke routes exactly as it does against Galileo.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from _server_support import EMAIL_TEXT, LiveServer, galileo_sdk_env, reset_galileo_login

galileo_config = pytest.importorskip("galileo.config")
galileo_stages = pytest.importorskip("galileo.stages")
galileo_protect = pytest.importorskip("galileo.protect")
galileo_exceptions = pytest.importorskip("galileo.exceptions")
from galileo.resources.models.http_validation_error import HTTPValidationError  # noqa: E402
from galileo_core.schemas.protect.action import OverrideAction  # noqa: E402
from galileo_core.schemas.protect.execution_status import ExecutionStatus  # noqa: E402
from galileo_core.schemas.protect.payload import Payload  # noqa: E402
from galileo_core.schemas.protect.rule import Rule, RuleOperator  # noqa: E402
from galileo_core.schemas.protect.ruleset import Ruleset  # noqa: E402
from galileo_core.schemas.protect.stage import StageType  # noqa: E402


def _pii_rulesets() -> list[Ruleset]:
    return [
        Ruleset(
            rules=[Rule(metric="input_pii", operator=RuleOperator.contains, target_value="email")],
            action=OverrideAction(choices=["blocked by stageguard"]),
            description="no emails",
        )
    ]


@pytest.fixture
def sdk(live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """The SDK configured for ``live`` with an admin key of project acme."""

    def use(key: str) -> None:
        monkeypatch.setenv("GALILEO_API_KEY", key)
        reset_galileo_login()  # the SDK caches its login

    with galileo_sdk_env(monkeypatch, live.url, live.harness.key("acme", "admin"), tmp_path / "galileo"):
        live.use = use  # type: ignore[attr-defined]
        yield live


def test_sdk_manages_and_invokes_central_stages(sdk: LiveServer) -> None:
    stages = galileo_stages
    created = stages.create_protect_stage(
        project_name="acme", name="guard", stage_type=StageType.central, prioritized_rulesets=_pii_rulesets()
    )
    assert created is not None and created.version == 1 and created.type == StageType.central
    project_id = str(created.project_id)
    assert project_id == sdk.harness.project_id("acme")

    got = stages.get_protect_stage(project_name="acme", stage_name="guard")
    assert got.id == created.id and got.paused is False
    assert stages.get_protect_stage(project_id=project_id, stage_id=created.id).name == "guard"

    response = galileo_protect.invoke_protect(
        Payload(input=EMAIL_TEXT), project_name="acme", stage_name="guard"
    )
    assert response.status == ExecutionStatus.triggered and response.text == "blocked by stageguard"
    assert response.model_extra["stage_metadata"]["stage_version"] == 1
    assert response.trace_metadata.execution_time >= 0

    updated = stages.update_protect_stage(project_name="acme", stage_name="guard", prioritized_rulesets=[])
    assert updated.version == 2
    clean = galileo_protect.invoke_protect(
        Payload(input=EMAIL_TEXT), project_id=project_id, stage_name="guard"
    )
    assert clean.status == ExecutionStatus.not_triggered and clean.text == EMAIL_TEXT
    pinned = galileo_protect.invoke_protect(Payload(input=EMAIL_TEXT), stage_id=created.id, stage_version=1)
    assert pinned.text == "blocked by stageguard"

    paused = stages.pause_protect_stage(project_name="acme", stage_name="guard")
    assert paused.paused is True

    async def while_paused_then_resumed() -> tuple[object, object]:
        # one event loop: the SDK keeps its async HTTP client per thread, bound to the first loop
        during = await galileo_protect.ainvoke_protect(
            Payload(output=EMAIL_TEXT), project_name="acme", stage_name="guard"
        )
        resumed = await asyncio.to_thread(
            stages.resume_protect_stage, project_id=project_id, stage_id=created.id
        )
        assert resumed.paused is False
        after = await galileo_protect.ainvoke_protect(Payload(input=EMAIL_TEXT), stage_id=created.id)
        return during, after

    during, after = asyncio.run(while_paused_then_resumed())
    assert during.status == ExecutionStatus.paused and during.text == EMAIL_TEXT
    assert after.status == ExecutionStatus.not_triggered  # version 2 has no rules


def test_sdk_local_stage_and_environment_project(sdk: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "acme")
    local = galileo_stages.create_protect_stage(name="local-guard")
    assert local.type == StageType.local and local.version is None
    response = galileo_protect.invoke_protect(
        Payload(input=EMAIL_TEXT), prioritized_rulesets=_pii_rulesets(), stage_name="local-guard"
    )
    assert response.text == "blocked by stageguard"


def test_sdk_sees_clear_errors(sdk: LiveServer) -> None:
    exc = galileo_exceptions
    galileo_stages.create_protect_stage(project_name="acme", name="guard", stage_type=StageType.central)
    with pytest.raises(exc.ConflictError, match="already exists"):
        galileo_stages.create_protect_stage(project_name="acme", name="guard", stage_type=StageType.central)
    with pytest.raises(exc.NotFoundError, match="nope"):
        galileo_stages.get_protect_stage(project_name="acme", stage_name="nope")
    with pytest.raises(ValueError, match="not found"):  # the SDK's own message: the project isn't visible
        galileo_stages.get_protect_stage(project_name="globex", stage_name="guard")
    bad = [Ruleset(rules=[Rule(metric="input_tone", operator=RuleOperator.gt, target_value=0.5)])]
    invalid = galileo_stages.update_protect_stage(
        project_name="acme", stage_name="guard", prioritized_rulesets=bad
    )
    assert isinstance(invalid, HTTPValidationError)
    assert "does not support operator 'gt'" in invalid.detail[0].msg

    sdk.use(sdk.harness.key("acme", "app"))  # type: ignore[attr-defined]
    assert galileo_stages.get_protect_stage(project_name="acme", stage_name="guard").name == "guard"
    with pytest.raises(exc.ForbiddenError, match="role 'app'"):
        galileo_stages.pause_protect_stage(project_name="acme", stage_name="guard")
    assert (
        galileo_protect.invoke_protect(Payload(input="hi"), project_name="acme", stage_name="guard")
        is not None
    )

    sdk.use("sgk_not-a-key")  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="401"):
        galileo_stages.get_protect_stage(project_name="acme", stage_name="guard")

"""Protect and the functional API: stages by name or id, versions, pause, local vs central, caching."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import stageguard as sg
from stageguard import (
    ExecutionStatus,
    InvalidRequestError,
    OverrideAction,
    Payload,
    Protect,
    Rule,
    Ruleset,
    SQLiteStageStore,
    StageNotFoundError,
    StageType,
)


@pytest.fixture
def score(metric: Callable[..., str]) -> str:
    return metric("fixed_score", lambda p: 0.8 if "bad" in (p.input or "") else 0.1)


def _block(name: str, threshold: float = 0.5, text: str = "blocked") -> list[Ruleset]:
    return [
        Ruleset(
            rules=[Rule(metric=name, operator="gt", target_value=threshold)],
            action=OverrideAction(choices=[text]),
        )
    ]


def test_central_stage_latest_and_pinned(protect: Protect, score: str) -> None:
    protect.create_stage("guard", stage_type="central", prioritized_rulesets=_block(score, text="v1"))
    assert protect.invoke("bad input", stage_name="guard").text == "v1"
    protect.update_stage("guard", prioritized_rulesets=_block(score, text="v2"))
    latest = protect.invoke("bad input", stage_name="guard")
    assert latest.text == "v2" and latest.stage_metadata.stage_version == 2
    pinned = protect.invoke("bad input", stage_name="guard", stage_version=1)
    assert pinned.text == "v1" and pinned.stage_metadata.stage_version == 1
    assert protect.invoke("fine", stage_name="guard").status is ExecutionStatus.not_triggered
    with pytest.raises(StageNotFoundError, match="version 7"):
        protect.invoke("x", stage_name="guard", stage_version=7)


def test_stage_by_id_and_metadata(protect: Protect, score: str) -> None:
    stage = protect.create_stage(
        "guard", stage_type="central", prioritized_rulesets=_block(score), project_name="team"
    )
    response = protect.invoke("bad", stage_id=stage.id)
    meta = response.stage_metadata
    assert meta is not None
    assert (meta.stage_id, meta.stage_name, meta.project_id, meta.stage_type) == (
        stage.id,
        "guard",
        stage.project_id,
        StageType.central,
    )
    assert protect.invoke("bad", stage_name="guard", project_id=stage.project_id).triggered


def test_paused_stage_lets_everything_through(protect: Protect, score: str) -> None:
    protect.create_stage("guard", stage_type="central", prioritized_rulesets=_block(score))
    protect.pause_stage("guard")
    response = protect.invoke(Payload(input="bad", output="bad answer"), stage_name="guard")
    assert response.status is ExecutionStatus.paused
    assert response.text == "bad answer" and response.ruleset_results == []
    protect.resume_stage("guard")
    assert protect.invoke("bad", stage_name="guard").status is ExecutionStatus.triggered


def test_local_stage_takes_rulesets_at_invoke(protect: Protect, score: str) -> None:
    protect.create_stage("local-guard")
    assert protect.invoke("bad", _block(score), stage_name="local-guard").text == "blocked"
    # as Galileo (the SDK sends []): nothing to check, NOT_TRIGGERED, and a note says why
    empty = protect.invoke("bad", stage_name="local-guard")
    assert empty.status is ExecutionStatus.not_triggered and empty.text == "bad"
    assert empty.notes is not None and "is local and no prioritized_rulesets" in empty.notes[0]
    protect.pause_stage("local-guard")
    assert protect.invoke("bad", _block(score), stage_name="local-guard").status is ExecutionStatus.paused


def test_central_stage_ignores_inline_rulesets(protect: Protect, score: str) -> None:
    protect.create_stage("guard", stage_type="central", prioritized_rulesets=_block(score))
    response = protect.invoke("bad", _block(score, text="inline"), stage_name="guard")  # as Galileo
    assert response.text == "blocked" and response.notes is not None
    assert "is central: the 1 prioritized_rulesets passed were ignored" in response.notes[0]


def test_inline_rulesets_without_stage(protect: Protect, score: str) -> None:
    response = protect.invoke({"input": "bad"}, _block(score))
    assert response.triggered and response.stage_metadata is None
    with pytest.raises(InvalidRequestError, match="give a stage"):
        protect.invoke("bad")


def test_unknown_stage_and_get_none(protect: Protect) -> None:
    assert protect.get_stage("missing") is None
    with pytest.raises(StageNotFoundError):
        protect.invoke("x", stage_name="missing")


def test_stage_fail_policy_and_per_call_override(protect: Protect, metric: Callable[..., str]) -> None:
    def boom(_p: Payload) -> float:
        raise RuntimeError("down")

    broken = metric("broken_scorer", boom)
    protect.create_stage(
        "guard", stage_type="central", prioritized_rulesets=_block(broken), fail_policy="fail_closed"
    )
    assert protect.invoke("x", stage_name="guard").text == "blocked"
    opened = protect.invoke("x", stage_name="guard", fail_policy="fail_open")
    assert opened.status is ExecutionStatus.error and opened.text == "x"
    protect.set_fail_policy("guard", fail_policy="fail_open")
    assert protect.invoke("x", stage_name="guard").text == "x"


def test_changes_from_another_process_are_seen_without_restart(tmp_path: Path, score: str) -> None:
    app = Protect(SQLiteStageStore(tmp_path / "s.db"))
    governance = Protect(SQLiteStageStore(tmp_path / "s.db"))
    governance.create_stage("guard", stage_type="central", prioritized_rulesets=_block(score, text="v1"))
    assert app.invoke("bad", stage_name="guard").text == "v1"
    assert app.invoke("bad", stage_name="guard").text == "v1"  # cached now
    governance.update_stage("guard", prioritized_rulesets=_block(score, text="v2"))
    assert app.invoke("bad", stage_name="guard").text == "v2"
    governance.pause_stage("guard")
    assert app.invoke("bad", stage_name="guard").status is ExecutionStatus.paused


async def test_ainvoke(protect: Protect, score: str) -> None:
    protect.create_stage("guard", stage_type="central", prioritized_rulesets=_block(score))
    results = await asyncio.gather(*(protect.ainvoke(t, stage_name="guard") for t in ["bad", "ok", "bad"]))
    assert [r.status for r in results] == [
        ExecutionStatus.triggered,
        ExecutionStatus.not_triggered,
        ExecutionStatus.triggered,
    ]


def test_bad_timeout_is_rejected(protect: Protect, score: str) -> None:
    with pytest.raises(InvalidRequestError, match="timeout"):
        protect.invoke("x", _block(score), timeout=0)


@pytest.fixture
def default_protect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STAGEGUARD_DB", str(tmp_path / "default.db"))
    sg.set_default_protect(None)
    yield
    sg.set_default_protect(None)


def test_functional_api_with_galileo_names(
    default_protect: None, score: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "from-env")
    stage = sg.create_protect_stage(
        name="guard", stage_type=StageType.central, prioritized_rulesets=_block(score)
    )
    assert sg.get_protect_stage(stage_name="guard").id == stage.id
    assert sg.get_protect_stage(project_name="from-env", stage_name="guard").id == stage.id
    assert sg.get_protect_stage(stage_name="nope") is None
    assert sg.get_default_protect().store.get_project(name="from-env") is not None
    assert sg.invoke_protect(Payload(input="bad"), stage_name="guard").text == "blocked"
    assert (
        sg.update_protect_stage(stage_name="guard", prioritized_rulesets=_block(score, text="v2")).version
        == 2
    )
    assert sg.pause_protect_stage(stage_name="guard").paused
    assert sg.invoke_protect(Payload(input="bad"), stage_name="guard").status is ExecutionStatus.paused
    assert not sg.resume_protect_stage(stage_name="guard").paused
    assert asyncio.run(sg.ainvoke_protect(Payload(input="bad"), stage_name="guard")).text == "v2"
    local = sg.create_protect_stage(name="loc", description="app-owned")
    assert local.type is StageType.local
    assert sg.invoke_protect(Payload(input="bad"), _block(score), stage_id=local.id).triggered


def test_galileo_project_name_env(default_protect: None, score: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_PROJECT_NAME", "named")
    sg.create_protect_stage(name="guard")
    assert [s.name for s in sg.get_default_protect().list_stages(project_name="named")] == ["guard"]


class _DownStore(SQLiteStageStore):
    def get_stage(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        raise sg.StoreUnavailableError("connection refused")


def test_unreachable_store_follows_fail_policy(score: str) -> None:
    protect = Protect(_DownStore(":memory:"))
    protect.store.create_project("default")
    opened = protect.invoke("bad", stage_name="guard")
    assert opened.status is ExecutionStatus.error and opened.text == "bad"
    assert opened.failure is not None and "connection refused" in opened.failure.reason
    closed = protect.invoke("bad", stage_name="guard", fail_policy="fail_closed")
    assert closed.status is ExecutionStatus.triggered and closed.text != "bad"

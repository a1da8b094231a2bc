"""Stages: Galileo's routes under ``/projects/{project_id}/stages`` plus listing, versions and delete,
and the same operations by stage id alone under ``/stages/{stage_id}`` (a key has one project).

Reads need any key of the project; writes need an ``admin`` key. Another project's stage is a 404, the
same as a missing one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query

from ..errors import InvalidRequestError
from ..rules import Ruleset
from ..stages import StageType, payload_field_warnings
from ..status import FailPolicy
from ._auth import Admin, Caller, Principal, own_project
from ._errors import MAX_VERSION, ApiError, check_text_lengths, invalid
from ._schemas import DeletedOut, RulesetsBody, StageCreate, StageOut, VersionsOut
from ._state import ServerState, State

router = APIRouter(tags=["stages"])

Version = Annotated[
    int | None, Query(ge=1, le=MAX_VERSION, description="A version of a central stage (default: latest)")
]
Pause = Annotated[bool | None, Query(description="true pauses the stage, false resumes it")]
Policy = Annotated[FailPolicy | None, Query(description="Set the stage's fail policy")]

logger = logging.getLogger("stageguard")

# -- shared implementations


def _warnings(
    rulesets: list[Ruleset], payload_fields: Sequence[str] | None, strict: bool, stage_name: str
) -> list[str]:
    """Rules that can never be evaluated with the declared payload fields (logged); with ``strict`` a 422
    naming them, before anything is written."""
    try:
        warnings = payload_field_warnings(rulesets, payload_fields, strict=strict, stage_name=stage_name)
    except InvalidRequestError as exc:
        raise invalid(str(exc), ("body", "prioritized_rulesets")) from exc
    for warning in warnings:
        logger.warning("stage %r: %s", stage_name, warning)
    return warnings


def _create(state: ServerState, caller: Principal, project_id: str, body: StageCreate) -> StageOut:
    own_project(caller, project_id)
    if body.project_id is not None and str(body.project_id) != project_id:
        raise invalid(
            f"project_id {body.project_id} does not match the path's {project_id}", ("body", "project_id")
        )
    if body.type is StageType.local and body.prioritized_rulesets:
        raise invalid(
            "local stages are created without rulesets (they come with each invoke); create it as central",
            ("body", "prioritized_rulesets"),
        )
    check_text_lengths(body.model_dump(mode="json"), ("body",), state.settings.max_text_chars)
    state.check_subscriptions(body.prioritized_rulesets)
    warnings = _warnings(body.prioritized_rulesets, body.payload_fields, body.strict, body.name)
    stage = state.databases.stages.create_stage(
        caller.project_id,
        body.name,
        stage_type=body.type,
        prioritized_rulesets=body.prioritized_rulesets or None,
        description=body.description,
        paused=body.paused,
        fail_policy=body.fail_policy,
    )
    return StageOut.of(stage, warnings)


def _update(state: ServerState, caller: Principal, stage_id: str, body: RulesetsBody) -> StageOut:
    check_text_lengths(body.model_dump(mode="json"), ("body",), state.settings.max_text_chars)
    stage = state.stage(caller, stage_id)
    state.check_subscriptions(body.prioritized_rulesets)
    warnings = _warnings(body.prioritized_rulesets, body.payload_fields, body.strict, stage.name)
    return StageOut.of(state.databases.stages.update_stage(stage_id, body.prioritized_rulesets), warnings)


def _set(
    state: ServerState, caller: Principal, stage_id: str, pause: bool | None, fail_policy: FailPolicy | None
) -> StageOut:
    stage = state.stage(caller, stage_id)
    if pause is None and fail_policy is None:
        raise invalid("give pause=true|false and/or fail_policy=fail_open|fail_closed", ("query", "pause"))
    store = state.databases.stages
    if fail_policy is not None:
        stage = store.set_fail_policy(stage_id, fail_policy)
    if pause is not None:
        stage = store.set_paused(stage_id, pause)
    return StageOut.of(stage)


def _versions(state: ServerState, caller: Principal, stage_id: str) -> VersionsOut:
    stage = state.stage(caller, stage_id)
    versions = state.databases.stages.list_versions(stage_id)
    return VersionsOut(stage_id=stage.id, versions=versions, latest=versions[-1] if versions else None)


def _delete(state: ServerState, caller: Principal, stage_id: str) -> DeletedOut:
    state.stage(caller, stage_id)
    return DeletedOut(id=stage_id, deleted=state.databases.stages.delete_stage(stage_id))


# -- Galileo's routes (and extensions) under the project


@router.post("/projects/{project_id}/stages", summary="Create a stage (admin)")
def create_stage(project_id: str, body: StageCreate, state: State, caller: Admin) -> StageOut:
    return _create(state, caller, project_id, body)


@router.get("/projects/{project_id}/stages", summary="Get a stage by name or id")
def get_stage(
    project_id: str,
    state: State,
    caller: Caller,
    stage_name: str | None = None,
    stage_id: str | None = None,
    version: Version = None,
) -> StageOut:
    own_project(caller, project_id)
    if not stage_name and not stage_id:
        raise invalid("give stage_name or stage_id", ("query", "stage_name"))
    if stage_id:
        return StageOut.of(state.stage(caller, stage_id, version))
    stage = state.databases.stages.get_stage(caller.project_id, name=stage_name, version=version)
    if stage is None:
        what = f"stage {stage_name!r}" + (f" version {version}" if version is not None else "")
        raise ApiError(404, f"{what} not found in project {caller.project_name!r}", code="stage_not_found")
    return StageOut.of(stage)


@router.get("/projects/{project_id}/stages/all", summary="List the project's stages (latest versions)")
def list_stages(project_id: str, state: State, caller: Caller) -> list[StageOut]:
    own_project(caller, project_id)
    return [StageOut.of(stage) for stage in state.databases.stages.list_stages(caller.project_id)]


@router.get("/projects/{project_id}/stages/{stage_id}", summary="Get a stage (latest or ?version=)")
def get_stage_by_id(
    project_id: str, stage_id: str, state: State, caller: Caller, version: Version = None
) -> StageOut:
    own_project(caller, project_id)
    return StageOut.of(state.stage(caller, stage_id, version))


@router.post("/projects/{project_id}/stages/{stage_id}", summary="New version of a central stage (admin)")
def update_stage(project_id: str, stage_id: str, body: RulesetsBody, state: State, caller: Admin) -> StageOut:
    own_project(caller, project_id)
    return _update(state, caller, stage_id, body)


@router.put("/projects/{project_id}/stages/{stage_id}", summary="Pause, resume, set the fail policy (admin)")
def set_stage(
    project_id: str,
    stage_id: str,
    state: State,
    caller: Admin,
    pause: Pause = None,
    fail_policy: Policy = None,
) -> StageOut:
    own_project(caller, project_id)
    return _set(state, caller, stage_id, pause, fail_policy)


@router.get("/projects/{project_id}/stages/{stage_id}/versions", summary="List a stage's versions")
def list_versions(project_id: str, stage_id: str, state: State, caller: Caller) -> VersionsOut:
    own_project(caller, project_id)
    return _versions(state, caller, stage_id)


@router.delete("/projects/{project_id}/stages/{stage_id}", summary="Delete a stage and its versions (admin)")
def delete_stage(project_id: str, stage_id: str, state: State, caller: Admin) -> DeletedOut:
    own_project(caller, project_id)
    return _delete(state, caller, stage_id)


# -- the same by stage id alone (the key's project is implied)


@router.get("/stages/{stage_id}", summary="Get a stage of the key's project by id")
def get_by_id(stage_id: str, state: State, caller: Caller, version: Version = None) -> StageOut:
    return StageOut.of(state.stage(caller, stage_id, version))


@router.post("/stages/{stage_id}", summary="New version of a central stage (admin)")
def update_by_id(stage_id: str, body: RulesetsBody, state: State, caller: Admin) -> StageOut:
    return _update(state, caller, stage_id, body)


@router.put("/stages/{stage_id}", summary="Pause, resume, set the fail policy (admin)")
def set_by_id(
    stage_id: str, state: State, caller: Admin, pause: Pause = None, fail_policy: Policy = None
) -> StageOut:
    return _set(state, caller, stage_id, pause, fail_policy)


@router.get("/stages/{stage_id}/versions", summary="List a stage's versions")
def versions_by_id(stage_id: str, state: State, caller: Caller) -> VersionsOut:
    return _versions(state, caller, stage_id)


@router.delete("/stages/{stage_id}", summary="Delete a stage and its versions (admin)")
def delete_by_id(stage_id: str, state: State, caller: Admin) -> DeletedOut:
    return _delete(state, caller, stage_id)

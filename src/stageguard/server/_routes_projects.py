"""Project lookups (what Galileo's SDK does before every stage call). A key sees only its project."""

from __future__ import annotations

from fastapi import APIRouter, Query

from ._auth import Caller, own_project
from ._errors import ApiError
from ._schemas import ProjectOut
from ._state import ServerState, State

router = APIRouter(tags=["projects"])


def _own(state: ServerState, caller: Caller) -> ProjectOut:
    project = state.databases.stages.get_project(project_id=caller.project_id)
    if project is None:
        raise ApiError(404, f"project {caller.project_name!r} no longer exists", code="project_not_found")
    return ProjectOut.of(project)


@router.get("/projects", summary="Projects by name (only the key's own project is visible)")
def list_projects(
    state: State,
    caller: Caller,
    project_name: str | None = None,
    project_type: str | None = Query(None, alias="type", description="Ignored: all are gen_ai"),
) -> list[ProjectOut]:
    if project_name is not None and project_name.strip() != caller.project_name:
        return []
    return [_own(state, caller)]


@router.get("/projects/all", summary="All visible projects (the key's own)")
def all_projects(state: State, caller: Caller) -> list[ProjectOut]:
    return [_own(state, caller)]


@router.get("/projects/{project_id}", summary="A project by id")
def get_project(project_id: str, state: State, caller: Caller) -> ProjectOut:
    own_project(caller, project_id)
    return _own(state, caller)


@router.post("/projects", summary="Not available: projects come with their API keys")
def create_project(caller: Caller) -> ProjectOut:
    raise ApiError(
        403,
        "projects are created with their first API key: stageguard keys create --project NAME --role admin",
    )

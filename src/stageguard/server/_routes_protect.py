"""``POST /protect/invoke``: Galileo's invoke, evaluated by this server within the key's project."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi import Response as HTTPResponse

from ..response import Request, Response
from ._auth import Caller, Principal, own_project
from ._errors import ApiError
from ._state import State

router = APIRouter(tags=["protect"])

# Headers a request may not ask the response to carry (Galileo echoes ``headers`` into the response).
_RESERVED = {
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "set-cookie",
    "server",
    "date",
}


def _scoped(body: Request, caller: Principal) -> Request:
    """The request with the caller's project; naming another project is a 403."""
    if body.project_id is not None:
        own_project(caller, str(body.project_id))
    if body.project_name is not None and body.project_name != caller.project_name:
        raise ApiError(
            403,
            f"this API key belongs to project {caller.project_name!r} "
            f"and cannot access project {body.project_name!r}",
        )
    return body.model_copy(update={"project_id": caller.project_id, "project_name": None})


def _echo(headers: dict[str, str] | None) -> dict[str, str]:
    return {
        name: value
        for name, value in (headers or {}).items()
        if name.lower() not in _RESERVED and not any(c in name + value for c in "\r\n\0")
    }


@router.post(
    "/protect/invoke",
    summary="Check a payload against a stage (or inline rulesets)",
    response_model=Response,
    responses={404: {"description": "No such stage in the key's project"}},
)
async def invoke(body: Request, state: State, caller: Caller) -> HTTPResponse:
    request = _scoped(body, caller)
    state.check_subscriptions(request.prioritized_rulesets)
    response = await state.protect.ainvoke_request(request)
    return HTTPResponse(
        content=response.model_dump_json(), media_type="application/json", headers=_echo(request.headers)
    )

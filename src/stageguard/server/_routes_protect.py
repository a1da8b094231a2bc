"""``POST /protect/invoke``: Galileo's invoke, evaluated by this server within the key's project."""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi import Request as HTTPRequest
from fastapi import Response as HTTPResponse

from ..protect import finish_json
from ..response import Request, Response
from ._auth import Authenticated, Principal, own_project
from ._errors import ApiError, check_text_lengths, check_version
from ._state import ServerState

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


# RFC 9110 token characters for names; visible ASCII, spaces and tabs for values.
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_VALUE = re.compile(r"[\x20-\x7e\t]{0,8192}")


def _echo(headers: dict[str, str] | None) -> dict[str, str]:
    """The request's ``headers`` that can travel as HTTP headers (others are not echoed)."""
    return {
        name: value
        for name, value in (headers or {}).items()
        if name.lower() not in _RESERVED and _NAME.fullmatch(name) and _VALUE.fullmatch(value)
    }


@router.post(
    "/protect/invoke",
    summary="Check a payload against a stage (or inline rulesets)",
    response_model=Response,
    responses={404: {"description": "No such stage in the key's project"}},
)
async def invoke(body: Request, http: HTTPRequest, caller: Authenticated) -> HTTPResponse:
    """Evaluated on the server's worker threads within the request's ``timeout`` (capped by
    ``STAGEGUARD_MAX_INVOKE_TIMEOUT``); when it passes, the fail policy answers.

    As Galileo: a central stage uses its own rulesets (rulesets passed are ignored, and ``notes`` says so);
    a local stage invoked without rulesets checks nothing (``NOT_TRIGGERED``, with a note)."""
    state: ServerState = http.app.state.stageguard
    with state.gate.in_progress(caller.key_id):  # here rather than in a dependency: the hot path
        request = _scoped(body, caller)
        check_version(request.stage_version, ("body", "stage_version"))
        chars = check_text_lengths(
            request.payload.model_dump(exclude_none=True), ("body", "payload"), state.settings.max_text_chars
        )
        state.check_subscriptions(request.prioritized_rulesets)
        # notes (central stage's rulesets ignored, local stage without rulesets) and the caller's metric
        # spellings, as on the direct path
        content = finish_json(request, await state.runner.invoke(request, chars))
    log = state.databases.decisions
    if log is not None:  # queued for a background thread: the invoke doesn't wait for the database
        log.record(request, content)
    return HTTPResponse(content=content, media_type="application/json", headers=_echo(request.headers))

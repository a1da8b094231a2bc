"""Health and Galileo's login flow: ``/healthcheck``, ``/login/api_key``, ``/current_user``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ._auth import Caller, client_address
from ._schemas import SYSTEM_USER_EMAIL, CurrentUser, Health, LoginBody, TokenOut
from ._state import State

router = APIRouter(tags=["auth"])


_HEALTH = Health()


@router.get("/healthcheck", summary="Liveness (no credentials needed)")
async def healthcheck() -> Health:
    """Answered on the event loop, which never runs scoring: fast while the invoke workers are busy."""
    return _HEALTH


@router.post("/login/api_key", summary="Exchange an API key for a signed, expiring token")
async def login(body: LoginBody, state: State, request: Request) -> TokenOut:
    client = client_address(request)
    async with state.gate.counting_failures(client):
        key = await state.auth.acheck_key(body.api_key)
    await state.gate.hit(key.id)
    return TokenOut(access_token=state.auth.issue(key), expires_in=int(state.auth.token_ttl))


@router.get("/current_user", summary="Who the credentials belong to (an API key of one project)")
def current_user(caller: Caller) -> CurrentUser:
    return CurrentUser(
        id=caller.key_id,
        email=SYSTEM_USER_EMAIL.replace("stageguard@", f"key-{caller.key_id[:8]}@"),
        key_role=caller.role.value,
        project_id=caller.project_id,
        project_name=caller.project_name,
    )

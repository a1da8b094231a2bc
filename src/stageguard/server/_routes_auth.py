"""Health and Galileo's login flow: ``/healthcheck``, ``/login/api_key``, ``/current_user``."""

from __future__ import annotations

from fastapi import APIRouter

from ._auth import Caller
from ._schemas import SYSTEM_USER_EMAIL, CurrentUser, Health, LoginBody, TokenOut
from ._state import State

router = APIRouter(tags=["auth"])


@router.get("/healthcheck", summary="Liveness (no credentials needed)")
def healthcheck() -> Health:
    return Health()


@router.post("/login/api_key", summary="Exchange an API key for a signed, expiring token")
def login(body: LoginBody, state: State) -> TokenOut:
    key = state.auth.check_key(body.api_key)
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

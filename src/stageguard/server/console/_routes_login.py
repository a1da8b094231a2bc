"""Logging in and out with an API key, and the home page (the key's project and its stages)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .._auth import client_address
from .._errors import ApiError
from ._render import page, redirect, url
from ._session import COOKIE, Viewer, checked_form, same_origin, state_of

router = APIRouter()


@router.get("/login", name="login")
def login_form(request: Request) -> Response:
    return page(request, "login.html", login_url=url(request, "login"))


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key like the API does (failed attempts are limited per client address), then set the
    session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS, expiring with the token."""
    same_origin(request)
    state = state_of(request)
    client = client_address(request)
    form = await request.form()
    secret = form.get("api_key")
    secret = secret.strip() if isinstance(secret, str) else ""
    try:
        async with state.gate.counting_failures(client):
            if not secret:
                raise ApiError(401, "enter an API key (sgk_...)")
            key = await state.auth.acheck_key(secret)
    except ApiError as exc:
        if exc.status != 401:
            raise
        return page(request, "login.html", status=401, error=str(exc), login_url=url(request, "login"))
    response = redirect(request, "home")
    response.set_cookie(
        COOKIE,
        state.auth.issue(key),
        max_age=int(state.auth.token_ttl),
        path=url(request, "home"),
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout", name="logout")
async def logout(request: Request, session: Viewer) -> Response:
    await checked_form(request, session)
    response = redirect(request, "login")
    response.delete_cookie(COOKIE, path=url(request, "home"), httponly=True, samesite="strict")
    return response


@router.get("/", name="home")
def home(request: Request, session: Viewer) -> Response:
    """The key's project (a key has one) and its stages: type, latest version, paused."""
    state = state_of(request)
    stages = state.databases.stages.list_stages(session.principal.project_id)
    return page(request, "home.html", session, stages=sorted(stages, key=lambda stage: stage.name.lower()))

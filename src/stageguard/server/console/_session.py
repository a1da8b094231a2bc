"""Who is looking: the login cookie, roles, and the CSRF check on every form that changes something.

The cookie holds the same signed, expiring token ``POST /login/api_key`` hands out, so a revoked key
stops working in the console as in the API. Forms carry a CSRF token: an HMAC of the cookie under the
server's secret (nothing to store, invalid for any other session). Changes are also refused when the
browser says the form came from another origin.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from .._auth import Principal, require_admin
from .._errors import ApiError
from .._keys import looks_like_key
from .._state import ServerState

COOKIE = "sg_console"


class LoginRequired(Exception):
    """No valid session: the console answers with the login page (and says why, when there is a why)."""


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.stageguard
    return state


def csrf_for(state: ServerState, token: str) -> str:
    return state.auth.sign("console-csrf:" + token)


async def _session(request: Request) -> Session:
    state = state_of(request)
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequired("")
    if looks_like_key(token):  # the cookie holds a login token, never a raw key
        raise LoginRequired("log in with the form")
    try:
        principal = await state.auth.aprincipal(token)
    except ApiError as exc:
        if exc.status == 401:
            raise LoginRequired(str(exc)) from None
        raise
    return Session(principal, csrf_for(state, token))


async def _admin(session: Annotated[Session, Depends(_session)]) -> Session:
    require_admin(session.principal)
    return session


def same_origin(request: Request) -> None:
    """403 when the browser says the request came from another site (``Origin`` or ``Sec-Fetch-Site``)."""
    origin = request.headers.get("origin")
    expected = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != "null" and origin != expected:
        raise ApiError(403, f"refused: this form was sent from {origin}, not from the console ({expected})")
    if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
        raise ApiError(403, "refused: this form was sent from another site")


async def checked_form(request: Request, session: Session) -> FormData:
    """The posted form, after the CSRF and origin checks (403 otherwise)."""
    same_origin(request)
    form = await request.form()
    sent = form.get("csrf")
    # bytes: compare_digest refuses str with non-ASCII characters (a 500 for a forged token)
    if not isinstance(sent, str) or not hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), session.csrf.encode()
    ):
        raise ApiError(403, "the form's CSRF token is missing or stale: reload the page and try again")
    return form


Viewer = Annotated[Session, Depends(_session)]
Editor = Annotated[Session, Depends(_admin)]

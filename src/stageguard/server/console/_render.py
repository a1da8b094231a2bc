"""Pages: Jinja2 templates (autoescaped) rendered with the security headers every console answer carries."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..._version import __version__
from ._session import Session

HERE = Path(__file__).parent

# Scripts, styles and images only from this server; no inline script or style, no framing, forms only to
# this server. Charts are inline SVG drawn by the server (presentation attributes, no style attributes).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["version"] = __version__
    return env


def url(request: Request, name: str, **params: Any) -> str:
    """The path of the console's route ``name``. Names resolve in the console's own app (the API has
    routes with the same names), under the path it is mounted at."""
    path = request.app.url_path_for(name, **{k: str(v) for k, v in params.items()})
    return str(request.scope.get("root_path", "")) + str(path)


def page(
    request: Request,
    template: str,
    session: Session | None = None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered with ``context``, the session (user, CSRF token) and ``url()``."""
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            session=session,
            csrf=session.csrf if session is not None else "",
            url=lambda name, **params: url(request, name, **params),
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def redirect(request: Request, name: str, *, query: str = "", **params: Any) -> Response:
    """303 to the console route ``name`` (after a form: the browser GETs the result)."""
    target = url(request, name, **params) + (f"?{query}" if query else "")
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)

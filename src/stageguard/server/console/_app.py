"""The console as its own small app mounted at ``/console``: HTML errors (not the API's JSON), security
headers on every answer (static files included), and the login, stage and insight pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._errors import as_api_error, mapped_errors
from .._state import ServerState
from ._render import HERE, SECURITY_HEADERS, page, url
from ._routes_insights import router as insights_router
from ._routes_insights import try_runner
from ._routes_login import router as login_router
from ._routes_stages import router as stages_router
from ._session import LoginRequired

Endpoint = Callable[[Request], Awaitable[Response]]


def error_page(request: Request, status: int, message: str) -> Response:
    return page(request, "error.html", status=status, status_code=status, message=message)


def _message(detail: object) -> str:
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in problem.get('loc', ()))}: {problem.get('msg', '')}"
            for problem in detail
            if isinstance(problem, dict)
        )
    return str(detail)


def console_app(state: ServerState) -> FastAPI:
    """The console's app over ``state`` (the API's own stores, authenticator and engine)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stageguard = state
    app.state.try_runner = try_runner(state)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Endpoint) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return page(request, "login.html", status=401, error=str(exc), login_url=url(request, "login"))

    async def api_error(request: Request, exc: Exception) -> Response:
        error = as_api_error(exc)
        if error is None:  # a genuine bug: let it surface as one
            raise exc
        response = error_page(request, error.status, _message(error.detail))
        response.headers.update(error.headers)
        return response

    for kind in mapped_errors():  # the API's statuses and messages (a database outage is a 503)
        app.add_exception_handler(kind, api_error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return error_page(request, 422, _message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_page(request, exc.status_code, str(exc.detail))

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in (login_router, stages_router, insights_router):
        app.include_router(router)
    return app

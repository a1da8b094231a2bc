"""Error responses: every error is JSON with ``detail`` (what was wrong) and ``error`` (a stable code).

422 bodies keep FastAPI's shape (``detail`` is a list of ``{loc, msg, type}``), which Galileo's SDK
parses into its ``HTTPValidationError``; ``message`` repeats the first problem as one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    InvalidRequestError,
    ProjectNotFoundError,
    StageConflictError,
    StageNotFoundError,
    StoreUnavailableError,
    UnknownMetricError,
    one_line,
)
from ._jsonsafe import SafeJSONResponse as JSONResponse

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    503: "store_unavailable",
}


class ApiError(Exception):
    """An error answered as JSON with ``status``."""

    def __init__(
        self,
        status: int,
        detail: str | list[dict[str, Any]],
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail if isinstance(detail, str) else _first(detail))
        self.status = status
        self.detail = detail
        self.code = code or _CODES.get(status, "error")
        self.headers = dict(headers or {})


def _first(detail: Sequence[Mapping[str, Any]]) -> str:
    if not detail:
        return "invalid request"
    first = detail[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", ""))


def invalid(message: str, loc: Sequence[Any] = ("body",), kind: str = "value_error") -> ApiError:
    """A 422 in the validation-error shape."""
    return ApiError(422, [{"loc": list(loc), "msg": message, "type": kind}])


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def _clean(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic errors without ``input``/``ctx`` (they may echo secrets or hold exception objects)."""
    clean = []
    for error in errors:
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        clean.append({"loc": list(error.get("loc", ())), "msg": message, "type": str(error.get("type", ""))})
    return clean


def _body(status: int, detail: str | list[dict[str, Any]], code: str) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "error": code}
    if isinstance(detail, list):
        body["message"] = _first(detail)
    return body


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(_body(exc.status, exc.detail, exc.code), status_code=exc.status, headers=exc.headers)


def as_api_error(exc: Exception) -> ApiError | None:
    """The HTTP error for a stageguard exception raised by the store or the engine."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, StageNotFoundError):
        return ApiError(404, one_line(exc), code="stage_not_found")
    if isinstance(exc, ProjectNotFoundError):
        return ApiError(404, one_line(exc), code="project_not_found")
    if isinstance(exc, StageConflictError):
        return ApiError(409, one_line(exc))
    if isinstance(exc, StoreUnavailableError):
        return ApiError(503, one_line(exc), headers={"Retry-After": "1"})
    if _database_error(exc):
        return ApiError(503, f"database unavailable: {one_line(exc)}", headers={"Retry-After": "1"})
    if isinstance(exc, ValidationError):
        return ApiError(422, _clean(exc.errors()))
    if isinstance(exc, (InvalidRequestError, UnknownMetricError)):
        return invalid(one_line(exc))
    return None


def _database_error(exc: Exception) -> bool:
    """A database driver's error that no store mapped (the database is down, locked or unreadable)."""
    import sqlite3

    try:
        from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
    except ImportError:  # pragma: no cover - the server extra includes it
        return isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
            exc, sqlite3.IntegrityError
        )
    if isinstance(exc, (IntegrityError, sqlite3.IntegrityError)):
        return False
    return isinstance(exc, (OperationalError, DBAPIError, sqlite3.OperationalError, sqlite3.DatabaseError))


def _database_errors() -> tuple[type[Exception], ...]:
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    return (DBAPIError, sqlite3.DatabaseError)


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        error = as_api_error(exc)
        if error is None:  # e.g. an integrity error no store mapped: a genuine bug
            raise exc
        return error_response(error)

    async def request_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(ApiError(422, _clean(exc.errors())))

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _CODES.get(exc.status_code, "error")
        return JSONResponse(
            _body(exc.status_code, str(exc.detail), code),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for kind in mapped_errors():
        app.add_exception_handler(kind, api_error)


def mapped_errors() -> tuple[type[Exception], ...]:
    """The exceptions :func:`as_api_error` turns into HTTP errors."""
    return (
        ApiError,
        StageNotFoundError,
        ProjectNotFoundError,
        StageConflictError,
        StoreUnavailableError,
        InvalidRequestError,
        UnknownMetricError,
        ValidationError,
        *_database_errors(),
    )


MAX_VERSION = 2_147_483_647  # versions are 32-bit integers in the database


def check_version(version: int | None, loc: Sequence[Any]) -> None:
    """422 naming ``loc`` for a version no stage can have (it would overflow the database column)."""
    if version is not None and not 1 <= version <= MAX_VERSION:
        raise invalid(f"version must be between 1 and {MAX_VERSION}, got {version}", loc)


def check_text_lengths(value: Any, loc: Sequence[Any], limit: int) -> int:
    """413 naming the first string in ``value`` (a JSON-like dump) longer than ``limit`` characters;
    returns the characters of all its strings."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, tuple(loc))]
    total = 0
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            total += len(item)
            if len(item) > limit:
                raise ApiError(
                    413,
                    [
                        {
                            "loc": list(where),
                            "msg": f"text too long: {len(item)} characters; the limit is {limit} per field "
                            "(STAGEGUARD_MAX_TEXT_CHARS)",
                            "type": "text_too_long",
                        }
                    ],
                )
        elif isinstance(item, dict):
            stack.extend((v, (*where, k)) for k, v in item.items())
            stack.extend((k, (*where, k)) for k in item if isinstance(k, str))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, (*where, i)) for i, v in enumerate(item))
    return total

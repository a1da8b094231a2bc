"""Exceptions raised by stageguard. All derive from :class:`StageguardError`."""

from __future__ import annotations


class StageguardError(Exception):
    """Base class of every error stageguard raises on purpose."""


class UnknownMetricError(StageguardError, ValueError):
    """A rule names a metric that is neither built in nor registered."""


class StageNotFoundError(StageguardError, LookupError):
    """An invoke or update names a stage (or version) that does not exist."""


class ProjectNotFoundError(StageguardError, LookupError):
    """A call names a project that does not exist."""


class StageConflictError(StageguardError):
    """A stage with that name already exists, or the call does not fit the stage's type."""


class InvalidRequestError(StageguardError, ValueError):
    """An invoke request is incomplete or contradicts itself."""


class StoreUnavailableError(StageguardError):
    """The stage store (e.g. a remote server) cannot be reached or answered with an error.

    An invoke that hits this does not raise: it answers under the fail policy and says why.
    """


def one_line(exc: BaseException) -> str:
    """A one-line message for an exception; for pydantic errors, the first error with its location."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
        except (IndexError, TypeError):
            first = None
        if first:
            message = str(first.get("msg", "")).removeprefix("Value error, ")
            where = ".".join(str(part) for part in first.get("loc", ()))
            return f"{where}: {message}" if where else message
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

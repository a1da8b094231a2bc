"""Errors of the HTTP client. An unreachable, slow or failing server is a
:class:`~stageguard.errors.StoreUnavailableError`, which invokes answer under the fail policy."""

from __future__ import annotations

from ..errors import StageguardError, StoreUnavailableError


class ServerUnavailableError(StoreUnavailableError):
    """The server could not be reached, did not answer in time, or answered 429/5xx."""

    def __init__(self, message: str, *, timed_out: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.status = status


class AuthenticationError(StageguardError, PermissionError):
    """401: the API key (``STAGEGUARD_API_KEY``) is missing, wrong or revoked."""


class PermissionDeniedError(StageguardError, PermissionError):
    """403: the key's role or project does not allow the call."""


class MalformedAnswerError(ServerUnavailableError):
    """The server answered something that is not a valid stageguard answer (HTML, an empty body, JSON of
    the wrong shape, a redirect): treated as an outage, so invokes answer under the fail policy."""

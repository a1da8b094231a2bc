"""Clients of a stageguard server.

- :class:`RemoteStageStore`: stages from the server, evaluated in this process
  (``Protect(RemoteStageStore())``; what ``stageguard.api.protect_from_env()`` builds when
  ``STAGEGUARD_URL`` is set).
- :class:`ProtectClient`: invokes evaluated by the server, and stage management; sync and async.
"""

from ._errors import AuthenticationError, PermissionDeniedError, ServerUnavailableError
from ._http import Call, HttpClient
from .protect_client import ProtectClient
from .remote_store import RemoteStageStore

__all__ = [
    "AuthenticationError",
    "Call",
    "HttpClient",
    "PermissionDeniedError",
    "ProtectClient",
    "RemoteStageStore",
    "ServerUnavailableError",
]

"""The stageguard server (``pip install 'stageguard[server]'``; run with ``stageguard serve``).

Central stages live in one database; apps invoke them over HTTP (``POST /protect/invoke``) or fetch
them and evaluate locally (``stageguard.client.RemoteStageStore``). Speaks Galileo Protect's HTTP API.
"""

from ._allowlist import Allowlist, AllowlistTransport, WebhookNotAllowedError
from ._db import Databases, open_databases
from ._keys import ApiKey, KeyStore, Role
from ._settings import ServerSettings
from .app import create_app, create_app_from_env

__all__ = [
    "Allowlist",
    "AllowlistTransport",
    "ApiKey",
    "Databases",
    "KeyStore",
    "Role",
    "ServerSettings",
    "WebhookNotAllowedError",
    "create_app",
    "create_app_from_env",
    "open_databases",
]

"""Server settings, from arguments or ``STAGEGUARD_*`` environment variables.

Worker processes started by uvicorn read the same variables, so every worker of a deployment is
configured alike without sharing anything but the database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..store.sqlite import default_db_path

DEFAULT_TOKEN_TTL = 3600.0


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class ServerSettings:
    """How a stageguard server runs.

    ``db`` is a PostgreSQL URL (``postgresql://...``) or a SQLite file (``sqlite:///path`` or a path).
    ``jwt_secret`` signs login tokens; when unset, a random secret is created once and kept in the
    database, so all workers sharing the database accept each other's tokens.
    ``webhook_allowlist`` lists the hosts subscriptions may call: ``*`` (any public host), host names,
    ``*.example.com``, IP addresses and CIDR blocks. Private, loopback and link-local addresses are
    refused unless an entry other than ``*`` allows them. ``warm_up`` loads the built-in scorers at
    start-up and freezes start-up objects out of the garbage collector's way (steadier p99).
    """

    db: str = field(default_factory=lambda: str(default_db_path()))
    jwt_secret: str | None = None
    token_ttl: float = DEFAULT_TOKEN_TTL
    key_cache_ttl: float = 5.0
    webhook_allowlist: tuple[str, ...] = ("*",)
    webhook_timeout: float = 5.0
    webhook_retries: int = 2
    poll_interval: float = 0.25
    warm_up: bool = True

    @classmethod
    def from_env(cls, **overrides: object) -> ServerSettings:
        """Settings from ``STAGEGUARD_SERVER_*`` variables (``overrides`` win)."""
        allowlist = os.environ.get("STAGEGUARD_WEBHOOK_ALLOWLIST")
        values: dict[str, object] = {
            "db": os.environ.get("STAGEGUARD_SERVER_DB")
            or os.environ.get("STAGEGUARD_DB")
            or str(default_db_path()),
            "jwt_secret": os.environ.get("STAGEGUARD_JWT_SECRET") or None,
            "token_ttl": _float("STAGEGUARD_TOKEN_TTL", DEFAULT_TOKEN_TTL),
            "key_cache_ttl": _float("STAGEGUARD_KEY_CACHE_TTL", 5.0),
            "webhook_allowlist": parse_allowlist(allowlist) if allowlist is not None else ("*",),
            "webhook_timeout": _float("STAGEGUARD_WEBHOOK_TIMEOUT", 5.0),
            "webhook_retries": int(_float("STAGEGUARD_WEBHOOK_RETRIES", 2)),
            "poll_interval": _float("STAGEGUARD_POLL_INTERVAL", 0.25),
            "warm_up": os.environ.get("STAGEGUARD_WARM_UP", "1").strip().lower() not in ("0", "false", "no"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.token_ttl <= 300:
            # Galileo's SDK logs in again when its token expires within 5 minutes: shorter lifetimes
            # would make it log in before every call.
            raise ValueError(f"token_ttl must be more than 300 seconds, got {self.token_ttl}")
        if self.jwt_secret is not None and len(self.jwt_secret) < 32:
            raise ValueError("the JWT secret (STAGEGUARD_JWT_SECRET) must be at least 32 characters")
        if self.webhook_retries < 0 or self.webhook_timeout <= 0:
            raise ValueError("webhook_timeout must be positive and webhook_retries not negative")


def parse_allowlist(raw: str) -> tuple[str, ...]:
    """``"a.com, *.b.com 10.0.0.0/8"`` -> ``("a.com", "*.b.com", "10.0.0.0/8")``."""
    return tuple(entry for entry in raw.replace(",", " ").split() if entry)

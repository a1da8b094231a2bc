"""Server settings, from arguments or ``STAGEGUARD_*`` environment variables.

Worker processes started by uvicorn read the same variables, so every worker of a deployment is
configured alike without sharing anything but the database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from limits import parse_many

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


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class ServerSettings:
    """How a stageguard server runs.

    ``db`` is a PostgreSQL URL (``postgresql://...``) or a SQLite file (``sqlite:///path`` or a path).
    ``jwt_secret`` signs login tokens; when unset, a random secret is created once and kept in the
    database, so all workers sharing the database accept each other's tokens.
    ``jwt_secret_file`` is read when ``jwt_secret`` is unset (it must not be readable by group or others);
    without either, a random secret is created in such a file next to the SQLite database (or in the user
    data directory for PostgreSQL). The secret is never stored in the database.
    ``webhook_allowlist`` lists the hosts subscriptions may call: ``*`` (any public host), host names,
    ``*.example.com``, IP addresses and CIDR blocks. Private, loopback and link-local addresses are
    refused unless an entry other than ``*`` allows them. ``warm_up`` loads the built-in scorers at
    start-up and freezes start-up objects out of the garbage collector's way (steadier p99).

    Limits: ``max_body_bytes`` per request body (413), ``max_text_chars`` per text field of a payload or
    stage (413), ``rate_limit`` per API key (429 with ``Retry-After``; ``limits`` syntax such as
    ``"1000/second"``, empty disables), ``auth_failure_limit`` failed authentications per client address,
    ``max_concurrency_per_key`` requests in progress per key and process (429). Invokes are never
    evaluated on the event loop: payloads under ``process_threshold`` characters of text on
    ``invoke_threads`` threads, larger ones on ``invoke_processes`` worker processes (0: threads only),
    where a scorer's long C calls on a huge text can't hold the event loop's GIL.
    ``max_invoke_timeout`` caps an invoke's ``timeout`` (its deadline, queueing included).
    ``db_busy_timeout`` is how long a SQLite write waits for another process's lock before the request
    answers 503 (PostgreSQL has its own pool and statement time-outs).

    Custom metrics: ``metrics`` names modules imported at start-up (each registers its metrics with
    ``stageguard.register_metric``), and with ``metric_entry_points`` every installed
    ``stageguard.metrics`` entry point is loaded too. The invoke worker processes load the same ones.

    Decision log (``decision_log``, off by default): every invoke of a stage is recorded in the database
    (stage, version, live or shadow, status, triggered rulesets, metric values, latency; the texts only
    with ``decision_log_texts``) by a background thread, and rows older than
    ``decision_log_retention_days`` are purged. ``stageguard report`` summarises it.

    ``console`` serves the web console at ``/console`` (``STAGEGUARD_CONSOLE=0`` turns it off: 404);
    ``console_reports`` is a directory of ``stageguard eval`` JSON results the console lists.
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
    jwt_secret_file: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_text_chars: int = 1_000_000
    rate_limit: str = "1000/second"
    auth_failure_limit: str = "60/minute"
    max_concurrency_per_key: int = 64
    invoke_threads: int = 4
    invoke_processes: int = 1
    process_threshold: int = 50_000
    max_invoke_timeout: float = 300.0
    db_busy_timeout: float = 5.0
    metrics: tuple[str, ...] = ()
    metric_entry_points: bool = True
    decision_log: bool = False
    decision_log_retention_days: float = 30.0
    decision_log_texts: bool = False
    console: bool = True
    console_reports: str | None = None

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
            "warm_up": _flag("STAGEGUARD_WARM_UP", True),
            "jwt_secret_file": os.environ.get("STAGEGUARD_JWT_SECRET_FILE") or None,
            "max_body_bytes": int(_float("STAGEGUARD_MAX_BODY_BYTES", 8 * 1024 * 1024)),
            "max_text_chars": int(_float("STAGEGUARD_MAX_TEXT_CHARS", 1_000_000)),
            "rate_limit": os.environ.get("STAGEGUARD_RATE_LIMIT", "1000/second").strip(),
            "auth_failure_limit": os.environ.get("STAGEGUARD_AUTH_FAILURE_LIMIT", "60/minute").strip(),
            "max_concurrency_per_key": int(_float("STAGEGUARD_MAX_CONCURRENCY_PER_KEY", 64)),
            "invoke_threads": int(_float("STAGEGUARD_INVOKE_THREADS", 4)),
            "invoke_processes": int(_float("STAGEGUARD_INVOKE_PROCESSES", 1)),
            "process_threshold": int(_float("STAGEGUARD_PROCESS_THRESHOLD", 50_000)),
            "max_invoke_timeout": _float("STAGEGUARD_MAX_INVOKE_TIMEOUT", 300.0),
            "db_busy_timeout": _float("STAGEGUARD_DB_BUSY_TIMEOUT", 5.0),
            "metrics": parse_allowlist(os.environ.get("STAGEGUARD_METRICS", "")),
            "metric_entry_points": _flag("STAGEGUARD_METRIC_ENTRY_POINTS", True),
            "decision_log": _flag("STAGEGUARD_DECISION_LOG", False),
            "decision_log_retention_days": _float("STAGEGUARD_DECISION_LOG_RETENTION_DAYS", 30.0),
            "decision_log_texts": _flag("STAGEGUARD_DECISION_LOG_TEXTS", False),
            "console": _flag("STAGEGUARD_CONSOLE", True),
            "console_reports": os.environ.get("STAGEGUARD_CONSOLE_REPORTS") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if self.token_ttl <= 300:
            # Galileo's SDK logs in again when its token expires within 5 minutes: shorter lifetimes
            # would make it log in before every call.
            raise ValueError(f"token_ttl must be more than 300 seconds, got {self.token_ttl}")
        if self.jwt_secret is not None and len(self.jwt_secret) < 32:
            raise ValueError("the JWT secret (STAGEGUARD_JWT_SECRET) must be at least 32 characters")
        if self.webhook_retries < 0 or self.webhook_timeout <= 0:
            raise ValueError("webhook_timeout must be positive and webhook_retries not negative")
        for name in ("max_body_bytes", "max_text_chars", "max_concurrency_per_key", "invoke_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.invoke_processes < 0 or self.process_threshold < 0:
            raise ValueError("invoke_processes and process_threshold must not be negative")
        if not 0 < self.max_invoke_timeout < 86_400:
            raise ValueError(
                f"max_invoke_timeout must be between 0 and 86400 s, got {self.max_invoke_timeout}"
            )
        if not self.decision_log_retention_days > 0:
            raise ValueError(
                f"decision_log_retention_days must be positive, got {self.decision_log_retention_days}"
            )
        if not 0 < self.db_busy_timeout <= 600:
            raise ValueError(f"db_busy_timeout must be between 0 and 600 s, got {self.db_busy_timeout}")
        for name in ("rate_limit", "auth_failure_limit"):
            value = getattr(self, name)
            if value:
                try:
                    parse_many(value)
                except ValueError as exc:
                    raise ValueError(
                        f"{name} {value!r} is not a rate limit such as '100/second': {exc}"
                    ) from None


def parse_allowlist(raw: str) -> tuple[str, ...]:
    """``"a.com, *.b.com 10.0.0.0/8"`` -> ``("a.com", "*.b.com", "10.0.0.0/8")`` (also splits the
    module list of ``STAGEGUARD_METRICS``)."""
    return tuple(entry for entry in raw.replace(",", " ").split() if entry)


def load_metric_plugins(settings: ServerSettings) -> list[str]:
    """Import the settings' ``metrics`` modules and (with ``metric_entry_points``) the installed
    ``stageguard.metrics`` entry points, in this process; what was loaded, for the log. Raises
    ``MetricPluginError`` (a ``ValueError``) naming the module or entry point that failed."""
    from ..scorers.registry import load_metric_entry_points, load_metric_modules

    loaded = load_metric_modules(settings.metrics)
    if settings.metric_entry_points:
        loaded += load_metric_entry_points()
    return loaded

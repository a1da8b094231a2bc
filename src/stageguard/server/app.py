"""The stageguard server: a FastAPI app over one database (SQLite file or PostgreSQL).

A server process holds nothing but caches, so any number of them (uvicorn workers, hosts behind a
load balancer) can share one PostgreSQL database. ``create_app_from_env`` is the factory uvicorn workers
call: they are configured by the same ``STAGEGUARD_*`` variables.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from .._subscriptions import SubscriptionDelivery
from .._version import __version__
from ..engine import Engine
from ..protect import Protect
from ._allowlist import Allowlist, AllowlistTransport
from ._auth import Authenticator
from ._db import Databases, open_databases
from ._docs import docs_app
from ._errors import install_error_handlers
from ._jsonsafe import BodyGuard, SafeJSONResponse
from ._routes_auth import router as auth_router
from ._routes_metrics import router as metrics_router
from ._routes_projects import router as projects_router
from ._routes_protect import router as protect_router
from ._routes_stages import router as stages_router
from ._runtime import InvokeRunner, KeyGate
from ._secret import jwt_secret
from ._settings import ServerSettings, load_metric_plugins
from ._state import ServerState
from ._warmup import warm_up

logger = logging.getLogger("stageguard.server")


def create_app(settings: ServerSettings | None = None, *, databases: Databases | None = None) -> FastAPI:
    """The app for ``settings`` (default: from the environment). Opens the database right away, so a
    bad URL fails at start-up rather than on the first request, and so does a custom metrics module
    (``settings.metrics``) or ``stageguard.metrics`` entry point that can't be loaded."""
    settings = settings or ServerSettings.from_env()
    plugins = load_metric_plugins(settings)
    if plugins:
        logger.info("custom metrics loaded from %s", ", ".join(plugins))
    databases = databases or open_databases(
        settings.db, poll_interval=settings.poll_interval, busy_timeout=settings.db_busy_timeout
    )
    if settings.decision_log and databases.decisions is None and databases.sql is not None:
        from ._decision_log import DecisionLog

        databases.decisions = DecisionLog(
            databases.sql,
            retention_days=settings.decision_log_retention_days,
            texts=settings.decision_log_texts,
        )
    allowlist = Allowlist(settings.webhook_allowlist)
    delivery = SubscriptionDelivery(
        timeout=settings.webhook_timeout,
        retries=settings.webhook_retries,
        transport=AllowlistTransport(allowlist),
    )
    protect = Protect(databases.stages, engine=Engine(subscriptions=delivery))
    state = ServerState(
        settings=settings,
        databases=databases,
        protect=protect,
        auth=Authenticator(
            databases.keys,
            jwt_secret(settings),
            token_ttl=settings.token_ttl,
            cache_ttl=settings.key_cache_ttl,
        ),
        allowlist=allowlist,
        runner=InvokeRunner(protect, settings),
        gate=KeyGate(settings.rate_limit, settings.auth_failure_limit, settings.max_concurrency_per_key),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.warm_up:
            warm_up(state.protect.engine)
        state.runner.start()
        yield
        state.runner.close()
        if databases.decisions is not None:
            databases.decisions.flush()
        state.protect.close()  # its engine gives subscription deliveries in flight the webhook time-out

    app = docs_app(
        title="stageguard",
        version=__version__,
        description="Runtime guardrails: rules, rulesets and stages, Galileo Protect compatible.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.stageguard = state
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    # invoke first: routes are matched in order, and it is the hot path
    for router in (protect_router, auth_router, projects_router, stages_router, metrics_router):
        app.include_router(router)
    if settings.console:
        _mount_console(app, state)
    return app


def _mount_console(app: FastAPI, state: ServerState) -> None:
    """The web console at ``/console`` (its own small app: HTML pages and errors, not the API's JSON)."""
    from .console import console_app
    from .console._render import SECURITY_HEADERS

    @app.get("/console", include_in_schema=False)
    def console_root() -> RedirectResponse:
        # outside the console's app, so its middleware doesn't add the headers every console answer carries
        return RedirectResponse("/console/", headers=SECURITY_HEADERS)

    app.mount("/console", console_app(state))


def create_app_from_env() -> FastAPI:
    """The uvicorn factory: ``uvicorn --factory stageguard.server.app:create_app_from_env``."""
    return create_app(ServerSettings.from_env())

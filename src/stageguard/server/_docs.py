"""The API docs, served by the server itself: ``/docs`` (Swagger UI) and ``/redoc`` load their scripts
and styles from this server (shipped by the ``fastapi-offline`` package), never from a CDN, so they work
offline and behind firewalls. ``/`` redirects to ``/docs``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline

DOCS_URL = "/docs"
ASSETS_URL = "/docs-assets"  # Swagger UI / ReDoc scripts, styles and favicon


def docs_app(**kwargs: Any) -> FastAPI:
    """A ``FastAPI`` (``kwargs`` as for it) whose ``/docs`` and ``/redoc`` use local assets, with ``/``
    redirecting to ``/docs``."""
    app = FastAPIOffline(docs_url=DOCS_URL, redoc_url="/redoc", static_url=ASSETS_URL, **kwargs)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(DOCS_URL)

    return app

"""``GET /metrics/catalogue``: every metric a rule can name on this server, built-in and custom.

Custom metrics come from the server's ``--metrics`` modules (``STAGEGUARD_METRICS``) and the installed
``stageguard.metrics`` entry points, loaded at start-up.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..scorers.registry import describe_metrics
from ._auth import Caller

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics/catalogue",
    summary="The metrics rules can use: name, kind, operators, required payload fields, labels",
)
def metric_catalogue(caller: Caller) -> list[dict[str, Any]]:
    return describe_metrics()

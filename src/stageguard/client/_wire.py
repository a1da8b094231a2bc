"""JSON of the server's API to stageguard's models, and small helpers shared by the client modules."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..rules import LENIENT, Ruleset, parse_rulesets
from ..stages import Project, Stage


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def stage_from_json(data: Mapping[str, Any]) -> Stage:
    """A stage as the server sends it (rules of metrics unknown here are kept, not rejected)."""
    return Stage.model_validate(data, context=LENIENT)


def project_from_json(data: Mapping[str, Any]) -> Project:
    return Project(id=str(data["id"]), name=str(data["name"]), created_at=data.get("created_at"))


def rulesets_json(rulesets: Sequence[Ruleset | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in parse_rulesets(list(rulesets or []))]


def version_params(version: int | None) -> dict[str, Any]:
    return {"version": version} if version is not None else {}

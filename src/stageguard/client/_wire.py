"""JSON of the server's API to stageguard's models, and small helpers shared by the client modules."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..rules import LENIENT, Ruleset, parse_rulesets
from ..stages import Project, Stage
from ._errors import MalformedAnswerError

T = TypeVar("T")


def parsed(what: str, parse: Callable[[Any], T], data: Any) -> T:
    """``parse(data)``; an answer of the wrong shape is a :class:`MalformedAnswerError` (an outage to the
    fail policy), never a ``KeyError``/``TypeError``/``ValidationError`` in the app."""
    try:
        return parse(data)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise MalformedAnswerError(f"{what}: unexpected answer ({type(exc).__name__}: {detail})") from None


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


def stage_of(data: Any) -> Stage:
    return parsed("stage", stage_from_json, data)


def stages_of(data: Any) -> list[Stage]:
    def parse(items: Any) -> list[Stage]:
        if not isinstance(items, list):
            raise TypeError(f"expected a list of stages, got {type(items).__name__}")
        return [stage_from_json(item) for item in items]

    return parsed("stages", parse, data)


def project_of(data: Any) -> Project:
    return parsed("project", project_from_json, data)


def first_project(data: Any) -> Project | None:
    """The first project of a ``GET /projects`` answer (a list), or ``None`` for an empty list."""

    def parse(items: Any) -> Project | None:
        if not isinstance(items, list):
            raise TypeError(f"expected a list of projects, got {type(items).__name__}")
        return project_from_json(items[0]) if items else None

    return parsed("projects", parse, data)


def rulesets_json(rulesets: Sequence[Ruleset | Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in parse_rulesets(list(rulesets or []))]


def version_params(version: int | None) -> dict[str, Any]:
    return {"version": version} if version is not None else {}

"""Which stage a guard checks against: one reference shared by every adapter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from .payload import ALL_FIELDS
from .rules import Ruleset, parse_rulesets

RulesetsLike: TypeAlias = Sequence[Ruleset | Mapping[str, Any]]


@dataclass(frozen=True)
class StageRef:
    """A stage by name or id (``version=None``: the latest, re-read when it changes) and/or inline rulesets.

    A name with rulesets is a local stage; rulesets alone are checked without a stored stage.
    """

    name: str | None = None
    version: int | None = None
    id: str | None = None
    rulesets: tuple[Ruleset, ...] | None = None
    project_name: str | None = None
    project_id: str | None = None

    def __post_init__(self) -> None:
        if self.name is None and self.id is None and self.rulesets is None:
            raise ValueError("a stage needs a name, an id or prioritized rulesets")
        if self.rulesets is not None:  # parsed once, so every invoke reuses validated rulesets
            object.__setattr__(self, "rulesets", tuple(parse_rulesets(list(self.rulesets))))

    @property
    def label(self) -> str:
        """How the stage is named in events and logs when the response carries no stage metadata."""
        return self.name or self.id or "inline"

    def invoke_args(self) -> dict[str, Any]:
        """The ``Protect.invoke`` arguments that select this stage."""
        return {
            "prioritized_rulesets": list(self.rulesets) if self.rulesets is not None else None,
            "project_id": self.project_id,
            "project_name": self.project_name,
            "stage_id": self.id,
            "stage_name": self.name,
            "stage_version": self.version,
        }

    def fields_read(self, protect: Any) -> frozenset[str]:
        """The payload fields ``protect`` reads when it checks this stage (``Protect.fields_read``): the
        parts of a payload an adapter needs to build. Every field for an object without the method."""
        method = getattr(protect, "fields_read", None)
        if method is None:
            return ALL_FIELDS
        fields: frozenset[str] = method(
            self.rulesets,
            project_id=self.project_id,
            project_name=self.project_name,
            stage_id=self.id,
            stage_name=self.name,
            stage_version=self.version,
        )
        return fields


StageLike: TypeAlias = str | StageRef | RulesetsLike
"""A stage name, a :class:`StageRef`, or a list of rulesets."""


def as_stage(
    stage: StageLike | None,
    *,
    rulesets: RulesetsLike | None = None,
    version: int | None = None,
    project_name: str | None = None,
    project_id: str | None = None,
) -> StageRef | None:
    """A :class:`StageRef` from a stage name, a ``StageRef`` or a list of rulesets (``None`` stays None).

    A ``StageRef`` is returned as given; the keyword arguments complete a name or rulesets.
    """
    if stage is None and rulesets is None:
        return None
    if isinstance(stage, StageRef):
        return stage
    if stage is not None and not isinstance(stage, str):
        rulesets, stage = stage, None
    return StageRef(
        name=stage,
        version=version,
        rulesets=tuple(parse_rulesets(list(rulesets))) if rulesets is not None else None,
        project_name=project_name,
        project_id=project_id,
    )

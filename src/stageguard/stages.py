"""Stages: prioritized rulesets under a name, central (stored, versioned) or local (rulesets per call)."""

from __future__ import annotations

import datetime as dt
from enum import Enum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from .rules import Ruleset
from .status import FailPolicy


class StageType(str, Enum):
    local = "local"
    central = "central"


class Project(BaseModel):
    id: str
    name: str
    created_at: dt.datetime | None = None


class Stage(BaseModel):
    """A stage as stored. For a central stage ``prioritized_rulesets`` are those of ``version``."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    project_id: str
    description: str | None = None
    type: StageType = StageType.local
    paused: bool = False
    version: int | None = None
    prioritized_rulesets: list[Ruleset] = Field(
        default_factory=list, validation_alias=AliasChoices("prioritized_rulesets", "rulesets")
    )
    fail_policy: FailPolicy = FailPolicy.fail_open
    created_at: dt.datetime | None = None

    def _repr_html_(self) -> str:
        from ._display import stage_html

        return stage_html(self)

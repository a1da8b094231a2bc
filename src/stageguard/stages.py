"""Stages: prioritized rulesets under a name, central (stored, versioned) or local (rulesets per call)."""

from __future__ import annotations

import datetime as dt
from enum import Enum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from .payload import clean_before
from .rules import Ruleset
from .status import FailPolicy

MAX_VERSION = 2**63 - 1  # versions are 64-bit signed integers in every store


class StageType(str, Enum):
    local = "local"
    central = "central"


class Project(BaseModel):
    id: str
    name: str
    created_at: dt.datetime | None = None

    _clean = field_validator("id", "name", mode="before")(clean_before)


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

    _clean = field_validator("id", "name", "project_id", "description", mode="before")(clean_before)

    def _repr_html_(self) -> str:
        from ._display import stage_html

        return stage_html(self)

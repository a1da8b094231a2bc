"""Request and response bodies of the HTTP API (Galileo's shapes, plus stageguard's extra fields)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator

from .._version import __version__
from ..payload import PayloadField
from ..rules import Ruleset, reject_unknown_keys
from ..stages import Project, Stage, StageType
from ..status import FailPolicy

# Galileo's models require a creator (a UUID4 user id); stageguard has keys, not users.
SYSTEM_USER_ID = "00000000-0000-4000-8000-000000000000"
SYSTEM_USER_EMAIL = "stageguard@localhost"


class StageCreate(BaseModel):
    """``POST /projects/{project_id}/stages``: Galileo's ``StageWithRulesets`` plus ``fail_policy``."""

    name: str = Field(min_length=1, max_length=200)
    project_id: str | None = Field(default=None, description="Must match the path when given.")
    prioritized_rulesets: list[Ruleset] = Field(
        default_factory=list, validation_alias=AliasChoices("prioritized_rulesets", "rulesets")
    )
    description: str | None = None
    type: StageType = StageType.local
    paused: bool = False
    fail_policy: FailPolicy = FailPolicy.fail_open
    payload_fields: list[PayloadField] | None = Field(
        default=None,
        description="The payload fields invokes of this stage will carry (the galileo SDK sends input and "
        "output); rules that can never be evaluated with them are listed in the response's warnings.",
    )
    strict: bool = Field(
        default=False, description="With payload_fields: a rule that can never be evaluated is a 422."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        # a typo ("descripton") must not be dropped silently; Galileo's CreateStage also sends created_by
        return reject_unknown_keys(value, cls, what="a stage", accepted=("created_by",))

    @field_validator("name")
    @classmethod
    def _not_blank(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("the stage name must not be blank")
        return name


class RulesetsBody(BaseModel):
    """``POST /projects/{project_id}/stages/{stage_id}``: the rulesets of the new version."""

    prioritized_rulesets: list[Ruleset] = Field(
        default_factory=list, validation_alias=AliasChoices("prioritized_rulesets", "rulesets")
    )
    payload_fields: list[PayloadField] | None = Field(default=None, description="As in StageCreate.")
    strict: bool = Field(default=False, description="As in StageCreate.")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        return reject_unknown_keys(value, cls, what="the rulesets body")


class StageOut(BaseModel):
    """Galileo's ``StageDB`` plus the rulesets of ``version`` and the fail policy."""

    id: str
    name: str
    project_id: str
    description: str | None = None
    type: StageType
    paused: bool
    version: int | None = None
    created_by: str = SYSTEM_USER_ID
    prioritized_rulesets: list[Ruleset] = Field(default_factory=list)
    fail_policy: FailPolicy = FailPolicy.fail_open
    created_at: dt.datetime | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="Rules that can never be evaluated with the payload_fields declared by this request.",
    )

    @classmethod
    def of(cls, stage: Stage, warnings: list[str] | None = None) -> StageOut:
        return cls(
            **stage.model_dump(exclude={"prioritized_rulesets", "warnings"}),
            prioritized_rulesets=stage.prioritized_rulesets,
            warnings=warnings if warnings is not None else stage.warnings,
        )


class VersionsOut(BaseModel):
    stage_id: str
    versions: list[int]
    latest: int | None = None


class DeletedOut(BaseModel):
    id: str
    deleted: bool


class UserInfo(BaseModel):
    id: str = SYSTEM_USER_ID
    email: str = SYSTEM_USER_EMAIL
    first_name: str | None = None
    last_name: str | None = None


class ProjectOut(BaseModel):
    """Galileo's ``ProjectDB``/``ProjectDBThin`` (what its SDK needs to look a project up)."""

    id: str
    name: str
    type: Literal["gen_ai"] = "gen_ai"
    created_by: str = SYSTEM_USER_ID
    created_by_user: UserInfo = Field(default_factory=UserInfo)
    created_at: dt.datetime
    updated_at: dt.datetime
    runs: list[dict[str, object]] = Field(default_factory=list)
    bookmark: bool = False
    permissions: list[dict[str, object]] = Field(default_factory=list)

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        created = project.created_at or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return cls(id=project.id, name=project.name, created_at=created, updated_at=created)


class LoginBody(BaseModel):
    api_key: str = Field(min_length=1)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class CurrentUser(BaseModel):
    """Galileo's ``User`` (its SDK checks the login with it), plus the key's project and role."""

    id: str
    email: str
    role: Literal["user"] = "user"
    key_role: str
    project_id: str
    project_name: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = __version__
    api_version: str = "1.0.0"

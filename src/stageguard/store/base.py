"""The stage store interface: projects, stages, immutable versions, pause/resume."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidRequestError, StageConflictError
from ..rules import Ruleset
from ..stages import MAX_VERSION, Project, Stage, StageType
from ..status import FailPolicy


def check_new_stage(
    name: str, stage_type: StageType | str, prioritized_rulesets: Sequence[Ruleset] | None
) -> StageType:
    """What every store checks before creating a stage; returns the stage type."""
    try:
        stage_type = StageType(stage_type)
    except ValueError:
        raise InvalidRequestError(f"stage_type must be local or central, got {stage_type!r}") from None
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequestError(f"name: a stage needs a non-blank name, got {name!r}")
    if stage_type is StageType.local and prioritized_rulesets:
        raise StageConflictError(
            f"stage {name!r} is local: local stages are created without rulesets; "
            "pass prioritized_rulesets when invoking it, or create it as central"
        )
    return stage_type


def check_version(version: Any, field: str = "version") -> int | None:
    """A version the stores can look up: ``None`` or an int in [0, 2**63 - 1], else InvalidRequestError."""
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidRequestError(f"{field} must be an integer, got {type(version).__name__}")
    if not 0 <= version <= MAX_VERSION:
        raise InvalidRequestError(f"{field} must be between 0 and {MAX_VERSION}, got {version}")
    return version


class StageStore(ABC):
    """Where stages live. Implementations must make versioning safe under concurrent writers."""

    # -- projects
    @abstractmethod
    def create_project(self, name: str) -> Project: ...

    @abstractmethod
    def get_project(self, *, project_id: str | None = None, name: str | None = None) -> Project | None: ...

    @abstractmethod
    def list_projects(self) -> list[Project]: ...

    # -- stages
    @abstractmethod
    def create_stage(
        self,
        project_id: str,
        name: str,
        *,
        stage_type: StageType = StageType.local,
        prioritized_rulesets: Sequence[Ruleset] | None = None,
        description: str | None = None,
        paused: bool = False,
        fail_policy: FailPolicy = FailPolicy.fail_open,
    ) -> Stage: ...

    @abstractmethod
    def get_stage(
        self,
        project_id: str | None,
        *,
        stage_id: str | None = None,
        name: str | None = None,
        version: int | None = None,
    ) -> Stage | None:
        """The stage (latest version unless ``version`` is given), or ``None`` when missing."""

    @abstractmethod
    def list_stages(self, project_id: str) -> list[Stage]: ...

    @abstractmethod
    def list_versions(self, stage_id: str) -> list[int]: ...

    @abstractmethod
    def update_stage(self, stage_id: str, prioritized_rulesets: Sequence[Ruleset]) -> Stage:
        """Store a new immutable version of a central stage and return it."""

    @abstractmethod
    def set_paused(self, stage_id: str, paused: bool) -> Stage: ...

    @abstractmethod
    def set_fail_policy(self, stage_id: str, fail_policy: FailPolicy) -> Stage: ...

    @abstractmethod
    def delete_stage(self, stage_id: str) -> bool: ...

    def generation(self) -> object:
        """A token that changes whenever any stage may have changed (for caches). Default: always new."""
        return object()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

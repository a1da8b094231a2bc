"""Which stage a guard checks against, and the one place every adapter invokes ``Protect``.

Adapters name a stage (latest or pinned version) or give inline rulesets; ``Checker`` turns that into
``Protect.invoke`` arguments once, runs the invoke and reports the decision as a custom event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig

from ..api import get_default_protect
from ..payload import Payload
from ..protect import Protect
from ..response import Response
from ..rules import Ruleset, parse_rulesets
from ..status import FailPolicy
from ._events import areport, decision_data, listening, report

RulesetsLike = Sequence[Ruleset | Mapping[str, Any]]


@dataclass(frozen=True)
class StageRef:
    """A stage by name (``version=None``: the latest, re-read when it changes) and/or inline rulesets.

    A name with rulesets is a local stage; rulesets alone are checked without a stage.
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
        if self.rulesets is not None:
            object.__setattr__(self, "rulesets", tuple(parse_rulesets(list(self.rulesets))))

    @property
    def label(self) -> str:
        """How the stage is named in events when the response carries no stage metadata."""
        return self.name or self.id or "inline"


StageLike = str | StageRef | RulesetsLike


def as_stage(
    stage: StageLike | None,
    *,
    rulesets: RulesetsLike | None = None,
    version: int | None = None,
    project_name: str | None = None,
    project_id: str | None = None,
) -> StageRef | None:
    """A :class:`StageRef` from a stage name, a StageRef or a list of rulesets (``None`` stays None)."""
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


@dataclass
class Checker:
    """Invokes one stage with fixed options and reports each decision."""

    stage: StageRef
    protect: Protect | None = None
    timeout: float = 300.0
    fail_policy: FailPolicy | str | None = None
    shadow: bool = False
    metadata: dict[str, Any] | None = None
    events: bool = True
    """Dispatch each decision as a custom event (off where there is no run to attach it to)."""
    _kwargs: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ref = self.stage
        self._kwargs = {
            "prioritized_rulesets": list(ref.rulesets) if ref.rulesets is not None else None,
            "project_id": ref.project_id,
            "project_name": ref.project_name,
            "stage_id": ref.id,
            "stage_name": ref.name,
            "stage_version": ref.version,
            "timeout": self.timeout,
            "fail_policy": self.fail_policy,
            "shadow": self.shadow,
        }

    def _protect(self) -> Protect:
        # resolved per call so set_default_protect() after the app is built still takes effect
        return self.protect if self.protect is not None else get_default_protect()

    def _meta(self, where: str) -> dict[str, Any]:
        return {**(self.metadata or {}), "stageguard_where": where}

    def check(self, payload: Payload, config: RunnableConfig | None = None, *, where: str) -> Response:
        response = self._protect().invoke(payload, metadata=self._meta(where), **self._kwargs)
        run = listening(config) if self.events else None
        if run is not None:
            report(decision_data(response, where=where, stage=self.stage.label), run)
        return response

    async def acheck(self, payload: Payload, config: RunnableConfig | None = None, *, where: str) -> Response:
        response = await self._protect().ainvoke(payload, metadata=self._meta(where), **self._kwargs)
        run = listening(config) if self.events else None
        if run is not None:
            await areport(decision_data(response, where=where, stage=self.stage.label), run)
        return response


def checker(
    stage: StageLike | None,
    *,
    protect: Protect | None = None,
    timeout: float = 300.0,
    fail_policy: FailPolicy | str | None = None,
    shadow: bool = False,
    metadata: dict[str, Any] | None = None,
    project_name: str | None = None,
    events: bool = True,
) -> Checker | None:
    """A :class:`Checker` for ``stage`` (``None`` when no stage is configured)."""
    ref = as_stage(stage, project_name=project_name)
    if ref is None:
        return None
    if project_name and ref.project_name is None and ref.project_id is None:
        ref = StageRef(ref.name, ref.version, ref.id, ref.rulesets, project_name, None)
    return Checker(ref, protect, timeout, fail_policy, shadow, metadata, events)

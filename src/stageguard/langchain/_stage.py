"""Which stage a guard checks against, and the one place every adapter invokes ``Protect``.

Adapters name a stage (latest or pinned version) or give inline rulesets; ``Checker`` turns that into
``Protect.invoke`` arguments once, runs the invoke and reports the decision as a custom event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig

from ..api import get_default_protect
from ..payload import Payload
from ..protect import Protect
from ..redaction import Vault
from ..response import Response
from ..stage_ref import StageLike, StageRef, as_stage
from ..status import FailPolicy
from ._events import areport, decision_data, listening, report


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
        self._kwargs = {
            **self.stage.invoke_args(),
            "timeout": self.timeout,
            "fail_policy": self.fail_policy,
            "shadow": self.shadow,
        }

    def _protect(self) -> Protect:
        # resolved per call so set_default_protect() after the app is built still takes effect
        return self.protect if self.protect is not None else get_default_protect()

    def fields_read(self) -> frozenset[str]:
        """The payload fields the stage reads (:meth:`StageRef.fields_read`): what payloads need."""
        return self.stage.fields_read(self._protect())

    def _meta(self, where: str) -> dict[str, Any]:
        return {**(self.metadata or {}), "stageguard_where": where}

    def check(
        self,
        payload: Payload,
        config: RunnableConfig | None = None,
        *,
        where: str,
        vault: Vault | None = None,
    ) -> Response:
        """The stage's decision on ``payload``; ``vault`` holds the run's pseudonyms (docs/redaction.md)."""
        response = self._protect().invoke(payload, metadata=self._meta(where), vault=vault, **self._kwargs)
        run = listening(config) if self.events else None
        if run is not None:
            report(decision_data(response, where=where, stage=self.stage.label), run)
        return response

    async def acheck(
        self,
        payload: Payload,
        config: RunnableConfig | None = None,
        *,
        where: str,
        vault: Vault | None = None,
    ) -> Response:
        response = await self._protect().ainvoke(
            payload, metadata=self._meta(where), vault=vault, **self._kwargs
        )
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


def checker_of(guard: Any, what: str, *, events: bool = True) -> Checker:
    """The :class:`Checker` of a Runnable guard's stage fields (``stage``, ``prioritized_rulesets``,
    ``stage_version``, ``project_name``, ``protect``, ``timeout``, ``fail_policy``, ``shadow``,
    ``metadata``)."""
    ref = as_stage(
        guard.stage,
        rulesets=guard.prioritized_rulesets,
        version=guard.stage_version,
        project_name=guard.project_name,
    )
    if ref is None:
        raise ValueError(f"{what} needs a stage or prioritized_rulesets")
    return Checker(ref, guard.protect, guard.timeout, guard.fail_policy, guard.shadow, guard.metadata, events)

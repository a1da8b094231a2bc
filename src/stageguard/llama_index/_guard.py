"""What every LlamaIndex guard shares: which stage each hook runs, on which ``Protect``, and reporting.

Adapters only build payloads and map actions back; deciding is the core's job. Each decision is also
dispatched as a :class:`GuardDecisionEvent` through LlamaIndex instrumentation, so one
:class:`~stageguard.llama_index.ProtectEventHandler` can audit every guard of an app.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.base import BaseEvent
from llama_index_instrumentation.dispatcher import Dispatcher
from pydantic import Field

from ..api import get_default_protect
from ..payload import Payload
from ..protect import Protect
from ..redaction import Vault
from ..response import Response
from ..rules import ActionType
from ..stage_ref import RulesetsLike, StageLike, StageRef, as_stage
from ..status import FailPolicy

logger = logging.getLogger("stageguard.llama_index")
dispatcher = get_dispatcher("stageguard.llama_index")

DECISIONS_KEY = "stageguard"


class GuardDecisionEvent(BaseEvent):
    """A guard's decision, dispatched through LlamaIndex instrumentation (for audit and dashboards)."""

    component: str = Field(description="Which guard decided: query_engine, chat_engine, tool:NAME, ...")
    hook: str = Field(description="Where in the component: input, output, node, step, ...")
    stage: str
    status: str
    action: str
    applied: bool
    shadow: bool
    response: Response
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def class_name(cls) -> str:
        return "GuardDecisionEvent"


def _has_handlers(d: Dispatcher) -> bool:
    """Whether dispatching would reach a real handler (building an event costs a few microseconds)."""
    current: Dispatcher | None = d
    while current is not None:
        if any(type(h).__name__ != "NullEventHandler" for h in current.event_handlers):
            return True
        current = current.parent if current.propagate else None
    return False


def is_override(response: Response | None) -> TypeGuard[Response]:
    """The action replaced the text with a canned answer (never in shadow mode)."""
    return response is not None and response.applied and response.action_result.type is ActionType.OVERRIDE


def changed(response: Response | None) -> TypeGuard[Response]:
    """The action changed the text (override or redaction; never in shadow mode)."""
    return response is not None and response.applied


def decisions_of(result: Any) -> dict[str, Response]:
    """The decisions a guarded engine attached to its result: hook name to :class:`stageguard.Response`.

    They are in ``result.metadata["stageguard"]``; a streaming chat response (which has no metadata)
    carries them as ``result.stageguard_decisions``.
    """
    metadata = getattr(result, "metadata", None)
    if isinstance(metadata, dict) and isinstance(metadata.get(DECISIONS_KEY), dict):
        return dict(metadata[DECISIONS_KEY])
    found = getattr(result, "stageguard_decisions", None)
    return dict(found) if isinstance(found, dict) else {}


def stages_for(
    hooks: Sequence[str],
    stage: StageLike | None,
    per_hook: Mapping[str, StageLike | None],
    *,
    prioritized_rulesets: RulesetsLike | None = None,
    stage_version: int | None = None,
    project_name: str | None = None,
    project_id: str | None = None,
) -> dict[str, StageRef | None]:
    """Each hook's :class:`~stageguard.StageRef`: ``per_hook[hook]`` if given, else the shared ``stage``.

    The keyword arguments complete a stage given by name or rulesets (a ``StageRef`` is used as given).
    """

    def resolve(value: StageLike | None, rulesets: RulesetsLike | None = None) -> StageRef | None:
        return as_stage(
            value, rulesets=rulesets, version=stage_version, project_name=project_name, project_id=project_id
        )

    shared = resolve(stage, prioritized_rulesets)
    return {hook: resolve(own) if (own := per_hook.get(hook)) is not None else shared for hook in hooks}


class Guard:
    """Runs the stage of each hook of one component and reports the decisions.

    ``protect=None`` means the process default (:func:`stageguard.get_default_protect`), looked up on
    every check so ``set_default_protect`` takes effect without rebuilding guards.
    """

    def __init__(
        self,
        component: str,
        stages: Mapping[str, StageRef | None],
        *,
        protect: Protect | None = None,
        timeout: float = 300.0,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
        metadata: dict[str, Any] | None = None,
        dispatch: bool = True,
    ) -> None:
        if not any(stages.values()):
            raise ValueError(
                f"{component}: give a stage (name, StageRef or rulesets) for at least one of "
                f"{', '.join(stages)}"
            )
        self.component = component
        self.stages = dict(stages)
        self.protect = protect
        self.timeout = timeout
        self.fail_policy = FailPolicy(fail_policy) if fail_policy is not None else None
        self.shadow = shadow
        self.metadata = metadata
        self.dispatch = dispatch

    @classmethod
    def build(
        cls,
        component: str,
        hooks: Sequence[str],
        stage: StageLike | None,
        per_hook: Mapping[str, StageLike | None],
        *,
        prioritized_rulesets: RulesetsLike | None = None,
        stage_version: int | None = None,
        project_name: str | None = None,
        project_id: str | None = None,
        **options: Any,
    ) -> Guard:
        """``stage`` applies to every hook; ``per_hook[hook]`` replaces it for one hook."""
        stages = stages_for(
            hooks,
            stage,
            per_hook,
            prioritized_rulesets=prioritized_rulesets,
            stage_version=stage_version,
            project_name=project_name,
            project_id=project_id,
        )
        return cls(component, stages, **options)

    def has(self, hook: str) -> bool:
        return self.stages.get(hook) is not None

    def fields_read(self, *hooks: str) -> frozenset[str]:
        """The payload fields the scorers of the stages of ``hooks`` read
        (:meth:`StageRef.fields_read <stageguard.StageRef.fields_read>`): payload parts outside them
        (the conversation, tool specs, retrieved context) are not built. Hooks without a stage read none."""
        protect = self._protect()
        stages = {id(stage): stage for hook in hooks if (stage := self.stages.get(hook)) is not None}
        return frozenset().union(*(stage.fields_read(protect) for stage in stages.values()))

    def _protect(self) -> Protect:
        return self.protect if self.protect is not None else get_default_protect()

    def _args(self, stage: StageRef, vault: Vault | None = None) -> dict[str, Any]:
        args = {
            **stage.invoke_args(),
            "timeout": self.timeout,
            "metadata": self.metadata,
            "fail_policy": self.fail_policy,
            "shadow": self.shadow,
        }
        if vault is not None:  # only then: a Protect without the argument keeps working
            args["vault"] = vault
        return args

    def check(
        self, hook: str, payload: Payload | None, *, vault: Vault | None = None, **details: Any
    ) -> Response | None:
        """The stage's decision on ``payload``, or ``None`` when the hook has no stage or nothing to check.

        ``vault``: the run's pseudonyms (a REDACT with ``strategy: pseudonym`` numbers values in it)."""
        stage = self.stages.get(hook)
        if stage is None or payload is None:
            return None
        response = self._protect().invoke(payload, **self._args(stage, vault))
        self.report(hook, stage, response, details)
        return response

    async def acheck(
        self, hook: str, payload: Payload | None, *, vault: Vault | None = None, **details: Any
    ) -> Response | None:
        """Async :meth:`check`."""
        stage = self.stages.get(hook)
        if stage is None or payload is None:
            return None
        response = await self._protect().ainvoke(payload, **self._args(stage, vault))
        self.report(hook, stage, response, details)
        return response

    def report(self, hook: str, stage: StageRef, response: Response, details: dict[str, Any]) -> None:
        if response.triggered or response.failure is not None:
            logger.info(
                "%s %s: stage %s %s (%s%s)",
                self.component,
                hook,
                stage.label,
                response.status.value,
                response.action_result.type.value,
                ", shadow" if response.shadow else "",
            )
        if self.dispatch and _has_handlers(dispatcher):
            dispatcher.event(
                GuardDecisionEvent(
                    component=self.component,
                    hook=hook,
                    stage=stage.label,
                    status=response.status.value,
                    action=response.action_result.type.value,
                    applied=response.applied,
                    shadow=response.shadow,
                    response=response,
                    details=details,
                )
            )

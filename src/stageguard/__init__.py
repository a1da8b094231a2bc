"""stageguard: runtime guardrails for LLM apps.

Rules compare a metric with a target, rulesets AND their rules and carry an action, stages hold
prioritized rulesets. Galileo Protect's wire format and functional API, offline by default.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# Importing the package is cheap: every public name is imported from its module on first access (PEP 562),
# so ``import stageguard`` does not pay for pydantic, asyncio, the stores or the scorers until a name
# that needs them is used. Type checkers and IDEs see the plain imports below.
if TYPE_CHECKING:
    from .api import (
        ainvoke_protect,
        create_protect_stage,
        get_default_protect,
        get_protect_stage,
        invoke_protect,
        pause_protect_stage,
        resume_protect_stage,
        set_default_protect,
        update_protect_stage,
    )
    from .engine import Engine
    from .errors import (
        InvalidRequestError,
        ProjectNotFoundError,
        StageConflictError,
        StageguardError,
        StageNotFoundError,
        StoreUnavailableError,
        UnknownMetricError,
    )
    from .galileo_metrics import GalileoMetrics
    from .metrics import MetricSpec, ValueKind, get_metric, list_metrics, normalize_metric_name
    from .operators import RuleOperator
    from .payload import Message, Payload, ToolCall, ToolSpec
    from .protect import Protect
    from .redaction import Vault
    from .response import (
        ActionResult,
        Failure,
        MetricResult,
        Request,
        Response,
        RuleResult,
        RulesetResult,
        StageMetadata,
        TraceMetadata,
    )
    from .rules import (
        ActionType,
        OverrideAction,
        PassthroughAction,
        RedactAction,
        Rule,
        Ruleset,
        Subscription,
    )
    from .scorers.base import Scorer, ScoreResult, Span, TextScorer
    from .scorers.registry import ScorerRegistry, register_metric, warm_up
    from .stage_ref import StageLike, StageRef
    from .stages import Project, Stage, StageType
    from .status import ExecutionStatus, FailPolicy
    from .store import SQLiteStageStore, StageStore

# public name -> the submodule that defines it
_LAZY: dict[str, str] = {
    "ainvoke_protect": "api",
    "create_protect_stage": "api",
    "get_default_protect": "api",
    "get_protect_stage": "api",
    "invoke_protect": "api",
    "pause_protect_stage": "api",
    "resume_protect_stage": "api",
    "set_default_protect": "api",
    "update_protect_stage": "api",
    "Engine": "engine",
    "InvalidRequestError": "errors",
    "ProjectNotFoundError": "errors",
    "StageConflictError": "errors",
    "StageNotFoundError": "errors",
    "StageguardError": "errors",
    "StoreUnavailableError": "errors",
    "UnknownMetricError": "errors",
    "GalileoMetrics": "galileo_metrics",
    "MetricSpec": "metrics",
    "ValueKind": "metrics",
    "get_metric": "metrics",
    "list_metrics": "metrics",
    "normalize_metric_name": "metrics",
    "RuleOperator": "operators",
    "Message": "payload",
    "Payload": "payload",
    "ToolCall": "payload",
    "ToolSpec": "payload",
    "Protect": "protect",
    "Vault": "redaction",
    "ActionResult": "response",
    "Failure": "response",
    "MetricResult": "response",
    "Request": "response",
    "Response": "response",
    "RuleResult": "response",
    "RulesetResult": "response",
    "StageMetadata": "response",
    "TraceMetadata": "response",
    "ActionType": "rules",
    "OverrideAction": "rules",
    "PassthroughAction": "rules",
    "RedactAction": "rules",
    "Rule": "rules",
    "Ruleset": "rules",
    "Subscription": "rules",
    "ScoreResult": "scorers.base",
    "Scorer": "scorers.base",
    "Span": "scorers.base",
    "TextScorer": "scorers.base",
    "ScorerRegistry": "scorers.registry",
    "register_metric": "scorers.registry",
    "warm_up": "scorers.registry",
    "StageLike": "stage_ref",
    "StageRef": "stage_ref",
    "Project": "stages",
    "Stage": "stages",
    "StageType": "stages",
    "ExecutionStatus": "status",
    "FailPolicy": "status",
    "SQLiteStageStore": "store",
    "StageStore": "store",
}

__all__ = [
    "ActionResult",
    "ActionType",
    "Engine",
    "ExecutionStatus",
    "FailPolicy",
    "Failure",
    "GalileoMetrics",
    "InvalidRequestError",
    "Message",
    "MetricResult",
    "MetricSpec",
    "OverrideAction",
    "PassthroughAction",
    "Payload",
    "Project",
    "ProjectNotFoundError",
    "Protect",
    "RedactAction",
    "Request",
    "Response",
    "Rule",
    "RuleOperator",
    "RuleResult",
    "Ruleset",
    "RulesetResult",
    "SQLiteStageStore",
    "ScoreResult",
    "Scorer",
    "ScorerRegistry",
    "Span",
    "Stage",
    "StageConflictError",
    "StageLike",
    "StageMetadata",
    "StageNotFoundError",
    "StageRef",
    "StageStore",
    "StageType",
    "StageguardError",
    "StoreUnavailableError",
    "Subscription",
    "TextScorer",
    "ToolCall",
    "ToolSpec",
    "TraceMetadata",
    "UnknownMetricError",
    "ValueKind",
    "Vault",
    "__version__",
    "ainvoke_protect",
    "create_protect_stage",
    "get_default_protect",
    "get_metric",
    "get_protect_stage",
    "invoke_protect",
    "list_metrics",
    "normalize_metric_name",
    "pause_protect_stage",
    "register_metric",
    "resume_protect_stage",
    "set_default_protect",
    "update_protect_stage",
    "warm_up",
]

if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name stays an error for them

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

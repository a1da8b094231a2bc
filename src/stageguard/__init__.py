"""stageguard: runtime guardrails for LLM apps.

Rules compare a metric with a target, rulesets AND their rules and carry an action, stages hold
prioritized rulesets. Galileo Protect's wire format and functional API, offline by default.
"""

from ._version import __version__
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
from .rules import ActionType, OverrideAction, PassthroughAction, RedactAction, Rule, Ruleset, Subscription
from .scorers import Scorer, ScoreResult, ScorerRegistry, Span, TextScorer, register_metric
from .stage_ref import StageLike, StageRef
from .stages import Project, Stage, StageType
from .status import ExecutionStatus, FailPolicy
from .store import SQLiteStageStore, StageStore

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
]

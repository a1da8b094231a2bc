"""LlamaIndex adapters: guard query engines, chat engines, retrieved nodes, tools and workflow agents.

Install with ``pip install stageguard[llama-index]``. Each guard takes a stage by name (``stage=``, with
``stage_version=``/``project_name=``), inline ``prioritized_rulesets=``, or a :class:`~stageguard.StageRef`
(also exported here) per hook, plus ``protect=`` (default: :func:`stageguard.get_default_protect`),
``timeout``, ``fail_policy`` and ``shadow``. Adapters only map LlamaIndex objects to payloads and the stage's
action back; see ``docs/llama_index.md``.
"""

try:  # the extra's package first, so that a missing one says how to install it
    import llama_index.core  # noqa: F401
except ImportError as exc:
    raise ImportError(
        f"stageguard.llama_index needs the llama-index extra ({exc.name or exc} is not installed): "
        'pip install "stageguard[llama-index]"'
    ) from exc

from ..stage_ref import StageLike, StageRef
from ._agents import (
    AgentGuard,
    GuardedAgentMixin,
    GuardedAgentWorkflow,
    GuardedCodeActAgent,
    GuardedFunctionAgent,
    GuardedReActAgent,
    guarded_class,
    run_vault,
)
from ._chat import GuardedChatEngine, checked_stream
from ._events import DecisionRecord, ProtectEventHandler
from ._guard import DECISIONS_KEY, GuardDecisionEvent, decisions_of
from ._postprocessor import GuardNodePostprocessor, NodeDecision, NodeReport
from ._query import GuardedQueryEngine
from ._retry import ATTEMPTS_KEY, Retry, feedback_message
from ._tools import GuardedFunctionTool

__all__ = [
    "ATTEMPTS_KEY",
    "DECISIONS_KEY",
    "AgentGuard",
    "DecisionRecord",
    "GuardDecisionEvent",
    "GuardNodePostprocessor",
    "GuardedAgentMixin",
    "GuardedAgentWorkflow",
    "GuardedChatEngine",
    "GuardedCodeActAgent",
    "GuardedFunctionAgent",
    "GuardedFunctionTool",
    "GuardedQueryEngine",
    "GuardedReActAgent",
    "NodeDecision",
    "NodeReport",
    "ProtectEventHandler",
    "Retry",
    "StageLike",
    "StageRef",
    "checked_stream",
    "decisions_of",
    "feedback_message",
    "guarded_class",
    "run_vault",
]

"""LangChain and LangGraph adapters for stageguard (extra ``stageguard[langchain]``).

- :class:`Guard`: a Runnable step that checks the value flowing through a chain.
- :func:`protect`: wraps a whole chain between an input stage and an output stage.
- :class:`ProtectMiddleware`: ``create_agent`` middleware (input, answers, tool calls, tool results).
- :class:`ProtectCallbackHandler`: observes (or aborts) runs that can't take the others.
- :func:`guard_node`: a LangGraph node, with optional human review through ``interrupt()``.

Every decision is dispatched as the custom event :data:`EVENT_NAME`. See ``docs/langchain.md``.
"""

try:  # the extra's packages first, so that a missing one says how to install it
    import langchain_core  # noqa: F401
    import langgraph  # noqa: F401

    import langchain  # noqa: F401
except ImportError as exc:
    raise ImportError(
        f"stageguard.langchain needs the langchain extra ({exc.name or exc} is not installed): "
        'pip install "stageguard[langchain]"'
    ) from exc

from ..stage_ref import StageRef
from ._callbacks import Decision, ProtectCallbackHandler
from ._documents import DocumentDecision, DocumentGuard, DocumentReport, GuardedRetriever
from ._errors import GuardrailTriggered
from ._events import EVENT_NAME
from ._graph import (
    ApproveDecision,
    EditTextDecision,
    InvalidReview,
    RejectDecision,
    RespondDecision,
    ReviewDecision,
    guard_node,
    parse_decision,
    resolve_review,
)
from ._guard import Guard
from ._middleware import ProtectMiddleware, ProtectState
from ._retry import ATTEMPTS_KEY, RETRY_EVENT, Retry, feedback_message
from ._wrap import ProtectedRunnable, protect

__all__ = [
    "ATTEMPTS_KEY",
    "EVENT_NAME",
    "RETRY_EVENT",
    "ApproveDecision",
    "Decision",
    "DocumentDecision",
    "DocumentGuard",
    "DocumentReport",
    "EditTextDecision",
    "Guard",
    "GuardedRetriever",
    "GuardrailTriggered",
    "InvalidReview",
    "ProtectCallbackHandler",
    "ProtectMiddleware",
    "ProtectState",
    "ProtectedRunnable",
    "RejectDecision",
    "RespondDecision",
    "Retry",
    "ReviewDecision",
    "StageRef",
    "feedback_message",
    "guard_node",
    "parse_decision",
    "protect",
    "resolve_review",
]

"""LangChain and LangGraph adapters for stageguard (extra ``stageguard[langchain]``).

- :class:`Guard`: a Runnable step that checks the value flowing through a chain.
- :func:`protect`: wraps a whole chain between an input stage and an output stage.
- :class:`ProtectMiddleware`: ``create_agent`` middleware (input, answers, tool calls, tool results).
- :class:`ProtectCallbackHandler`: observes (or aborts) runs that can't take the others.
- :func:`guard_node`: a LangGraph node, with optional human review through ``interrupt()``.

Every decision is dispatched as the custom event :data:`EVENT_NAME`. See ``docs/langchain.md``.
"""

from ..stage_ref import StageRef
from ._callbacks import Decision, ProtectCallbackHandler
from ._errors import GuardrailTriggered
from ._events import EVENT_NAME
from ._graph import guard_node, resolve_review
from ._guard import Guard
from ._middleware import ProtectMiddleware, ProtectState
from ._wrap import ProtectedRunnable, protect

__all__ = [
    "EVENT_NAME",
    "Decision",
    "Guard",
    "GuardrailTriggered",
    "ProtectCallbackHandler",
    "ProtectMiddleware",
    "ProtectState",
    "ProtectedRunnable",
    "StageRef",
    "guard_node",
    "protect",
    "resolve_review",
]

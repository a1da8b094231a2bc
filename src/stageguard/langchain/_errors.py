"""The exception a guard raises instead of changing text, so callers (or ``with_fallbacks``) decide."""

from __future__ import annotations

from ..response import Response
from ..rules import ActionType


class GuardrailTriggered(Exception):
    """A stage triggered and its action would have changed the text.

    Raised by an input :class:`Guard` whose stage overrides (the chain stops before the model), by
    guards with ``on_trigger="raise"`` and by :class:`ProtectCallbackHandler` in enforce mode.
    ``response`` is the full :class:`~stageguard.Response` (triggered rules, metric values, action),
    ``override`` the text the action produced, ``text`` the checked text and ``where`` the check point.
    """

    def __init__(self, response: Response, *, where: str = "", text: str | None = None) -> None:
        self.response = response
        self.where = where
        self.text = text
        stage = response.stage_metadata.stage_name if response.stage_metadata else None
        rules = ", ".join(
            f"{r.metric} {r.operator.value} {r.target_value!r}" for r in response.triggered_rules
        )
        message = f"guardrail triggered ({response.action_result.type.value}"
        message += f", stage {stage!r}" if stage else ""
        message += f", at {where}" if where else ""
        message += f"): {rules}" if rules else ")"
        if response.failure is not None:
            message += f" [{response.failure.policy.value}: {response.failure.reason}]"
        super().__init__(message)

    @property
    def blocked(self) -> bool:
        """Whether the action was an OVERRIDE (the text is replaced, not masked)."""
        return self.response.action_result.type is ActionType.OVERRIDE

    @property
    def override(self) -> str:
        """The text the stage's action would have produced (the override, or the redacted text)."""
        return self.response.text

    def __reduce__(self) -> tuple[object, tuple[Response, str, str | None]]:
        # keep the exception picklable (process pools and some checkpointers pickle errors)
        return (_rebuild, (self.response, self.where, self.text))


def _rebuild(response: Response, where: str, text: str | None) -> GuardrailTriggered:
    return GuardrailTriggered(response, where=where, text=text)

"""Retry with feedback for LlamaIndex engines: re-ask when the output check rejects an answer.

``GuardedQueryEngine(..., retry=Retry(max_attempts=3))``: when the output check triggers
an action named in ``Retry.on`` (default OVERRIDE), the engine is asked again with a feedback message
built from the triggered rules and their metrics' explanations appended to the query or chat message.
The first answer that passes is returned; when none does, the last attempt's decision applies (the
override). Every attempt is listed under ``metadata["stageguard_attempts"]`` and each check is dispatched
as a ``GuardDecisionEvent`` whose ``details`` carry ``attempt`` and ``max_attempts``.

The policy, the default feedback and the attempt records are the core's (``stageguard._retry``), shared
with ``stageguard.langchain``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._retry import ATTEMPTS_KEY, AttemptLog, Feedback, RetryPolicy, feedback_message
from ..response import Response

__all__ = ["ATTEMPTS_KEY", "Attempts", "Feedback", "Retry", "check_retry", "feedback_message"]


@dataclass(frozen=True)
class Retry(RetryPolicy):
    """How a guarded engine re-asks when its answer is rejected.

    ``max_attempts`` counts every call, the first included (``2``: one retry). ``on`` lists the actions
    that reject an answer (a REDACT left out passes, masked). ``feedback`` builds the message from the
    rejecting responses; ``include_answer`` quotes the rejected answer before it. ``on_attempt`` is
    called with each attempt's record (as listed in the metadata). The policy is the core's
    (``stageguard._retry.RetryPolicy``, shared with LangChain); this class adds where feedback goes.
    """

    def rejects(self, response: Response | None) -> bool:
        """Whether ``response`` rejects the answer (applied, with an action in :attr:`on`)."""
        return response is not None and bool(self.rejecting([response]))

    def extend(self, message: str, answer: str, feedback: str) -> str:
        """The query or chat message of the next attempt."""
        return f"{message}{self.quoted(answer)}\n\n{feedback}"


def check_retry(retry: Retry | None, *, has_output: bool, stream_mode: str) -> Retry | None:
    """Validate ``retry=`` as ``protect()`` does in LangChain."""
    if retry is None:
        return None
    if not isinstance(retry, Retry):
        raise TypeError(f"retry must be a Retry(...), got {type(retry).__name__}")
    if not has_output:
        raise ValueError("retry needs an output stage (it re-asks when the output check rejects an answer)")
    if stream_mode == "window":
        raise ValueError(
            'retry needs streaming="buffer": a windowed stream releases text before the answer is judged'
        )
    return retry


class Attempts:
    """The attempts of one query or chat turn under ``retry`` (a no-op without it)."""

    def __init__(self, retry: Retry | None) -> None:
        self.retry = retry
        self._log = AttemptLog(retry) if retry is not None else None

    @property
    def records(self) -> list[dict[str, Any]]:
        return self._log.records if self._log is not None else []

    def details(self) -> dict[str, Any]:
        """What each output check's ``GuardDecisionEvent`` says about the attempt."""
        if self._log is None:
            return {}
        return {"attempt": self._log.attempt, "max_attempts": self._log.retry.max_attempts}

    def record(self, decision: Response | None, message: str, answer: str) -> str | None:
        """Note an attempt's decision; the next attempt's ``message`` (with feedback) when the answer is
        to be re-asked, else ``None``."""
        if self.retry is None or self._log is None:
            return None
        feedback = self._log.judge([decision] if decision is not None else [])
        return self.retry.extend(message, answer, feedback) if feedback is not None else None

    def into(self, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.retry is None:
            return metadata
        return {**(metadata or {}), ATTEMPTS_KEY: list(self.records)}

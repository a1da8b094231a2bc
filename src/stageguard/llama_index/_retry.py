"""Retry with feedback for LlamaIndex engines: re-ask when the output check rejects an answer.

``GuardedQueryEngine(..., retry=Retry(max_attempts=3))``: when the output check triggers
an action named in ``Retry.on`` (default OVERRIDE), the engine is asked again with a feedback message
built from the triggered rules and their metrics' explanations appended to the query or chat message.
The first answer that passes is returned; when none does, the last attempt's decision applies (the
override). Every attempt is listed under ``metadata["stageguard_attempts"]`` and each check is dispatched
as a ``GuardDecisionEvent`` whose ``details`` carry ``attempt`` and ``max_attempts``.

Names and the default feedback follow ``stageguard.langchain``'s ``Retry`` (which can't be imported
without LangChain).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..response import Response
from ..rules import ActionType

ATTEMPTS_KEY = "stageguard_attempts"
"""Key of the attempt list in a guarded engine's response metadata."""

Feedback = Callable[[list[Response]], str]
"""Builds the feedback message from the responses that rejected an answer."""


def feedback_message(responses: list[Response]) -> str:
    """The default feedback: each triggered rule with its metric's value and explanation."""
    lines = []
    for response in responses:
        if not response.applied:
            continue
        for rule in response.triggered_rules:
            target = "" if rule.target_value is None else f" {rule.target_value!r}"
            line = f"- {rule.metric} {rule.operator.value}{target} (value: {rule.value!r})"
            metric = response.metric_results.get(rule.metric)
            if metric is not None and metric.explanation:
                line += f": {metric.explanation}"
            lines.append(line)
    rules = "\n".join(dict.fromkeys(lines)) or "- (no rule details)"
    return (
        "Your previous answer was rejected by these guardrail rules:\n"
        f"{rules}\n"
        "Write a new answer to the original request that satisfies them."
    )


@dataclass(frozen=True)
class Retry:
    """How a guarded engine re-asks when its answer is rejected.

    ``max_attempts`` counts every call, the first included (``2``: one retry). ``on`` lists the actions
    that reject an answer (a REDACT left out passes, masked). ``feedback`` builds the message from the
    rejecting responses; ``include_answer`` quotes the rejected answer before it. ``on_attempt`` is
    called with each attempt's record (as listed in the metadata).
    """

    max_attempts: int = 2
    on: frozenset[ActionType] = field(default_factory=lambda: frozenset({ActionType.OVERRIDE}))
    feedback: Feedback = feedback_message
    include_answer: bool = True
    on_attempt: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"Retry.max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"Retry.max_attempts must be at least 1, got {self.max_attempts}")
        on = frozenset(ActionType(a) for a in self.on)  # accept "OVERRIDE", "REDACT"
        if not on or ActionType.PASSTHROUGH in on:
            raise ValueError("Retry.on takes OVERRIDE and/or REDACT (PASSTHROUGH never changes an answer)")
        object.__setattr__(self, "on", on)

    def rejects(self, response: Response | None) -> bool:
        """Whether ``response`` rejects the answer (applied, with an action in :attr:`on`)."""
        return response is not None and response.applied and response.action_result.type in self.on

    def extend(self, message: str, answer: str, feedback: str) -> str:
        """The query or chat message of the next attempt."""
        quoted = f"\n\nYour previous answer:\n{answer}" if self.include_answer and answer else ""
        return f"{message}{quoted}\n\n{feedback}"


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


def attempt_record(
    attempt: int, retry: Retry, decision: Response | None, passed: bool, feedback: str | None
) -> dict[str, Any]:
    """One attempt as listed in the metadata: its number, whether it passed, its decisions (the output
    check's :class:`~stageguard.Response`), the feedback it led to (``None`` when it was the last)."""
    return {
        "attempt": attempt,
        "max_attempts": retry.max_attempts,
        "passed": passed,
        "decisions": [decision] if decision is not None else [],
        "feedback": feedback,
    }


class Attempts:
    """The attempts of one query or chat turn under ``retry`` (a no-op without it)."""

    def __init__(self, retry: Retry | None) -> None:
        self.retry = retry
        self.records: list[dict[str, Any]] = []

    def details(self) -> dict[str, Any]:
        """What each output check's ``GuardDecisionEvent`` says about the attempt."""
        if self.retry is None:
            return {}
        return {"attempt": len(self.records) + 1, "max_attempts": self.retry.max_attempts}

    def record(self, decision: Response | None, message: str, answer: str) -> str | None:
        """Note an attempt's decision; the next attempt's ``message`` (with feedback) when the answer is
        to be re-asked, else ``None``."""
        retry = self.retry
        if retry is None:
            return None
        rejected = retry.rejects(decision)
        attempt = len(self.records) + 1
        again = rejected and attempt < retry.max_attempts
        feedback = retry.feedback([decision]) if again and decision is not None else None
        record = attempt_record(attempt, retry, decision, not rejected, feedback)
        self.records.append(record)
        if retry.on_attempt is not None:
            retry.on_attempt(record)
        return retry.extend(message, answer, feedback) if feedback is not None else None

    def into(self, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.retry is None:
            return metadata
        return {**(metadata or {}), ATTEMPTS_KEY: list(self.records)}

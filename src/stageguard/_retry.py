"""Retry with feedback, the framework-neutral part: the policy, the default feedback and attempt records.

An adapter re-asks its model when the output check rejects an answer (an applied action named in
``Retry.on``), with a feedback message built from the triggered rules and their metrics' explanations.
``stageguard.langchain.Retry`` and ``stageguard.llama_index.Retry`` extend :class:`RetryPolicy` with
where the feedback goes in their framework; the bookkeeping of attempts is :class:`AttemptLog`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from .response import Response
from .rules import ActionType

ATTEMPTS_KEY = "stageguard_attempts"
"""Key of the attempt list in an answer's metadata."""

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
class RetryPolicy:
    """How often and on what an adapter re-asks (the adapters' ``Retry`` add where the feedback goes).

    ``max_attempts`` counts every call, the first included (``2``: one retry). ``on`` lists the actions
    that reject an answer (a REDACT left out passes, masked). ``feedback`` builds the message from the
    rejecting responses; ``include_answer`` puts the rejected answer before it. ``on_attempt`` is called
    with each attempt's record.
    """

    max_attempts: int = 2
    on: Collection[ActionType | str] = frozenset({ActionType.OVERRIDE})
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

    def rejecting(self, responses: list[Response]) -> list[Response]:
        """The responses that reject the answer (applied, with an action in :attr:`on`)."""
        return [r for r in responses if r.applied and r.action_result.type in self.on]

    def quoted(self, answer: str) -> str:
        """The rejected answer as text to put before the feedback (empty without ``include_answer``)."""
        return f"\n\nYour previous answer:\n{answer}" if self.include_answer and answer else ""


class AttemptLog:
    """The attempts of one retrying call: each attempt's record, and the feedback for the next one.

    ``describe`` turns a response into what a record lists under ``decisions`` (the response itself by
    default; LangChain lists the JSON of its events).
    """

    def __init__(self, retry: RetryPolicy, describe: Callable[[Response], Any] | None = None) -> None:
        self.retry = retry
        self.describe = describe
        self.records: list[dict[str, Any]] = []

    @property
    def attempt(self) -> int:
        """The number of the attempt being made (1 for the first)."""
        return len(self.records) + 1

    def judge(self, responses: list[Response]) -> str | None:
        """Record an attempt judged by ``responses``; the feedback when its answer is rejected and attempts
        remain, else ``None`` (the answer, or the last decision, is final). ``records[-1]`` is the record."""
        retry = self.retry
        rejecting = retry.rejecting(responses)
        again = bool(rejecting) and self.attempt < retry.max_attempts
        feedback = retry.feedback(rejecting) if again else None
        describe = self.describe
        record = {
            "attempt": self.attempt,
            "max_attempts": retry.max_attempts,
            "passed": not rejecting,
            "decisions": [describe(r) if describe is not None else r for r in responses],
            "feedback": feedback,
        }
        self.records.append(record)
        if retry.on_attempt is not None:
            retry.on_attempt(record)
        return feedback

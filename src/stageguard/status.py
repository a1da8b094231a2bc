"""Execution statuses and fail policies shared by rules, rulesets and responses."""

from __future__ import annotations

from enum import Enum
from typing import Any


class ExecutionStatus(str, Enum):
    """Outcome of a rule, a ruleset or a whole invoke (Galileo's wire values)."""

    triggered = "triggered"
    failed = "failed"
    error = "error"
    timeout = "timeout"
    paused = "paused"
    not_triggered = "not_triggered"
    skipped = "skipped"

    @classmethod
    def _missing_(cls, value: object) -> ExecutionStatus | None:
        # Galileo serialises statuses upper-case; accept any case on input.
        if isinstance(value, str):
            for member in cls:
                if member.value == value.lower():
                    return member
        return None


def status_to_wire(status: ExecutionStatus) -> str:
    """Galileo sends statuses upper-case; so do we."""
    return status.value.upper()


def coerce_status(value: Any) -> Any:
    """Validator helper: accept statuses in any case."""
    return value.lower() if isinstance(value, str) else value


class FailPolicy(str, Enum):
    """What a stage does when a metric cannot be computed (scorer error or time-out).

    ``fail_open`` reports the failure and leaves the text unchanged; ``fail_closed`` treats the
    stage as triggered and applies its first override.
    """

    fail_open = "fail_open"
    fail_closed = "fail_closed"

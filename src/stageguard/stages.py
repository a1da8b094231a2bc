"""Stages: prioritized rulesets under a name, central (stored, versioned) or local (rulesets per call)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import InvalidRequestError
from .metrics import find_metric
from .payload import PAYLOAD_FIELDS, PayloadField, clean_before
from .rules import Ruleset, is_lenient, reject_unknown_keys
from .status import FailPolicy

MAX_VERSION = 2**63 - 1  # versions are 64-bit signed integers in every store
# Keys of a stage's JSON that Stage does not keep (Galileo's StageDB and the server's StageOut carry them).
STAGE_EXTRA_KEYS = ("created_by", "updated_at")


class StageType(str, Enum):
    local = "local"
    central = "central"


class Project(BaseModel):
    id: str
    name: str
    created_at: dt.datetime | None = None

    _clean = field_validator("id", "name", mode="before")(clean_before)


class Stage(BaseModel):
    """A stage as stored. For a central stage ``prioritized_rulesets`` are those of ``version``."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    project_id: str
    description: str | None = None
    type: StageType = StageType.local
    paused: bool = False
    version: int | None = None
    prioritized_rulesets: list[Ruleset] = Field(
        default_factory=list, validation_alias=AliasChoices("prioritized_rulesets", "rulesets")
    )
    fail_policy: FailPolicy = FailPolicy.fail_open
    created_at: dt.datetime | None = None
    # Not stored: what creating/updating this stage found wrong with its rules for the payload fields it
    # declared it receives (see :func:`payload_field_warnings`).
    warnings: list[str] = Field(default_factory=list)

    _clean = field_validator("id", "name", "project_id", "description", mode="before")(clean_before)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any, info: ValidationInfo) -> Any:
        return reject_unknown_keys(
            value, cls, what="a stage", lenient=is_lenient(info), accepted=STAGE_EXTRA_KEYS
        )

    def describe(self) -> str:
        """The stage in a few readable lines: type, version, state, then each ruleset with its action
        in words (a ruleset without an action is PASSTHROUGH, Galileo's default, and says so)."""
        version = f" v{self.version}" if self.version is not None else ""
        state = "paused" if self.paused else "active"
        lines = [f"stage {self.name!r}: {self.type.value}{version}, {state}, {self.fail_policy.value}"]
        if self.description:
            lines.append(f"  {self.description}")
        for i, ruleset in enumerate(self.prioritized_rulesets, 1):
            lines.append(f"  {i}. {ruleset}")
        if not self.prioritized_rulesets:
            lines.append(
                "  no rulesets"
                + (" (a local stage gets them with each invoke)" if self.type is StageType.local else "")
            )
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def _repr_html_(self) -> str:
        from ._display import stage_html

        return stage_html(self)


def check_payload_fields(
    payload_fields: Any, field: str = "payload_fields"
) -> tuple[PayloadField, ...] | None:
    """``payload_fields`` as a tuple of payload field names (``None`` stays ``None``: not declared), or an
    :class:`InvalidRequestError` naming ``field`` and the allowed names."""
    if payload_fields is None:
        return None
    if isinstance(payload_fields, (str, bytes)) or not isinstance(payload_fields, Iterable):
        raise InvalidRequestError(
            f"{field} must be a list of payload field names, got {type(payload_fields).__name__}"
        )
    fields = list(payload_fields)
    bad = [f for f in fields if f not in PAYLOAD_FIELDS]
    if bad:
        raise InvalidRequestError(
            f"{field}: {', '.join(map(repr, bad))} not payload field(s); allowed: {', '.join(PAYLOAD_FIELDS)}"
        )
    return tuple(f for f in PAYLOAD_FIELDS if f in fields)


def payload_field_warnings(
    rulesets: Sequence[Ruleset] | None,
    payload_fields: Sequence[str] | None,
    *,
    strict: bool = False,
    stage_name: str | None = None,
) -> list[str]:
    """One message per rule whose metric can never be evaluated on payloads holding only ``payload_fields``
    (built-in and custom metrics alike; a metric is fine when its required fields or one set of its
    alternatives are declared). ``payload_fields=None`` means "not declared": nothing can be known, ``[]``.

    With ``strict=True`` any such rule is an :class:`InvalidRequestError` naming the rule, the metric and
    the missing fields.
    """
    if payload_fields is None or not rulesets:
        return []
    declared = frozenset(payload_fields)
    receives = ", ".join(f for f in PAYLOAD_FIELDS if f in declared) or "no fields"
    messages = []
    for i, ruleset in enumerate(rulesets):
        for j, rule in enumerate(ruleset.rules):
            spec = find_metric(rule.metric)
            if spec is None:
                continue
            missing = spec.missing(declared.__contains__)
            if not missing:
                continue
            kind = "custom metric" if spec.custom else "metric"
            needs = " + ".join(spec.required_fields)
            if spec.alternatives:
                needs += "".join(f" (or {' + '.join(option)})" for option in spec.alternatives)
            messages.append(
                f"prioritized_rulesets[{i}].rules[{j}] ({rule.given_metric} {rule.operator.value}"
                f"{'' if rule.target_value is None else f' {rule.target_value!r}'}): {kind} {spec.name!r} "
                f"can never be evaluated: the payload lacks {', '.join(missing)} (it needs {needs}; "
                f"{'stage ' + repr(stage_name) + ' receives' if stage_name else 'declared payload_fields:'} "
                f"{receives})"
            )
    if strict and messages:
        raise InvalidRequestError("; ".join(messages))
    return messages

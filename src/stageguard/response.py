"""The invoke request and its fully typed response (Galileo's wire shape plus stageguard extensions)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python

from .operators import RuleOperator
from .payload import Payload, clean_json, clean_text
from .rules import Action, ActionType, Rule, Ruleset, foreign_data
from .scorers.base import MetricValue, Span
from .stages import MAX_VERSION, StageType
from .status import ExecutionStatus, FailPolicy, coerce_status, status_to_wire


class _StatusModel(BaseModel):
    """Statuses are accepted in any case and sent upper-case, as Galileo does."""

    status: ExecutionStatus = ExecutionStatus.skipped

    @field_validator("status", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return coerce_status(value)

    @field_serializer("status")
    def _upper(self, status: ExecutionStatus) -> str:
        return status_to_wire(status)


MAX_TIMEOUT = 86_400.0  # seconds: the largest latency budget an invoke accepts (one day)


def clean_metadata(value: dict[str, Any] | None, field: str = "metadata") -> dict[str, Any] | None:
    """Metadata echoed in the response: strings cleaned, nesting bounded, and JSON-serialisable."""
    if value is None:
        return None
    try:
        cleaned: dict[str, Any] = clean_json(value)
        to_json(cleaned, serialize_unknown=False)
    except (ValueError, PydanticSerializationError) as exc:
        raise ValueError(f"{field} must be JSON-serialisable: {exc}") from None
    return cleaned


class Request(BaseModel):
    """An invoke: a payload checked against a stage (by name or id) or inline rulesets."""

    model_config = ConfigDict(populate_by_name=True)

    payload: Payload
    prioritized_rulesets: list[Ruleset] | None = Field(
        default=None, validation_alias=AliasChoices("prioritized_rulesets", "rulesets")
    )
    project_name: str | None = None
    project_id: str | None = None
    stage_name: str | None = None
    stage_id: str | None = None
    stage_version: int | None = Field(default=None, ge=0, le=MAX_VERSION)
    timeout: float = Field(
        default=300.0,
        gt=0,
        le=MAX_TIMEOUT,
        allow_inf_nan=False,
        description="Latency budget of the whole invoke, in seconds.",
    )
    metadata: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    fail_policy: FailPolicy | None = Field(default=None, description="Overrides the stage's fail policy.")
    shadow: bool = Field(default=False, description="Evaluate and report, change nothing.")
    _sanitized: list[str] = PrivateAttr(default_factory=list)
    _notes: list[str] = PrivateAttr(default_factory=list)  # set when the stage is resolved

    @field_validator("payload", mode="before")
    @classmethod
    def _foreign_payload(cls, value: Any) -> Any:
        return foreign_data(value, Payload)

    @field_validator("project_id", "stage_id", mode="before")
    @classmethod
    def _ids_as_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, uuid.UUID) else value

    @field_validator("project_name", "project_id", "stage_name", "stage_id")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("must not be blank")
        return clean_text(value, nul=True)

    @model_validator(mode="after")
    def _clean(self) -> Request:
        metadata = clean_metadata(self.metadata)
        headers = clean_json(self.headers) if self.headers is not None else None
        changed = [self.metadata is not metadata and "metadata", self.headers is not headers and "headers"]
        self.__dict__.update(metadata=metadata, headers=headers)
        found = [*self._sanitized, *self.payload.sanitized, *(c for c in changed if c)]
        self._sanitized = list(dict.fromkeys(found))
        return self

    @property
    def sanitized(self) -> list[str]:
        """Fields (of the payload, or ``metadata``/``headers``) in which unencodable text was replaced."""
        return list(self._sanitized)


class ActionResult(BaseModel):
    """The action taken: its type and the resulting text (``spans`` lists what a REDACT masked).

    ``review`` (stageguard extension, in the JSON only when true): the triggered ruleset's action asks a
    person to review it before it applies; see :attr:`Response.review_requested`.
    """

    type: ActionType
    value: str
    spans: list[Span] = Field(default_factory=list)
    review: bool = False

    # No return annotation: one would replace the model's JSON schema (the server's OpenAPI) with "any".
    @model_serializer(mode="wrap")
    def _omit_no_review(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if isinstance(data, dict) and not data.get("review"):
            data.pop("review", None)
        return data


class RuleResult(_StatusModel):
    """One rule's outcome. ``metric`` is spelled as the invoke's rule spelled it; when that differs from
    the canonical name, ``canonical_metric`` holds the canonical one (``metric_results`` keys)."""

    metric: str
    operator: RuleOperator
    target_value: Any = None
    value: MetricValue = None
    execution_time: float | None = None
    canonical_metric: str | None = None


class RulesetResult(_StatusModel):
    rules: list[Rule] = Field(default_factory=list)
    action: Action | None = None
    description: str | None = None
    rule_results: list[RuleResult] = Field(default_factory=list)


class MetricResult(BaseModel):
    """One metric's computation. ``status`` is Galileo's: success, timeout, failed (e.g. the payload
    lacks a field it needs) or error (the scorer raised)."""

    value: MetricValue = None
    execution_time: float | None = None
    status: str | None = None
    error_message: str | None = None
    explanation: str | None = None
    spans: list[Span] = Field(default_factory=list)

    @field_validator("status", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_serializer("status")
    def _upper(self, status: str | None) -> str | None:
        return status.upper() if status else None


class StageMetadata(BaseModel):
    project_id: str
    stage_id: str
    stage_name: str
    stage_version: int | None = None
    stage_type: StageType


_VARIANT = {f"{i:x}": f"{(i & 0x3) | 0x8:x}" for i in range(16)}


def new_trace_id() -> str:
    """``str(uuid.uuid4())`` (16 bytes from ``os.urandom``, version and variant bits set), in a third of
    the time: the UUID object is never needed."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


class TraceMetadata(BaseModel):
    id: str = Field(default_factory=new_trace_id)
    received_at: int = Field(default_factory=time.time_ns)
    response_at: int = Field(default_factory=time.time_ns)
    execution_time: float = -1.0


class Failure(BaseModel):
    """Why the guard could not decide on everything, and which fail policy it applied."""

    policy: FailPolicy
    metrics: list[str]
    reason: str


class _ResponseFields(_StatusModel):
    """The fields of :class:`Response` and their JSON, with nothing built on first read: its serializer
    writes a response whose fields are all built (see :func:`response_json`)."""

    model_config = ConfigDict(extra="allow")

    status: ExecutionStatus = ExecutionStatus.not_triggered
    text: str
    action_result: ActionResult
    ruleset_results: list[RulesetResult] = Field(default_factory=list)
    metric_results: dict[str, MetricResult] = Field(default_factory=dict)
    stage_metadata: StageMetadata | None = None
    trace_metadata: TraceMetadata = Field(default_factory=TraceMetadata)
    metadata: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    api_version: str = "1.0.0"
    shadow: bool = False
    shadow_action_result: ActionResult | None = None
    failure: Failure | None = None
    sanitized: list[str] | None = Field(
        default=None,
        description="Fields in which code points UTF-8 cannot encode (lone surrogates) became U+FFFD.",
    )
    notes: list[str] | None = Field(
        default=None,
        description="What the invoke did differently from what it was asked (e.g. rulesets ignored).",
    )

    @field_serializer("metadata", "headers")
    def _safe_json(self, value: Any, info: SerializationInfo) -> Any:
        """Echoed request data can't make the response unserialisable (engine used directly)."""
        if value is None or not info.mode_is_json():
            return value
        try:
            return to_jsonable_python(clean_json(value), fallback=repr)
        except (ValueError, PydanticSerializationError) as exc:
            return {"error": f"not serialisable: {exc}"}


class Response(_ResponseFields):
    """What an invoke returns. ``text`` is what the app should use from here on."""

    # The engine leaves the fields most callers never read (``ruleset_results``, ``metric_results``,
    # ``trace_metadata``) out of ``__dict__`` and puts here what builds them: the decision is made without
    # them, and the result objects are built on first read. Everything that reads ``__dict__`` directly
    # (pydantic's copy, equality, pickling, iteration, repr and serialisation) builds them first, so a
    # response behaves as if they had been built at once.
    _pending: Callable[[], dict[str, Any]] | None = PrivateAttr(default=None)

    def _materialise(self) -> None:
        """Build the pending fields and put them in their place in ``__dict__`` (field order: the JSON's
        key order). A field assigned meanwhile keeps the assigned value."""
        private = self.__pydantic_private__
        build = private.get("_pending") if private is not None else None
        if private is None or build is None:
            return
        values, built = self.__dict__, build()
        ordered = {
            name: values[name] if name in values else built[name]
            for name in type(self).model_fields
            if name in values or name in built
        }
        object.__setattr__(self, "__dict__", ordered)
        private["_pending"] = None

    if not TYPE_CHECKING:  # as pydantic's own (mypy would allow any attribute otherwise)

        def __getattr__(self, name: str) -> Any:
            if name in _LAZY_FIELDS:
                self._materialise()
                if name in self.__dict__:
                    return self.__dict__[name]
            return super().__getattr__(name)

    def __copy__(self) -> Self:
        self._materialise()
        return super().__copy__()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        self._materialise()
        return super().__deepcopy__(memo)

    def __getstate__(self) -> dict[Any, Any]:
        self._materialise()
        return super().__getstate__()

    def __eq__(self, other: Any) -> bool:
        self._materialise()
        if isinstance(other, Response):
            other._materialise()
        return super().__eq__(other)

    def __iter__(self) -> Any:
        self._materialise()
        return super().__iter__()

    def __repr_args__(self) -> Any:
        self._materialise()
        return super().__repr_args__()

    # No return annotation: one would replace the model's JSON schema (the server's OpenAPI) with "any".
    @model_serializer(mode="wrap")
    def _complete(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        self._materialise()
        return handler(self)

    @property
    def triggered(self) -> bool:
        return self.status is ExecutionStatus.triggered

    @property
    def applied(self) -> bool:
        """Whether the action changed the text (never in shadow mode, nor a REDACT with nothing to mask)."""
        result = self.action_result
        if self.shadow or result.type is ActionType.PASSTHROUGH:
            return False
        return result.type is not ActionType.REDACT or bool(result.spans)

    @property
    def review_requested(self) -> bool:
        """Whether the applied action asks a person to review it first (its ruleset's action has
        ``review: true``). An adapter with a human in the loop pauses before using :attr:`text`; one
        without uses it as usual. Never in shadow mode, nor when nothing changed."""
        return self.applied and self.action_result.review

    @property
    def triggered_rules(self) -> list[RuleResult]:
        return [
            rule
            for ruleset in self.ruleset_results
            if ruleset.status is ExecutionStatus.triggered
            for rule in ruleset.rule_results
        ]

    def _summary_lines(self) -> list[tuple[str, str]]:
        """``(style, line)`` pairs for a terminal: the decision, the text, each ruleset with its rules,
        then failed metrics, the fail policy applied and notes. Styles are rich's (``""``: plain)."""
        where = ""
        if self.stage_metadata is not None:
            meta = self.stage_metadata
            version = f" v{meta.stage_version}" if meta.stage_version is not None else ""
            where = f" · stage {meta.stage_name!r}{version}"
        took = self.trace_metadata.execution_time
        took_text = f" · {took * 1000:.0f} ms" if took >= 0 else ""
        shadow = " (shadow: not applied)" if self.shadow else ""
        if self.review_requested:
            shadow = " (review requested)"
        lines = [
            (
                _STYLES.get(self.status, "bold"),
                f"{status_to_wire(self.status)} · {self.action_result.type.value}{shadow}{where}{took_text}",
            ),
            ("", f"text: {_short(self.text)}"),
        ]
        for i, ruleset in enumerate(self.ruleset_results, 1):
            action = f" -> {ruleset.action.type.value}" if ruleset.action is not None else ""
            about = f" ({ruleset.description})" if ruleset.description else ""
            lines.append(
                (
                    _STYLES.get(ruleset.status, ""),
                    f"  ruleset {i}{about}: {status_to_wire(ruleset.status)}{action}",
                )
            )
            for rule in ruleset.rule_results:
                target = "" if rule.target_value is None else f" {_short(rule.target_value, 60)}"
                lines.append(
                    (
                        "dim" if rule.status is ExecutionStatus.skipped else "",
                        f"    {rule.metric} {rule.operator.value}{target}: value {_short(rule.value, 60)}, "
                        f"{status_to_wire(rule.status)}",
                    )
                )
        for name, metric in self.metric_results.items():
            if metric.status not in (None, "success") or metric.error_message:
                problem = f": {metric.error_message}" if metric.error_message else ""
                lines.append(("yellow", f"  metric {name}: {(metric.status or 'error').upper()}{problem}"))
        if self.failure is not None:
            lines.append(("yellow", f"  {self.failure.policy.value}: {self.failure.reason}"))
        lines.extend(("dim", f"  note: {note}") for note in self.notes or ())
        return lines

    def __str__(self) -> str:
        """A few readable lines (``print(response)``); ``repr()`` and ``model_dump()`` keep every field."""
        return "\n".join(line for _, line in self._summary_lines())

    def __rich__(self) -> Any:
        """The same lines, coloured by status, when printed with rich."""
        from rich.text import Text

        text = Text()
        for i, (style, line) in enumerate(self._summary_lines()):
            text.append(("\n" if i else "") + line, style=style or None)
        return text

    def _repr_html_(self) -> str:
        from ._display import response_html

        return response_html(self)


# what Response._pending may build
_LAZY_FIELDS = frozenset({"ruleset_results", "metric_results", "trace_metadata"})


def response_json(response: Response) -> bytes:
    """``response.model_dump_json().encode()`` in about half the time: the pending fields are built, then
    written by the fields' own serializer (Response's wrap serializer takes a detour through Python
    objects). For the hot paths: the server's answers, subscriptions."""
    response._materialise()
    return _ResponseFields.__pydantic_serializer__.to_json(response)


_STYLES = {
    ExecutionStatus.triggered: "bold red",
    ExecutionStatus.not_triggered: "green",
    ExecutionStatus.failed: "yellow",
    ExecutionStatus.error: "yellow",
    ExecutionStatus.timeout: "yellow",
    ExecutionStatus.paused: "dim",
    ExecutionStatus.skipped: "dim",
}


def _short(value: Any, limit: int = 200) -> str:
    """A value on one line: strings quoted, numbers rounded, anything longer than ``limit`` cut."""
    if isinstance(value, float):
        text = f"{value:.3g}"
    elif isinstance(value, str):
        text = repr(value)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

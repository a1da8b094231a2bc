"""What a guard checks: Galileo's ``input``/``output`` plus what adapters see in RAG apps and agents."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ._build import builder

# Code points UTF-8 cannot encode (lone surrogates) break JSON serialisation and every store; NUL breaks
# PostgreSQL text and JSONB. Text is cleaned once, when the models are built.
_SURROGATES = re.compile("[\ud800-\udfff]")
_SURROGATES_OR_NUL = re.compile("[\ud800-\udfff\x00]")
REPLACEMENT = "\ufffd"


def clean_text(text: str, *, nul: bool = False) -> str:
    """``text`` with lone surrogates (and, with ``nul``, NUL characters) replaced by U+FFFD.

    Every other code point is kept: surrogates are the only ones UTF-8 cannot encode. ``nul`` is for
    strings that are stored (stage names, rules), since PostgreSQL refuses NUL in text. This is the one
    cleaning of text in stageguard: the server, the scorers and the models all use it.
    """
    if text.isascii() and not (nul and "\x00" in text):
        return text
    return (_SURROGATES_OR_NUL if nul else _SURROGATES).sub(REPLACEMENT, text)


MAX_DEPTH = 64  # nesting of JSON-like fields (metadata, tool arguments, schemas); deeper can't be serialised


def clean_json(value: Any, *, nul: bool = False, _depth: int = 0) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with every string, keys included, cleaned
    by :func:`clean_text`. Returns the same object when nothing needed cleaning.

    Raises ``ValueError`` for containers nested deeper than ``MAX_DEPTH`` (they could not be serialised).
    """
    if isinstance(value, str):
        return clean_text(value, nul=nul)
    if not isinstance(value, (dict, list, tuple)):
        return value
    if _depth >= MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    depth = _depth + 1
    if isinstance(value, dict):
        items = [
            (clean_json(k, nul=nul, _depth=depth), clean_json(v, nul=nul, _depth=depth))
            for k, v in value.items()
        ]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    cleaned = [clean_json(v, nul=nul, _depth=depth) for v in value]
    if all(c is v for c, v in zip(cleaned, value, strict=True)):
        return value
    return cleaned if isinstance(value, list) else tuple(cleaned)


def clean_before(value: Any) -> Any:
    """A ``mode="before"`` validator body: clean strings (and lists of strings) for storage."""
    return clean_json(value, nul=True) if isinstance(value, (str, list)) else value


PayloadField = Literal["input", "output", "context", "messages", "tools", "tool_calls"]
PAYLOAD_FIELDS: tuple[PayloadField, ...] = ("input", "output", "context", "messages", "tools", "tool_calls")
ALL_FIELDS: frozenset[str] = frozenset(PAYLOAD_FIELDS)
TEXT_FIELDS: frozenset[str] = frozenset(("input", "output"))  # the checked text: every payload sends them


class Message(BaseModel):
    """One turn of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    name: str | None = None
    tool_call_id: str | None = None


class ToolSpec(BaseModel):
    """A tool the agent may call, with its JSON-schema arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict, description="JSON schema of the arguments.")


class ToolCall(BaseModel):
    """A call the agent made (or wants to make), and what came back."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    result: str | None = None
    error: str | None = None
    status: Literal["success", "error"] | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status == "error"


class Payload(BaseModel):
    """The text (and surroundings) a stage evaluates.

    ``input``/``output`` are Galileo's fields; ``context``, ``messages``, ``tools``, ``tool_calls`` and
    ``metadata`` are stageguard extensions, omitted from JSON when unset so Galileo still reads it.
    """

    model_config = ConfigDict(extra="forbid")

    input: str | None = None
    output: str | None = None
    context: list[str] | None = Field(
        default=None, description="Retrieved documents the output should rest on."
    )
    messages: list[Message] | None = None
    tools: list[ToolSpec] | None = None
    tool_calls: list[ToolCall] | None = None
    metadata: dict[str, Any] | None = None
    _sanitized: list[str] = PrivateAttr(default_factory=list)

    @field_validator("context", mode="before")
    @classmethod
    def _context_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _not_empty(self) -> Payload:
        if not (self.input or self.output or self.messages or self.tool_calls):
            raise ValueError(
                "payload is empty: set at least one of input, output, messages or tool_calls "
                "(context, tools and metadata only describe what is checked)"
            )
        self._sanitize()
        return self

    def _sanitize(self) -> None:
        """Replace what UTF-8 cannot encode in every text field, remembering which fields changed."""
        changed: list[str] = []

        def clean(owner: BaseModel, attr: str, where: str) -> None:
            value = getattr(owner, attr)
            try:
                cleaned = clean_json(value)  # strings, and dicts/lists of them; the same object if clean
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if cleaned is not value:
                owner.__dict__[attr] = cleaned  # no validate_assignment: plain attribute update
                changed.append(where)

        clean(self, "input", "input")
        clean(self, "output", "output")
        if self.context is not None:
            context = self.context
            for i, text in enumerate(context):
                cleaned = clean_text(text)
                if cleaned is not text:
                    context[i] = cleaned
                    changed.append(f"context[{i}]")
        for i, message in enumerate(self.messages or []):
            for attr in ("content", "name", "tool_call_id"):
                clean(message, attr, f"messages[{i}].{attr}")
        for i, tool in enumerate(self.tools or []):
            for attr in ("name", "description", "parameters"):
                clean(tool, attr, f"tools[{i}].{attr}")
        for i, call in enumerate(self.tool_calls or []):
            for attr in ("name", "arguments", "id", "result", "error"):
                clean(call, attr, f"tool_calls[{i}].{attr}")
        clean(self, "metadata", "metadata")
        if changed:  # pydantic re-runs this validator when a Payload is nested: keep what was found before
            self._sanitized = list(dict.fromkeys([*self._sanitized, *changed]))

    @property
    def sanitized(self) -> list[str]:
        """The fields in which code points UTF-8 cannot encode (lone surrogates) were replaced by U+FFFD."""
        return list(self._sanitized)

    @property
    def text(self) -> str:
        """The text an action applies to: the output if set, else the input (as in Galileo)."""
        return self.output or self.input or ""

    @property
    def text_field(self) -> Literal["input", "output"]:
        return "output" if self.output else "input"

    def has(self, field: str) -> bool:
        """Whether ``field`` holds something a scorer can use."""
        return bool(getattr(self, field))


# the fields of a payload of plain text, in field order, that text_payload builds directly
_PLAIN: dict[tuple[str, ...], Callable[..., Payload]] = {
    given: builder(Payload, given)
    for given in (
        ("input",),
        ("output",),
        ("input", "output"),
        ("input", "context"),
        ("output", "context"),
        ("input", "output", "context"),
    )
}
_UNSET = dict.fromkeys(Payload.model_fields)
_NOT_TEXT = ("messages", "tools", "tool_calls", "metadata")


def text_payload(fields: dict[str, Any]) -> Payload | None:
    """The :class:`Payload` ``Payload(**fields)`` builds, built directly when ``fields`` is a non-empty,
    clean ``input`` and/or ``output`` string, with or without a ``context`` list of clean strings, and
    nothing else (what guards check most), as validation would have nothing to do; else ``None``
    (validate instead)."""
    build = _PLAIN.get(tuple(fields))
    if build is None:
        return None
    values = _UNSET.copy()
    for name, value in fields.items():
        if name == "context":
            if type(value) is not list:
                return None
            texts = [_clean_str(text) for text in value]  # a copy, as validation makes
            if None in texts:
                return None
            values[name] = texts
        else:
            values[name] = text = _clean_str(value)
            if not text:
                return None
    return build(values, {"_sanitized": []})


def _clean_str(value: Any) -> str | None:
    """``value`` as validation keeps it when it is a string with nothing to clean (a ``str`` subclass,
    like LangChain's ``TextAccessor``, becomes a plain ``str``, as in validation); else ``None``."""
    if type(value) is not str:
        if not isinstance(value, str):
            return None
        value = str.__str__(value)  # the plain string, without the subclass's own __str__
    return value if _is_clean(value) else None


def holds_plain_text(payload: Payload) -> bool:
    """Whether ``payload`` holds only what :func:`text_payload` builds (clean ``input``/``output`` text, one
    of them set, and clean ``context`` strings), so validating it again would change nothing: for
    payloads that may have been changed since they were built."""
    values = payload.__dict__
    text_in, text_out, context = values.get("input"), values.get("output"), values.get("context")
    return bool(
        (text_in or text_out)
        and (text_in is None or _is_clean(text_in))
        and (text_out is None or _is_clean(text_out))
        and (context is None or (type(context) is list and all(map(_is_clean, context))))
        and not any(map(values.get, _NOT_TEXT))
    )


def _is_clean(value: Any) -> bool:
    return type(value) is str and clean_text(value) is value

"""What a guard checks: Galileo's ``input``/``output`` plus what adapters see in RAG apps and agents."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PayloadField = Literal["input", "output", "context", "messages", "tools", "tool_calls"]
PAYLOAD_FIELDS: tuple[PayloadField, ...] = ("input", "output", "context", "messages", "tools", "tool_calls")


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
        return self

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

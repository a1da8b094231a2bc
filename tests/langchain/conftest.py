"""Fixtures for the LangChain adapter tests: deterministic metrics, rulesets and fake chat models."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

try:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, BaseMessage
except ImportError:  # the core suite runs without the extra
    collect_ignore_glob = ["*"]
else:
    from pydantic import Field

    from stageguard import Payload, ScoreResult, Span

    class FakeChat(GenericFakeChatModel):
        """A fake chat model that supports tool calling and records every conversation it receives."""

        seen: list[list[BaseMessage]] = Field(default_factory=list)

        def bind_tools(self, tools: Any, **kwargs: Any) -> FakeChat:  # type: ignore[override]
            return self

        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
            self.seen.append(list(messages))
            return super()._generate(messages, *args, **kwargs)

        @property
        def calls(self) -> int:
            return len(self.seen)

    def _text(payload: Payload) -> str:
        return payload.output if payload.output is not None else (payload.input or "")

    def secret_score(payload: Payload) -> float:
        """1.0 when the checked text mentions a secret (what the OVERRIDE rulesets block)."""
        return 1.0 if "secret" in _text(payload).lower() else 0.0

    def secret_spans(payload: Payload) -> ScoreResult:
        """Every occurrence of 'secret' as a span (what the REDACT rulesets mask)."""
        text, field = _text(payload), payload.text_field
        spans, start = [], text.lower().find("secret")
        while start >= 0:
            spans.append(Span(start=start, end=start + 6, label="secret", field=field))
            start = text.lower().find("secret", start + 6)
        return ScoreResult(value=["secret"] if spans else [], spans=spans)


class Rules:
    """Rulesets the tests use (a fixture, since test modules here can't import each other)."""

    @staticmethod
    def block(message: str = "BLOCKED") -> list[dict[str, Any]]:
        """Override any text that mentions a secret."""
        return [
            {
                "rules": [{"metric": "lc_secret", "operator": "gt", "target_value": 0.5}],
                "action": {"type": "OVERRIDE", "choices": [message]},
            }
        ]

    @staticmethod
    def mask() -> list[dict[str, Any]]:
        """Redact every 'secret'."""
        return [
            {"rules": [{"metric": "lc_secret_spans", "operator": "not_empty"}], "action": {"type": "REDACT"}}
        ]

    @staticmethod
    def note() -> list[dict[str, Any]]:
        """Trigger on a secret but pass it through (report only)."""
        return [{"rules": [{"metric": "lc_secret", "operator": "gt", "target_value": 0.5}]}]

    record = [{"rules": [{"metric": "lc_record", "operator": "gt", "target_value": 0.5}]}]


@pytest.fixture
def rules() -> type[Rules]:
    return Rules


@pytest.fixture(autouse=True)
def secret_metrics(metric: Callable[..., str]) -> None:
    metric("lc_secret", secret_score, kind="score")
    metric("lc_secret_spans", secret_spans, kind="categories")


@pytest.fixture
def recorder(metric: Callable[..., str]) -> Iterator[list[Payload]]:
    """A metric ``lc_record`` (always 0) that keeps every payload it scores."""
    seen: list[Payload] = []

    def record(payload: Payload) -> float:
        seen.append(payload)
        return 0.0

    metric("lc_record", record, kind="score")
    yield seen


@pytest.fixture
def chat() -> Callable[..., Any]:
    """``chat(*answers)``: a fake chat model answering with these messages (str or AIMessage)."""

    def make(*answers: AIMessage | str) -> FakeChat:
        return FakeChat(
            messages=iter([a if isinstance(a, AIMessage) else AIMessage(content=a) for a in answers])
        )

    return make


@pytest.fixture
def builtin() -> Callable[[str], None]:
    """``builtin("pii")``: skip the test unless that built-in scorer module imports cleanly."""

    def need(name: str) -> None:
        try:
            importlib.import_module(f"stageguard.scorers.{name}")
        except Exception as exc:  # scorers are written in parallel; a broken one must not fail these tests
            pytest.skip(f"built-in scorer module {name!r} not usable: {exc}")

    return need

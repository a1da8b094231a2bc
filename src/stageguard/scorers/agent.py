"""Offline agent metrics: tool errors, tool selection, action advancement and completion.

These read the payload's ``tool_calls``, ``tools`` (JSON schemas), ``messages``, ``input`` and ``output``
and decide with transparent rules: error patterns in tool results, a small JSON-schema checker, lexical
grounding of argument values in the conversation, and word overlap between the user's goals, the tools
and the answer. They are cheap and predictable but do not understand intent; ``docs/rag_agent.md`` lists
the limits and shows how to switch a metric to the LLM judge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from ..payload import Message, Payload, ToolCall, ToolSpec
from . import _text
from ._extract import ExtractedCall, Transcript, transcript_from_text
from ._lazy_re import LazyPattern
from .base import Scorer, ScoreResult

# ------------------------------------------------------------------------------------ transcripts in text


def _tool_call(call: ExtractedCall) -> ToolCall | None:
    try:
        return ToolCall(
            name=call.name,
            arguments=call.arguments,
            id=call.id,
            result=call.result,
            error=call.error,
            status=call.status,  # checked by the extractor
        )
    except ValueError:
        return None


def with_transcript(payload: Payload) -> tuple[Payload, str]:
    """``payload`` with tool calls: its own ``tool_calls`` (preferred), else those of a serialised agent
    transcript in its ``input`` and/or ``output`` (OpenAI or LangChain message lists, or a JSON list of
    ``{name, arguments, result | error}``; see :mod:`stageguard.scorers._extract`).

    A field holding a transcript is replaced by its text: the input by the last user turn (the request),
    the output by the last assistant turn with text (the answer); the transcript's turns are added to
    ``messages``. The second value says where the tool calls came from ("" when the payload had its own).
    """
    if payload.tool_calls:
        return payload, ""
    found: list[tuple[str, Transcript]] = []
    for name in ("input", "output"):
        text = getattr(payload, name) or ""
        if text.lstrip()[:1] in ("[", "{"):
            transcript = transcript_from_text(text)
            if transcript is not None and (transcript.calls or transcript.messages):
                found.append((name, transcript))
    if not found:
        return payload, ""
    calls: list[ToolCall] = []
    seen_ids: set[str] = set()
    messages = list(payload.messages or [])
    update: dict[str, Any] = {}
    for name, transcript in found:
        for extracted in transcript.calls:
            if extracted.id and extracted.id in seen_ids:
                continue  # the output repeats the input's history
            if extracted.id:
                seen_ids.add(extracted.id)
            call = _tool_call(extracted)
            if call is not None:
                calls.append(call)
        turns = [m for m in transcript.messages if m.role in ("system", "user", "assistant", "tool")]
        messages.extend(Message(role=m.role, content=m.content, tool_call_id=m.tool_call_id) for m in turns)
        wanted = "user" if name == "input" else "assistant"
        text = next((m.content for m in reversed(turns) if m.role == wanted and m.content.strip()), None)
        update[name] = text
    update["tool_calls"] = calls or None
    update["messages"] = messages or None
    where = " and ".join(f"the {name}'s {t.format}" for name, t in found)
    note = f"tool calls: from {where}" if calls else f"tool calls: none in {where}"
    return payload.model_copy(update=update), note


def _noted(result: ScoreResult, source: str) -> ScoreResult:
    if source:
        result.explanation = f"{result.explanation or ''} ({source})".lstrip()
    return result


# --------------------------------------------------------------------------------------------- tool errors

_ERROR_PATTERNS: tuple[tuple[LazyPattern, str], ...] = (
    (LazyPattern(r"Traceback \(most recent call last\)"), "traceback"),
    (
        LazyPattern(r"^\s*[\"'{\[]*\s*(?:error|exception|fatal)\b\s*[\"']?\s*[:=\-]", re.I | re.M),
        "error message",
    ),
    (LazyPattern(r"\b(?:[A-Z]\w*\.)*[A-Z]\w*(?:Error|Exception)\b\s*[:(]"), "exception"),
    (LazyPattern(r"\b(?:unhandled|uncaught) exception\b", re.I), "exception"),
    (LazyPattern(r"\b\w+\.(?:errors?|exceptions?)\.\w+\s*:"), "exception"),
    (LazyPattern(r"\"(?:error|errors)\"\s*:(?!\s*(?:null|\[\]|\{\}|false|\"\"))", re.I), "error field"),
    (LazyPattern(r"\"status\"\s*:\s*\"(?:error|failed|failure)\"", re.I), "error status"),
    (LazyPattern(r"\bHTTP(?:/\d(?:\.\d)?)?\s*[45]\d\d\b"), "HTTP error"),
    (
        LazyPattern(
            r"\b[45]\d\d\s+(?:Internal Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out|"
            r"Bad Request|Unauthori[sz]ed|Forbidden|Not Found|Too Many Requests)\b",
            re.I,
        ),
        "HTTP error",
    ),
    (LazyPattern(r"\bstatus(?:[ _]?code)?\W{0,3}5\d\d\b", re.I), "HTTP error"),
    (LazyPattern(r"\b(?:timed out|deadline exceeded|statement timeout)\b", re.I), "time-out"),
)


def tool_results(payload: Payload) -> dict[str, str]:
    """Tool message contents by ``tool_call_id``, for calls whose result lives only in ``messages``."""
    return {m.tool_call_id: m.content for m in payload.messages or [] if m.role == "tool" and m.tool_call_id}


def result_of(call: ToolCall, by_id: dict[str, str]) -> str:
    if call.result is not None:
        return call.result
    return by_id.get(call.id or "", "")


def failure_reason(call: ToolCall, result: str) -> str | None:
    """Why the call failed, or ``None``: the error field, an error status, or an error-looking result."""
    if call.error is not None:
        return f"error: {_clip(call.error, 60)}" if call.error else "error"
    if call.status == "error":
        return f"status error: {_clip(result, 60)}" if result else "status error"
    for pattern, label in _ERROR_PATTERNS:
        if pattern.search(result):
            return f"{label} in result: {_clip(result, 60)}"
    return None


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _pending(call: ToolCall, by_id: dict[str, str]) -> bool:
    """A call without status, result or error, and no tool message answering it: it has not run."""
    return call.status is None and call.result is None and call.error is None and (call.id or "") not in by_id


class ToolErrorRateScorer(Scorer):
    """Share of the payload's tool calls that ran and failed (0 = none failed, 1 = all failed).

    Calls that have not run yet (no status, result or error, and no tool message answering them) are not
    counted, so at a tool-call check the value is the error rate of the calls so far.

    A call failed when it has an ``error``, ``status == "error"``, or its result looks like an error: a
    traceback, ``Error:``/``SomeException:``, an ``"error"`` JSON field, HTTP 4xx/5xx, a time-out.
    """

    mode = "inline"
    name = "tool_error_rate"

    def score(self, payload: Payload) -> ScoreResult:
        payload, source = with_transcript(payload)
        return _noted(self._score(payload), source)

    def _score(self, payload: Payload) -> ScoreResult:
        if not payload.tool_calls:
            return ScoreResult(value=0.0, explanation="no tool calls")
        by_id = tool_results(payload)
        # A call still waiting to run (the one a tool-call check is about) has neither failed nor succeeded.
        calls = [c for c in payload.tool_calls if not _pending(c, by_id)]
        if not calls:
            return ScoreResult(value=0.0, explanation="no tool call has run yet")
        failed = [(c, r) for c in calls if (r := failure_reason(c, result_of(c, by_id)))]
        value = len(failed) / len(calls)
        if not failed:
            return ScoreResult(value=0.0, explanation=f"all {len(calls)} tool call(s) succeeded")
        detail = "; ".join(f"{c.name} ({r})" for c, r in failed[:3])
        return ScoreResult(
            value=value, explanation=f"{len(failed)} of {len(calls)} tool call(s) failed: {detail}"
        )


# ------------------------------------------------------------------------------------------ bounds

# The tool-selection and action metrics read a bounded part of a long transcript, so that their time is
# linear and small whatever the payload (well under a second at 1 MB): the first and last tool calls, the
# last messages, the start of each text, a few values per call's arguments, and a bounded amount of
# conversation as grounds for argument values. The explanation says when a payload was cut.
MAX_TOOL_CALLS = 100  # the first 50 and the last 50
MAX_TOOLS = 200  # tool specs considered (the first ones)
MAX_MESSAGES = 200  # the last ones
MAX_TEXT = 20_000  # characters of each text: request, answer, message, tool result or error, argument value
MAX_ARGUMENT_VALUES = 16  # per call (and per nested list or object)
MAX_ARGUMENT_TEXT = (
    2_000  # characters of each argument value (a longer one is a body of text, not a specific)
)
EVIDENCE_LIMIT = 200_000  # characters of conversation kept as grounds for argument values


def _clip_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return value[:MAX_ARGUMENT_TEXT]
    if isinstance(value, dict):
        if depth > 8:
            return {}
        items = list(value.items())[:MAX_ARGUMENT_VALUES]
        return {str(k)[:200]: _clip_value(v, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple)):
        return [] if depth > 8 else [_clip_value(v, depth + 1) for v in value[:MAX_ARGUMENT_VALUES]]
    return value


def _clip_call(call: ToolCall) -> ToolCall:
    return call.model_copy(
        update={
            "arguments": _clip_value(call.arguments),
            "result": call.result[:MAX_TEXT] if call.result is not None else None,
            "error": call.error[:MAX_TEXT] if call.error is not None else None,
        }
    )


def bounded(payload: Payload) -> tuple[Payload, str]:
    """``payload`` cut to the bounds above, and a note for the explanation ("" when nothing was cut)."""
    cut: list[str] = []
    calls = payload.tool_calls
    if calls is not None and len(calls) > MAX_TOOL_CALLS:
        half = MAX_TOOL_CALLS // 2
        cut.append(f"{len(calls):,} tool calls (judged the first and last {half})")
        calls = [*calls[:half], *calls[-half:]]
    messages = payload.messages
    if messages is not None and len(messages) > MAX_MESSAGES:
        cut.append(f"{len(messages):,} messages (read the last {MAX_MESSAGES})")
        messages = messages[-MAX_MESSAGES:]
    tools = payload.tools
    if tools is not None and len(tools) > MAX_TOOLS:
        cut.append(f"{len(tools):,} tools (read the first {MAX_TOOLS})")
        tools = tools[:MAX_TOOLS]
    long_texts = [
        len(payload.input or "") > MAX_TEXT,
        len(payload.output or "") > MAX_TEXT,
        any(len(m.content) > MAX_TEXT for m in messages or []),
        any(len(c.result or "") > MAX_TEXT or len(c.error or "") > MAX_TEXT for c in calls or []),
    ]
    if any(long_texts):
        cut.append(f"texts longer than {MAX_TEXT:,} characters (read their start)")
    bounded_calls = [_clip_call(c) for c in calls] if calls is not None else None
    if bounded_calls is not None and any(
        c.arguments != b.arguments for c, b in zip(calls or [], bounded_calls, strict=True)
    ):
        cut.append(
            f"tool arguments (read {MAX_ARGUMENT_VALUES} values of at most {MAX_ARGUMENT_TEXT:,} characters)"
        )
    if not cut:
        return payload, ""
    clipped = Payload.model_construct(
        input=payload.input[:MAX_TEXT] if payload.input is not None else None,
        output=payload.output[:MAX_TEXT] if payload.output is not None else None,
        context=payload.context,
        messages=[m.model_copy(update={"content": m.content[:MAX_TEXT]}) for m in messages]
        if messages is not None
        else None,
        tools=tools,
        tool_calls=bounded_calls,
        metadata=payload.metadata,
    )
    return clipped, f" [truncated: {'; '.join(cut)}]"


# ------------------------------------------------------------------------------------------ conversation

_RELATIVE_DATES = frozenset(
    _text.stem(w)
    for w in _text.word_set(
        "today tonight tomorrow yesterday now week weekend month year morning afternoon evening night noon "
        "midnight monday tuesday wednesday thursday friday saturday sunday"
    )
)
_GREETINGS = _text.word_set("hi hello hey dear thanks thank regards best cheers sincerely team")
_TIME_RE = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)", re.I)
# Starts only where the local part starts (the look-behind): without it a long run of word characters and
# no '@' is rescanned from every position (quadratic).
_EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL_RE = re.compile(r"https?://\S+")
_DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2}))?")
_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::\d{2})?$")


@dataclass
class Evidence:
    """What the conversation has said so far: the text an argument value must come from."""

    tokens: set[str] = field(default_factory=set)
    words: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)
    _parts: list[str] = field(default_factory=list)
    _length: int = 0
    _phrases: list[str] = field(default_factory=list)
    _joined: tuple[int, str] = (0, "  ")
    _text: tuple[int, str] = (0, "")

    @property
    def text(self) -> str:
        """Everything said so far, lower case (joined on demand, once per addition)."""
        if self._text[0] != len(self._parts):
            self._text = (len(self._parts), " " + " ".join(self._parts))
        return self._text[1]

    @property
    def phrase(self) -> str:
        """The evidence as a phrase key, for verbatim look-ups (each addition is keyed once, when added)."""
        if self._joined[0] != len(self._phrases):
            self._joined = (len(self._phrases), f" {' '.join(self._phrases)} ")
        return self._joined[1]

    def add(self, text: str) -> None:
        text = text[: max(0, EVIDENCE_LIMIT - self._length)]  # bounded: see EVIDENCE_LIMIT
        if not text:
            return
        self._length += len(text) + 1
        self._parts.append(text.lower())
        key = _text.phrase_key(text).strip()
        if key:
            self._phrases.append(key)
        words = _text.words(text)
        self.words.update(w for w in words if not _text.is_number(w))
        self.tokens.update(_text.content_tokens(text))
        self.numbers.update(w for w in words if _text.is_number(w))
        self.numbers.update(_text.MONTHS[w] for w in words if w in _text.MONTHS)
        for match in _TIME_RE.finditer(text):
            hour = int(match.group(1))
            if match.group(3).lower().startswith("p") and hour < 12:
                self.numbers.add(str(hour + 12))
        if "noon" in words:
            self.numbers.add("12")

    def has_word(self, token: str) -> bool:
        """A stem present, or (for codes like EUR) a word starting with it."""
        if token in self.tokens or token in self.words:
            return True
        return len(token) >= 3 and token.isalpha() and any(w.startswith(token) for w in self.words)

    @property
    def has_relative_date(self) -> bool:
        return bool(self.tokens & _RELATIVE_DATES)


def user_texts(payload: Payload, *, system: bool = True) -> list[str]:
    """What the user (and, with ``system``, the system prompt) said: the grounds for argument values.
    What the user asked for, without the system prompt, decides which tools fit."""
    roles = ("user", "system") if system else ("user",)
    texts = [m.content for m in payload.messages or [] if m.role in roles and m.content]
    if payload.input and payload.input not in texts:
        texts.append(payload.input)
    return texts


def final_answer(payload: Payload) -> str:
    """The agent's answer: ``output``, else the last assistant message with text."""
    if payload.output:
        return payload.output
    for message in reversed(payload.messages or []):
        if message.role == "assistant" and message.content.strip():
            return message.content
    return ""


def request_text(payload: Payload) -> str:
    """The user's current request: ``input``, else the last user message."""
    if payload.input:
        return payload.input
    for message in reversed(payload.messages or []):
        if message.role == "user" and message.content.strip():
            return message.content
    return ""


# ------------------------------------------------------------------------------------ tool fit to request

_TOOL_FILLER = frozenset(
    _text.stem(w)
    for w in _text.word_set(
        "get set return returns given tool function call result results data value specified current "
        "latest list fetch retrieve look up lookup query run perform"
    )
)
_DESTRUCTIVE_VERBS = frozenset(
    _text.stem(w)
    for w in _text.word_set(
        "cancel delete remove refund transfer pay purchase buy reset revoke terminate close unsubscribe "
        "wipe drop"
    )
)


def _name_words(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])|[_\-.]", " ", name)


def tool_vocabulary(spec: ToolSpec) -> frozenset[str]:
    """Content stems of a tool's name and description (no numbers, no generic tool words)."""
    return _vocabulary(spec.name, spec.description)


@lru_cache(maxsize=1024)
def _vocabulary(name: str, description: str) -> frozenset[str]:
    tokens = _text.content_tokens(f"{_name_words(name)} {description}")
    return frozenset(t for t in tokens if t not in _TOOL_FILLER and not _text.is_number(t))


def unrequested_action(name: str, request: set[str]) -> str | None:
    """A destructive verb in the tool's name ("cancel_order") that the user never used."""
    verbs = [t for t in _text.content_tokens(_name_words(name)) if t in _DESTRUCTIVE_VERBS]
    missing = [v for v in verbs if v not in request]
    return missing[0] if missing else None


# ------------------------------------------------------------------------------------- schema validation

_TYPE_CHECKS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
_FORMATS: dict[str, LazyPattern] = {
    "email": LazyPattern(r"^[\w.+-]+@[\w-]+(?:\.[\w-]+)+$"),
    "date": LazyPattern(r"^\d{4}-\d{2}-\d{2}$"),
    "date-time": LazyPattern(
        r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?$"
    ),
    "time": LazyPattern(r"^\d{2}:\d{2}(?::\d{2})?"),
    "uri": LazyPattern(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$"),
}


def schema_problems(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Violations of the common JSON-schema keywords (type, enum, format, pattern, ranges, nesting)."""
    if not isinstance(schema, dict):
        return []
    types = schema.get("type")
    allowed = [types] if isinstance(types, str) else list(types or [])
    if allowed and not any(_TYPE_CHECKS.get(t, lambda v: True)(value) for t in allowed):
        return [f"{path}: expected {'/'.join(allowed)}, got {type(value).__name__}"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not one of {schema['enum']}")
    if isinstance(value, str):
        problems += _string_problems(value, schema, path)
    if isinstance(value, int | float) and not isinstance(value, bool):
        problems += _number_problems(value, schema, path)
    if isinstance(value, dict):
        problems += object_problems(value, schema, path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += schema_problems(item, schema["items"], f"{path}[{i}]")
    return problems


def _string_problems(value: str, schema: dict[str, Any], path: str) -> list[str]:
    problems = []
    fmt = _FORMATS.get(str(schema.get("format", "")))
    if fmt is not None and not fmt.match(value):
        problems.append(f"{path}: {value!r} is not a valid {schema['format']}")
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            if not re.search(pattern, value):
                problems.append(f"{path}: {value!r} does not match {pattern}")
        except re.error:
            pass
    if len(value) < int(schema.get("minLength", 0)):
        problems.append(f"{path}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > int(schema["maxLength"]):
        problems.append(f"{path}: longer than {schema['maxLength']}")
    return problems


def _number_problems(value: float, schema: dict[str, Any], path: str) -> list[str]:
    problems = []
    if "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{path}: {value} below minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        problems.append(f"{path}: {value} above maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        problems.append(f"{path}: {value} not above {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        problems.append(f"{path}: {value} not below {schema['exclusiveMaximum']}")
    return problems


def object_problems(value: dict[str, Any], schema: dict[str, Any], path: str = "") -> list[str]:
    """Missing required properties, unknown properties, and the properties' own problems."""
    properties: dict[str, Any] = schema.get("properties") or {}
    prefix = f"{path}." if path else ""
    problems = [
        f"missing required argument {prefix}{name}"
        for name in schema.get("required", [])
        if name not in value
    ]
    for name, item in value.items():
        if name in properties:
            problems += schema_problems(item, properties[name], f"{prefix}{name}")
        elif properties and schema.get("additionalProperties", True) is not True:
            problems.append(f"unexpected argument {prefix}{name}")
        elif properties:
            problems.append(f"unknown argument {prefix}{name}")
    return problems


# ------------------------------------------------------------------------------------ argument grounding

_AGENT_CHOSEN_ARGS = _text.word_set(
    "limit max_results top_k k n page page_size per_page offset count num_results size timeout "
    "max_tokens temperature max_items"
)


def ungrounded_values(arguments: dict[str, Any], schema: dict[str, Any], evidence: Evidence) -> list[str]:
    """Argument values with specifics (numbers, ids, e-mails, dates, names) the conversation never gave."""
    properties: dict[str, Any] = schema.get("properties") or {}
    out: list[str] = []
    for name, value in arguments.items():
        prop = properties.get(name) or {}
        if name.lower() in _AGENT_CHOSEN_ARGS or "enum" in prop or value == prop.get("default"):
            continue
        for leaf in _leaves(value):
            missing = _ungrounded_part(leaf, evidence)
            if missing is not None:
                out.append(f"{name}={_clip(repr(leaf), 40)} ({missing} not in the conversation)")
                break
    return out


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _ungrounded_part(value: Any, evidence: Evidence) -> str | None:
    """The first specific part of ``value`` missing from the evidence, or ``None`` if it is grounded."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if isinstance(value, int) and abs(value) <= 12:
            return None  # small counts ("2 people", "top 5") are often implied
        number = _text.normalize_number(repr(float(value)) if isinstance(value, float) else str(value))
        return None if number in evidence.numbers else number
    text = str(value).strip()
    if not text or _text.phrase_key(text) in evidence.phrase:
        return None
    date = _DATE_RE.match(text) or _CLOCK_RE.match(text)
    if date:
        return _ungrounded_date(date, evidence)
    emails = _EMAIL_RE.findall(text) if "@" in text else []
    for found in [*emails, *_URL_RE.findall(text)]:
        if str(found).lower() not in evidence.text:
            return str(found)
    return _ungrounded_specific_words(text, evidence)


def _ungrounded_date(match: re.Match[str], evidence: Evidence) -> str | None:
    """A date needs its day and month (or a relative date: "tomorrow", "Friday") in the conversation."""
    groups = [g for g in match.groups() if g is not None]
    if match.re is _CLOCK_RE:
        hour = _text.normalize_number(groups[0])
        return None if hour in evidence.numbers or evidence.has_relative_date else match.group(0)
    if evidence.has_relative_date:
        return None
    month, day = _text.normalize_number(groups[1]), _text.normalize_number(groups[2])
    if month in evidence.numbers and day in evidence.numbers:
        return None
    return match.group(0)


def _ungrounded_specific_words(text: str, evidence: Evidence) -> str | None:
    """Numbers, ids and capitalised names must come from the conversation; plain words may be the
    agent's own phrasing (a subject line, a search query), and words in code (SQL, expressions) too."""
    if " " not in text and _IDENTIFIER_RE.search(text):
        return _ungrounded_identifier(text, evidence)
    text = _text.split_units(text)
    several = len(text.split()) > 1
    long_text = len(text.split()) >= 4
    code = bool(_CODE_RE.search(text)) and len(text.split()) >= 3
    for match in _text.word_matches(text):
        raw = match.group(0)
        word = _text.normalize_word(raw)
        if any(ch.isdigit() for ch in word):
            if long_text and word.isdigit() and int(word) <= 12:
                continue  # "7 days", "2 guests" inside a sentence the agent wrote
            if word not in evidence.numbers and word not in evidence.words:
                return raw
        elif raw[:1].isupper() and not code and word not in _GREETINGS and word not in _text.STOPWORDS:
            if several and _starts_sentence(text, match.start()):
                continue  # sentence case, not a name
            if not evidence.has_word(_text.stem(word)):
                return raw
    return None


_CODE_RE = re.compile(r"[(){};=<>*]")
_IDENTIFIER_RE = re.compile(r"^[#@]|[_/\\-]|[A-Za-z]\d|\d[A-Za-z]")


def _ungrounded_identifier(text: str, evidence: Evidence) -> str | None:
    """A one-token id ("#eng-deploys", "acc_7731"): every part must have been said."""
    parts = [_text.normalize_word(p) for p in _text.raw_words(text)]
    known = evidence.words | evidence.numbers
    return None if all(p in known for p in parts) else text


def _starts_sentence(text: str, pos: int) -> bool:
    before = text[max(0, pos - 64) : pos].rstrip(" \"'\u201c\u2018(")  # a window: linear over matches
    if not before:
        return pos <= 64 or not text[:pos].strip(" \"'\u201c\u2018(")
    return before[-1] in ".!?:\n"


# ------------------------------------------------------------------------------------ tool selection

TOOL_PENALTIES: dict[str, float] = {
    "missing": 0.5,
    "invalid": 0.4,
    "unexpected": 0.25,
    "ungrounded": 0.5,
    "poor_fit": 0.5,
    "unrequested": 0.6,
    "repeated": 0.2,
}


@dataclass
class CallCheck:
    """The verdict on one tool call."""

    call: ToolCall
    score: float
    problems: list[str] = field(default_factory=list)


def check_call(
    call: ToolCall,
    specs: dict[str, ToolSpec],
    evidence: Evidence,
    request: set[str],
    seen: set[str],
) -> CallCheck:
    """Score one call: 1 minus the penalties for each problem found (0 for a tool that does not exist)."""
    if specs and call.name not in specs:
        return CallCheck(call, 0.0, [f"{call.name}: not one of the available tools"])
    spec = specs.get(call.name)
    problems: list[tuple[str, str]] = []
    if spec is not None:
        for problem in object_problems(call.arguments, spec.parameters):
            problems.append((_PROBLEM_KINDS.get(problem.split(" ", 1)[0], "invalid"), problem))
        problems += [
            ("ungrounded", f"invented value {p}")
            for p in ungrounded_values(call.arguments, spec.parameters, evidence)
        ]
        problems += _fit_problems(spec, specs, request)
    else:
        problems += [
            ("ungrounded", f"invented value {p}") for p in ungrounded_values(call.arguments, {}, evidence)
        ]
    verb = unrequested_action(call.name, request)
    if verb is not None:
        problems.append(("unrequested", f"performs '{verb}', which the user did not ask for"))
    if call_key(call) in seen:
        problems.append(("repeated", "same call repeated"))
    score = max(0.0, 1.0 - sum(TOOL_PENALTIES[kind] for kind, _ in problems))
    return CallCheck(call, score, [f"{call.name}: {p}" for _, p in problems])


_PROBLEM_KINDS = {"missing": "missing", "unexpected": "unexpected", "unknown": "unexpected"}


def call_key(call: ToolCall) -> str:
    """Identity of a call for spotting repeats: tool name and arguments."""
    return f"{call.name}:{json.dumps(call.arguments, sort_keys=True, default=str)}"


def _fit_problems(spec: ToolSpec, specs: dict[str, ToolSpec], request: set[str]) -> list[tuple[str, str]]:
    """A tool sharing no word with the request while another tool does is a poor pick."""
    if tool_vocabulary(spec) & request:
        return []
    better = [name for name, other in specs.items() if name != spec.name and tool_vocabulary(other) & request]
    if not better:
        return []
    return [("poor_fit", f"does not match the request; {better[0]} fits better")]


class ToolSelectionQualityScorer(Scorer):
    """Did the agent pick fitting tools and pass valid, grounded arguments? (1 = every call is fine.)

    Each call starts at 1 and loses points for: calling a tool that is not offered (score 0), a
    missing required argument, a value violating the schema (type, enum, format, pattern, range), an
    unknown argument, a value with specifics (number, id, e-mail, date, name) that neither the user nor an
    earlier tool result gave, a tool that shares no word with the request while another tool does, a
    destructive action ("cancel", "delete", "refund") the user did not ask for, and an identical repeat.
    Calls are combined with a soft minimum: one bad call makes the score low.
    """

    mode = "inline"
    name = "tool_selection_quality"

    def score(self, payload: Payload) -> ScoreResult:
        payload, source = with_transcript(payload)
        return _noted(self._score(payload), source)

    def _score(self, payload: Payload) -> ScoreResult:
        calls = payload.tool_calls or []
        if not calls:
            return ScoreResult(value=1.0, explanation="no tool calls to judge")
        payload, note = bounded(payload)
        calls = payload.tool_calls or []
        specs = {t.name: t for t in payload.tools or []}
        by_id = tool_results(payload)
        evidence = Evidence()
        for text in user_texts(payload):
            evidence.add(text)
        request = {t for text in user_texts(payload, system=False) for t in _text.content_tokens(text)}
        checks: list[CallCheck] = []
        seen: set[str] = set()  # successful calls: repeating one is waste, retrying a failed one is not
        for call in calls:
            checks.append(check_call(call, specs, evidence, request, seen))
            result = result_of(call, by_id)
            if failure_reason(call, result) is None:
                seen.add(call_key(call))
            evidence.add(result)
        value = _text.soft_min([c.score for c in checks])
        problems = [p for c in checks for p in c.problems]
        if not problems:
            explanation = f"all {len(checks)} tool call(s) fit the request with valid, grounded arguments"
        else:
            explanation = "; ".join(problems[:4]) + (
                f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
            )
        return ScoreResult(value=round(value, 4), explanation=explanation + note)


# ------------------------------------------------------------------------------------- goals and actions

_REQUEST_FILLER = frozenset(
    _text.stem(w)
    for w in _text.word_set(
        "please want need like help can could would will know tell let kindly also thanks thank hi hello hey "
        "great ok okay sure"
    )
)
_GOAL_SPLIT_RE = re.compile(
    r"\s*;\s*|,?\s+and then\s+|,?\s+then\s+|,\s+and\s+|\s+and\s+(?=also\b)|,?\s+also\s+", re.I
)
_AND_RE = re.compile(r"\s+and\s+", re.I)
_REQUEST_CUE_RE = re.compile(
    r"\b(?:please|can you|could you|would you|will you|i want|i'd like|i would like|i need|help me|"
    r"let me know)\b",
    re.I,
)
_STATEMENT_START = _text.word_set(
    "i i'm i've my we we're our it it's its this that these those the there he she they his her their "
    "your you"
)
_INABILITY_RE = re.compile(
    r"\b(?:can't|cannot|can not|couldn't|could not|unable|not able|wasn't able|was not able|weren't able|"
    r"failed|failure|an error|went wrong|try again later|is (?:currently )?down|don't have access|"
    r"do not have access|not possible|not permitted|not allowed|won't be able|am not able)\b",
    re.I,
)
_PENDING_RE = re.compile(r"\b(?:i'll|i will|i'm going to|i am going to|let me|shortly|one moment)\b", re.I)


@dataclass
class Goal:
    """One thing the user asked for."""

    text: str
    tokens: frozenset[str]
    specifics: frozenset[str]  # names and numbers the answer should mention


def split_goals(request: str) -> list[Goal]:
    """The user's request as separate goals: its questions and instructions, split at "and then",
    "also", ";" and ", and"; statements ("My username is jdoe42.") are context, not goals."""
    pieces: list[str] = []
    for sentence in _text.split_sentences(request):
        if not _is_goal_sentence(sentence):
            continue
        for part in _GOAL_SPLIT_RE.split(sentence):
            pieces.extend(_split_on_and(part))
    goals = [g for g in (_goal(p) for p in pieces) if g.tokens]
    if not goals and request.strip():
        goals = [_goal(request)]
    return [g for g in goals if g.tokens]


def _is_goal_sentence(sentence: str) -> bool:
    stripped = sentence.strip()
    if stripped.endswith("?") or _REQUEST_CUE_RE.search(stripped):
        return True
    first = stripped.split(" ", 1)[0].lower().strip(",")
    return first not in _STATEMENT_START


def _split_on_and(part: str) -> list[str]:
    """Split at " and " only when both sides hold a task of their own (two or more content words)."""
    pieces = _AND_RE.split(part)
    merged: list[str] = []
    for piece in pieces:
        if merged and (len(_goal_tokens(piece)) < 2 or len(_goal_tokens(merged[-1])) < 2):
            merged[-1] = f"{merged[-1]} and {piece}"
        else:
            merged.append(piece)
    return merged


def _goal_tokens(text: str) -> frozenset[str]:
    return frozenset(t for t in _text.content_tokens(text) if t not in _REQUEST_FILLER)


def _specifics(text: str) -> set[str]:
    """Names and numbers: the tokens a request and the call or answer serving it must share."""
    specifics = {t for span in _text.entity_spans(text) for t in _text.content_tokens(span)}
    return specifics | {t for t in _text.content_tokens(text) if _text.is_number(t)}


_LEADING_LINK_RE = re.compile(r"^\s*(?:and then|also|and|then|plus)\b[,\s]*", re.I)


def _goal(text: str) -> Goal:
    text = _LEADING_LINK_RE.sub("", text).strip()
    tokens = _goal_tokens(text)
    return Goal(text, tokens, frozenset(_specifics(text) & tokens))


@dataclass
class AnswerSentences:
    """The agent's answer, sentence by sentence, sorted by what each sentence does."""

    affirmative: list[frozenset[str]] = field(default_factory=list)
    failures: list[frozenset[str]] = field(default_factory=list)
    pending: list[frozenset[str]] = field(default_factory=list)
    questions: list[frozenset[str]] = field(default_factory=list)

    @classmethod
    def of(cls, answer: str) -> AnswerSentences:
        parts = cls()
        for sentence in _text.split_sentences(answer):
            tokens = frozenset(_text.content_tokens(sentence))
            if _INABILITY_RE.search(sentence.replace("\u2019", "'")):
                parts.failures.append(tokens)
            elif _PENDING_RE.search(sentence.replace("\u2019", "'")):
                parts.pending.append(tokens)
            elif sentence.rstrip().endswith("?"):
                parts.questions.append(tokens)
            else:
                parts.affirmative.append(tokens)
        return parts

    @cached_property
    def affirmative_words(self) -> frozenset[str]:
        """The words of all affirmative sentences (computed once: every goal asks)."""
        return frozenset().union(*self.affirmative)

    @property
    def empty(self) -> bool:
        return not (self.affirmative or self.failures or self.pending or self.questions)


@dataclass
class CallOutcome:
    """A tool call as seen by the goal tracker."""

    name: str
    vocabulary: frozenset[str]  # name and description words
    arguments: frozenset[str]
    specifics: frozenset[str]  # names and numbers among the arguments
    result: frozenset[str]
    failed: bool
    invented: bool = False  # an argument value the conversation never gave
    recovered: bool = False  # a later call of the same tool succeeded
    unrequested: bool = False


def call_outcomes(payload: Payload, request: set[str]) -> list[CallOutcome]:
    specs = {t.name: t for t in payload.tools or []}
    by_id = tool_results(payload)
    evidence = Evidence()
    for text in user_texts(payload):
        evidence.add(text)
    outcomes: list[CallOutcome] = []
    for call in payload.tool_calls or []:
        result = result_of(call, by_id)
        spec = specs.get(call.name)
        invented = bool(ungrounded_values(call.arguments, spec.parameters if spec else {}, evidence))
        evidence.add(result)
        outcomes.append(
            CallOutcome(
                name=call.name,
                vocabulary=_call_vocabulary(call, spec),
                arguments=frozenset(t for v in _leaves(call.arguments) for t in _text.content_tokens(str(v))),
                specifics=frozenset(t for v in _leaves(call.arguments) for t in _specifics(str(v))),
                result=frozenset(_text.content_tokens(result)),
                failed=failure_reason(call, result) is not None,
                invented=invented,
                unrequested=unrequested_action(call.name, request) is not None,
            )
        )
    for i, outcome in enumerate(outcomes):
        if outcome.failed:
            outcome.recovered = any(o.name == outcome.name and not o.failed for o in outcomes[i + 1 :])
    return outcomes


def _call_vocabulary(call: ToolCall, spec: ToolSpec | None) -> frozenset[str]:
    if spec is not None:
        return tool_vocabulary(spec)
    return frozenset(_text.content_tokens(_name_words(call.name)))  # a tool the payload does not list


@dataclass
class GoalStatus:
    """Where one goal stands, and why."""

    goal: Goal
    done: float  # 1 accomplished, 0.5 half-way, 0 not
    progress: float  # 1 accomplished, 0.5 advanced, 0 nothing
    note: str


def assess_goal(
    goal: Goal, calls: list[CallOutcome], answer: AnswerSentences, tools: list[ToolSpec]
) -> GoalStatus:
    """Decide one goal from the calls that concern it and the sentences of the answer that mention it."""
    fitting_tools = [t for t in tools if tool_vocabulary(t) & goal.tokens]
    related = [c for c in calls if goal.tokens & (c.vocabulary | c.arguments)]
    if fitting_tools:  # a goal the tools are for needs a call of a fitting tool, not just any call
        related = [c for c in related if c.vocabulary & goal.tokens]
    related = [c for c in related if not c.unrequested]
    off_target = [c for c in related if _off_target(goal, c)]
    related = [c for c in related if c not in off_target]
    succeeded = [c for c in related if not c.failed]
    broken = [c for c in related if c.failed and not c.recovered]
    mentioned = _answer_mentions(goal, answer.affirmative_words, succeeded)
    refused = any(goal.tokens & s for s in answer.failures) or bool(
        answer.failures and not answer.affirmative
    )
    asked = bool(answer.questions) and not answer.affirmative
    if broken or refused:
        note = f"{broken[0].name} failed" if broken else "the answer says it could not be done"
        if broken and mentioned:
            note = "answer claims success although the tool failed"
        elif asked:
            note += "; the agent asks the user for more information"
        return GoalStatus(goal, 0.0, 0.5 if asked else 0.0, note)
    if asked:
        return GoalStatus(goal, 0.0, 0.5, "the agent asks the user for more information")
    if fitting_tools and not succeeded:
        if off_target:
            values = ", ".join(sorted(off_target[0].specifics)[:3])
            return GoalStatus(goal, 0.0, 0.0, f"{off_target[0].name} was called for other values ({values})")
        pending = bool(answer.pending) and not answer.affirmative
        return GoalStatus(
            goal, 0.0, 0.0, "only promised, not done" if pending else "no fitting tool was called"
        )
    if succeeded and (mentioned or answer.empty):
        return GoalStatus(goal, 1.0, 1.0, f"done with {succeeded[-1].name}")
    if succeeded:
        return GoalStatus(goal, 0.5, 0.5, f"{succeeded[-1].name} succeeded but the answer does not report it")
    if mentioned:
        return GoalStatus(goal, 1.0, 1.0, "answered")
    return GoalStatus(goal, 0.0, 0.0, "not addressed")


def _off_target(goal: Goal, call: CallOutcome) -> bool:
    """A call for made-up names or numbers that share nothing with the goal's (weather for Lisbon when the
    user asked about Porto); values taken from the conversation or earlier results are fine (chains)."""
    return bool(call.invented and goal.specifics and call.specifics and not goal.specifics & call.specifics)


def _answer_mentions(goal: Goal, said: frozenset[str], succeeded: list[CallOutcome]) -> bool:
    """Whether an affirmative sentence speaks about the goal (its names and numbers, if it has any) or
    relays what a successful call for it returned."""
    if goal.specifics:
        if len(goal.specifics & said) * 2 >= len(goal.specifics):
            return True
    elif goal.tokens & said:
        return True
    return any(len(c.result & said) >= 2 for c in succeeded)


def assess_goals(payload: Payload) -> list[GoalStatus]:
    request = request_text(payload)
    goals = split_goals(request)
    asked = {t for text in user_texts(payload, system=False) for t in _text.content_tokens(text)}
    calls = call_outcomes(payload, asked)
    answer = AnswerSentences.of(final_answer(payload))
    return [assess_goal(g, calls, answer, payload.tools or []) for g in goals]


def _goal_summary(statuses: list[GoalStatus]) -> str:
    parts = [f"{_clip(s.goal.text, 40)!r}: {s.note}" for s in statuses[:4]]
    return "; ".join(parts)


class ActionAdvancementScorer(Scorer):
    """Is the agent making progress toward at least one of the user's goals? (1 = a goal is reached.)

    The request is split into goals; a goal is reached when a successful call of a fitting tool (or, when
    no tool fits, the answer itself) addresses it; it is advanced (0.5) when the agent asks for missing
    information or a call succeeded that the answer does not report yet. Failed calls that are not retried
    successfully, refusals and bare promises count as no progress. The value is the best goal's progress.
    """

    mode = "inline"
    name = "action_advancement"

    def score(self, payload: Payload) -> ScoreResult:
        payload, source = with_transcript(payload)
        return _noted(self._score(payload), source)

    def _score(self, payload: Payload) -> ScoreResult:
        payload, note = bounded(payload)
        statuses = assess_goals(payload)
        if not statuses:
            return ScoreResult(value=0.0, explanation="no user request to act on" + note)
        value = max(s.progress for s in statuses)
        return ScoreResult(value=value, explanation=_goal_summary(statuses) + note)


class ActionCompletionScorer(Scorer):
    """Did the agent accomplish all of the user's goals? The mean over goals of 1 (done), 0.5 (half-way)
    or 0 (not done), with the same goal rules as :class:`ActionAdvancementScorer`."""

    mode = "inline"
    name = "action_completion"

    def score(self, payload: Payload) -> ScoreResult:
        payload, source = with_transcript(payload)
        return _noted(self._score(payload), source)

    def _score(self, payload: Payload) -> ScoreResult:
        payload, note = bounded(payload)
        statuses = assess_goals(payload)
        if not statuses:
            return ScoreResult(value=0.0, explanation="no user request to act on" + note)
        value = sum(s.done for s in statuses) / len(statuses)
        done = sum(1 for s in statuses if s.done == 1.0)
        return ScoreResult(
            value=round(value, 4),
            explanation=f"{done} of {len(statuses)} goal(s) done: {_goal_summary(statuses)}{note}",
        )

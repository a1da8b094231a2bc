"""Context and tool calls read from a payload's ``input``/``output`` text, for payloads without ``context``
or ``tool_calls`` (Galileo's payload has only ``input`` and ``output``).

Pure functions over strings and JSON values: no framework imports, no exceptions on any input (garbage
gives the whole input as the context, or no transcript), linear time, and at most ``limit`` characters read.

* :func:`context_from_input` finds the retrieved documents in a prompt: a JSON list of documents (strings
  or objects with ``text``/``content``/``page_content``), XML-like tags (``<context>``, ``<documents>``,
  ``<document>``, ``<doc id=...>``), sections ("Context:", "Documents:", "Sources:", "Background:",
  "## Context", LlamaIndex's "Context information is below."), numbered passages ("[1] ...",
  "Document 1: ..."); else the whole input. The question is what the input says outside the documents: a
  "Question:"/"Query:" section, else the last line ending with "?", else the rest of the text.
* :func:`transcript_from_text` reads tool calls from a serialised agent transcript: an OpenAI
  chat-completions message list (assistant ``tool_calls`` with ``function.name``/``arguments``, ``tool``
  messages with ``tool_call_id``/``content``), LangChain message dicts (``type``: ``ai``/``tool``/``human``,
  ``model_dump``, ``messages_to_dict`` or ``dumpd`` shape) or a plain list of
  ``{name, arguments, result | error}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ._lazy_re import LazyPattern

EXTRACT_LIMIT = 400_000
"""Characters of the input read when looking for the context (its start); the scorers clip further."""
TRANSCRIPT_LIMIT = 2_000_000
"""Longest text parsed as a JSON transcript (JSON cannot be read in part; parsing is linear)."""
MAX_ITEMS = 2_000
"""JSON list items (documents, messages, calls) read; the rest is ignored."""
_MAX_LINES = 50_000

_SURROGATES = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """Lone surrogates (JSON ``\\ud800`` escapes decode to them) replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def _as_text(value: Any) -> str:
    """A JSON value as text: strings as they are, content-part lists joined, other values as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, list):  # OpenAI content parts: [{"type": "text", "text": "..."}]
        parts = [
            _as_text(p.get("text", "")) if isinstance(p, dict) else _as_text(p) for p in value[:MAX_ITEMS]
        ]
        return "\n".join(p for p in parts if p)
    try:
        return _clean(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError, RecursionError):
        return ""


def _load_json(text: str, limit: int) -> Any:
    """``text`` parsed as JSON when it is a JSON array or object (at most ``limit`` characters), else None."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{" or len(stripped) > limit:
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return None


# --------------------------------------------------------------------------------------------- context


@dataclass(frozen=True)
class ExtractedContext:
    """Documents found in an input, the question left around them, and where they were found."""

    documents: tuple[str, ...]
    question: str
    source: str  # e.g. "the input's <context> section"
    truncated: bool = False  # the input was longer than the read limit


_DOC_KEYS = ("page_content", "text", "content", "document", "passage", "snippet", "body", "chunk")
_DOCS_KEYS = ("context", "contexts", "documents", "docs", "sources", "passages", "retrieved", "chunks")
_QUESTION_KEYS = ("question", "query", "input", "prompt", "user_question")


def _document_text(item: Any) -> str:
    if isinstance(item, str):
        return _clean(item)
    if isinstance(item, dict):
        for key in _DOC_KEYS:
            value = item.get(key)
            if isinstance(value, str):
                return _clean(value)
    return ""


def documents_from_json(value: Any) -> list[str] | None:
    """A JSON list of documents (strings or objects with ``text``/``content``/``page_content``), or None."""
    if not isinstance(value, list) or not value:
        return None
    items = value[:MAX_ITEMS]
    if not all(isinstance(i, str) or (isinstance(i, dict) and any(k in i for k in _DOC_KEYS)) for i in items):
        return None
    if any(isinstance(i, dict) and _normalise_message(i) is not None for i in items):
        return None  # a message list, not documents
    docs = [d for d in map(_document_text, items) if d.strip()]
    return docs or None


_MESSAGE_ROLES = {"system": "system", "developer": "system", "user": "user", "human": "user"}


def _prompt_messages(value: Any) -> list[tuple[str, str]] | None:
    """(role, text) of the system and user turns of a chat message list (OpenAI or LangChain), or None."""
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if not isinstance(value, list) or not value:
        return None
    out: list[tuple[str, str]] = []
    for item in value[:MAX_ITEMS]:
        message = _normalise_message(item)
        if message is None:
            return None
        role = _MESSAGE_ROLES.get(message.role)
        if role and message.content.strip():
            out.append((role, message.content))
    return out or None


def context_from_input(text: str, *, limit: int = EXTRACT_LIMIT) -> ExtractedContext:
    """The retrieved documents in a prompt, the question around them and where they were found.

    Never raises; an input with no recognised layout is the context as a whole (less its last question
    line when other text remains). Reads at most ``limit`` characters of ``text`` (its start).
    """
    truncated = len(text) > limit
    body = _clean(text[:limit])
    data = _load_json(body, limit) if not truncated else None
    if data is not None:
        docs = documents_from_json(data)
        if docs:
            return ExtractedContext(tuple(docs), "", "the input's JSON list of documents", truncated)
        if isinstance(data, dict):
            found = _context_from_json_object(data)
            if found is not None:
                return ExtractedContext(found[0], found[1], found[2], truncated)
        messages = _prompt_messages(data)
        if messages:
            joined = "\n\n".join(content for _, content in messages)
            inner = _context_from_text(joined)
            last_user = next((c for r, c in reversed(messages) if r == "user"), "")
            question = inner.question or last_user.strip()
            source = inner.source.replace("the input's", "the input's chat messages'", 1)
            return ExtractedContext(inner.documents, question, source, truncated)
    found_text = _context_from_text(body)
    return ExtractedContext(found_text.documents, found_text.question, found_text.source, truncated)


def _context_from_json_object(data: dict[str, Any]) -> tuple[tuple[str, ...], str, str] | None:
    for key in _DOCS_KEYS:
        if key not in data:
            continue
        value = data[key]
        docs = [_clean(value)] if isinstance(value, str) and value.strip() else documents_from_json(value)
        if docs:
            question = next((_clean(data[k]) for k in _QUESTION_KEYS if isinstance(data.get(k), str)), "")
            return tuple(docs), question, f"the input's JSON {key!r} field"
    return None


def _context_from_text(text: str) -> ExtractedContext:
    for finder in (_from_tags, _from_sections, _from_numbered):
        found = finder(text)
        if found is not None:
            return found
    return _whole(text)


_QUESTION_LINE_RE = re.compile(r"\?[\s\"'\u201d)*]*$")


def _last_question_line(lines: list[str]) -> int | None:
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        if line and len(line) <= 2_000 and _QUESTION_LINE_RE.search(line[-20:]):
            return i
    return None


def _whole(text: str) -> ExtractedContext:
    lines = text.splitlines()[:_MAX_LINES]
    q = _last_question_line(lines)
    if q is not None:
        question = lines[q].strip()
        question = _strip_label(question)
        rest = "\n".join(lines[:q] + lines[q + 1 :]).strip()
        if rest:
            return ExtractedContext(
                (rest,), question, "the whole input, less its question (no context layout recognised)"
            )
    return ExtractedContext((text,), "", "the whole input (no context layout recognised)")


_QUESTION_TEXT_RE = LazyPattern(
    r"^\s{0,8}(?:#{1,6}\s*)?[*_]{0,2}(?:user |the )?(?:question|query|request|input|human|user|q)"
    r"[*_]{0,2}\s{0,4}:[*_]{0,2}\s*",
    re.I,
)


def _strip_label(line: str) -> str:
    return _QUESTION_TEXT_RE.sub("", line, count=1).strip()


def _question_from(outside: str) -> str:
    """The question in the text around the documents: a labelled question, else the last line ending with
    "?", else the whole remaining text."""
    lines = outside.splitlines()[:_MAX_LINES]
    for i in range(len(lines) - 1, -1, -1):
        if _QUESTION_TEXT_RE.match(lines[i][:200]):
            first = _strip_label(lines[i])
            tail: list[str] = [first] if first else []
            for line in lines[i + 1 :]:
                if _heading(line) is not None:
                    break
                tail.append(line.strip())
            return "\n".join(t for t in tail if t).strip()
    q = _last_question_line(lines)
    if q is not None:
        line = lines[q].strip()
        inline = _INLINE_QUESTION_RE.search(line[:2_000])
        return line[inline.end() :].strip() if inline else line
    return outside.strip()


_INLINE_QUESTION_RE = LazyPattern(r"\b(?:question|query)\s{0,4}:\s*", re.I)


# -- XML-like tags

_CONTAINER_TAGS = (
    "context|contexts|documents|docs|sources|passages|search_results|retrieved_context|retrieved_documents|"
    "knowledge|background|references|excerpts|chunks"
)
_ITEM_TAGS = "document|doc|source|passage|search_result|reference|excerpt|chunk|article"
_OPEN_TAG_RE = LazyPattern(rf"<({_CONTAINER_TAGS}|{_ITEM_TAGS})(?:\s[^<>]{{0,300}})?>", re.I)
_ITEM_OPEN_RE = LazyPattern(rf"<({_ITEM_TAGS})(?:\s[^<>]{{0,300}})?>", re.I)
_QUESTION_TAG_RE = LazyPattern(r"<(question|query|user_question)>", re.I)
_ANY_TAG_RE = re.compile(r"</?[A-Za-z][\w\-]{0,40}(?:\s[^<>]{0,300})?/?>")


def _tag_blocks(text: str, opener: LazyPattern) -> list[tuple[int, int, str, str]]:
    """Outer-most ``<name ...>body</name>`` blocks: (start, end, name, body). Linear: each closing tag is
    searched for from the current position, and a name whose closing tag is missing is not searched again."""
    blocks: list[tuple[int, int, str, str]] = []
    no_close: set[str] = set()
    pos = 0
    while len(blocks) < MAX_ITEMS:
        match = opener.search(text, pos)
        if match is None:
            break
        name = match.group(1).lower()
        if name in no_close:
            pos = match.end()
            continue
        close = re.compile(rf"</\s*{re.escape(name)}\s*>", re.I).search(text, match.end())
        if close is None:
            no_close.add(name)
            pos = match.end()
            continue
        blocks.append((match.start(), close.end(), name, text[match.end() : close.start()]))
        pos = close.end()
    return blocks


def _strip_tags(text: str) -> str:
    return _ANY_TAG_RE.sub(" ", text).strip()


def _from_tags(text: str) -> ExtractedContext | None:
    if "<" not in text:
        return None
    blocks = _tag_blocks(text, _OPEN_TAG_RE)
    if not blocks:
        return None
    docs: list[str] = []
    for _, _, _, body in blocks:
        items = _tag_blocks(body, _ITEM_OPEN_RE)
        bodies = [b for _, _, _, b in items] if items else [body]
        for item in bodies:
            json_docs = documents_from_json(_load_json(item, EXTRACT_LIMIT))
            docs.extend(json_docs or [_strip_tags(item)])
    docs = [d for d in docs if d.strip()]
    if not docs:
        return None
    outside, last = [], 0
    for start, end, _, _ in blocks:
        outside.append(text[last:start])
        last = end
    outside.append(text[last:])
    rest = "".join(outside)
    question_tags = _tag_blocks(rest, _QUESTION_TAG_RE)
    question = _strip_tags(question_tags[-1][3]) if question_tags else _question_from(_strip_tags(rest))
    names = list(dict.fromkeys(name for _, _, name, _ in blocks))
    where = ", ".join(f"<{n}>" for n in names[:3])
    plural = "sections" if len(blocks) > 1 else "section"
    return ExtractedContext(tuple(docs), question, f"the input's {where} {plural}")


# -- sections and numbered passages

_CONTEXT_LABELS = (
    r"context(?:s| information| documents?| passages?)?|documents?|docs|sources?|"
    r"background(?: information)?|passages?|"
    r"retrieved (?:context|documents?|passages?|information|text)|reference(?:s| text| documents?)?|"
    r"knowledge(?: base)?|search results|excerpts?|evidence|relevant (?:information|documents?|passages?)"
)
_END_LABELS = (
    r"(?:user |the )?(?:question|questions|query|request|q)|input|human|user|task|instructions?|answer|"
    r"response|output|assistant|ai|final answer|conversation|chat history|history|system"
)
_HEADING_RE = re.compile(
    rf"^\s{{0,8}}(#{{1,6}}\s*)?[*_]{{0,2}}(?:({_CONTEXT_LABELS})|({_END_LABELS}))[*_]{{0,2}}[ \t]*"
    r"(?:\([^()\n]{0,60}\))?[ \t]*(:)?[*_]{0,2}[ \t]*(.*)$",
    re.I,
)
_LLAMA_HEADING_RE = re.compile(r"^\s*context information (?:is )?(?:below|follows)\b.{0,40}$", re.I)
_DIVIDER_RE = re.compile(r"^\s*(?:-{3,}|={3,}|\*{3,}|_{3,}|#{3,})\s*$")
_NUMBERED_RE = re.compile(
    r"^\s{0,8}(?:\[\s*(?:(?:document|doc|passage|source|chunk)\s*)?#?\d{1,4}\s*\]"
    r"|(?:document|doc|passage|source|chunk|excerpt)\s*#?\s*\d{1,4}\b[^:\n]{0,80}:)[ \t]*(.*)$",
    re.I,
)


def _heading(line: str) -> tuple[str, str] | None:
    """("context" | "end", the text after the label) when ``line`` is a section heading, else None.

    A label counts as a heading with a colon ("Context: ..."), as a markdown heading ("## Context") or
    alone on its line ("CONTEXT"): "Context matters here." is prose."""
    head = line[:400]
    if _LLAMA_HEADING_RE.match(head):
        return "context", ""
    match = _HEADING_RE.match(head)
    if match is None:
        return None
    markdown, ctx_label, colon, rest = match.group(1), match.group(2), match.group(4), match.group(5)
    if not (colon or markdown or not rest.strip()):
        return None
    if rest and len(line) > 400:
        rest = line[match.start(5) :]
    return ("context" if ctx_label else "end"), rest


def _split_numbered(lines: list[str]) -> list[str] | None:
    """Documents from numbered passages ("[1] ...", "Document 2: ..."), or None when there are none."""
    docs: list[list[str]] = []
    for line in lines:
        match = _NUMBERED_RE.match(line)
        if match:
            docs.append([match.group(1)])
        elif docs:
            docs[-1].append(line)
    out = ["\n".join(d).strip() for d in docs]
    return [d for d in out if d] or None


def _from_sections(text: str) -> ExtractedContext | None:
    lines = text.splitlines()[:_MAX_LINES]
    headings = [_heading(line) for line in lines]
    if not any(h is not None and h[0] == "context" for h in headings):
        return None
    docs: list[str] = []
    outside: list[str] = []
    labels: list[str] = []
    i = 0
    while i < len(lines):
        h = headings[i]
        if h is None or h[0] != "context":
            outside.append(lines[i])
            i += 1
            continue
        labels.append(_label_of(lines[i]))
        body = [h[1]] if h[1].strip() else []
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j < len(lines) and not body and _DIVIDER_RE.match(lines[j]):  # LlamaIndex: between dividers
            k = j + 1
            while k < len(lines) and not _DIVIDER_RE.match(lines[k]):
                body.append(lines[k])
                k += 1
            i = k + 1
        else:
            k = i + 1
            while k < len(lines) and headings[k] is None:
                body.append(lines[k])
                k += 1
            i = k
        body, trailing = _split_trailing(body)
        outside.extend(trailing)
        docs.extend(_section_documents(body))
    docs = [d for d in docs if d.strip()]
    if not docs:
        return None
    question = _question_from("\n".join(outside))
    where = ", ".join(f'"{label}"' for label in dict.fromkeys(labels[:3]))
    plural = "sections" if len(labels) > 1 else "section"
    return ExtractedContext(tuple(docs), question, f"the input's {where} {plural}")


def _label_of(line: str) -> str:
    if _LLAMA_HEADING_RE.match(line[:400]):
        return "Context information is below."
    match = _HEADING_RE.match(line[:400])
    label = (match.group(2) or match.group(3)) if match else "context"
    return f"{label.strip().capitalize()}:"


def _split_trailing(body: list[str]) -> tuple[list[str], list[str]]:
    """A section body cut before what follows it without a heading: after numbered passages, the lines
    after the last passage's paragraph; else a last paragraph that is one question line."""
    last = max((i for i, line in enumerate(body) if _NUMBERED_RE.match(line)), default=None)
    if last is not None:
        end = next((i for i in range(last + 1, len(body)) if not body[i].strip()), len(body))
        return body[:end], body[end:]
    end = len(body)
    while end and not body[end - 1].strip():
        end -= 1
    if end >= 2 and not body[end - 2].strip() and _last_question_line(body[end - 1 : end]) is not None:
        return body[: end - 2], body[end - 1 :]
    return body, []


def _section_documents(body: list[str]) -> list[str]:
    joined = "\n".join(body).strip()
    json_docs = documents_from_json(_load_json(joined, EXTRACT_LIMIT))
    if json_docs:
        return json_docs
    return _split_numbered(body) or [joined]


def _from_numbered(text: str) -> ExtractedContext | None:
    lines = text.splitlines()[:_MAX_LINES]
    docs: list[list[str]] = []
    outside: list[str] = []
    open_doc = False
    for line in lines:
        match = _NUMBERED_RE.match(line)
        if match:
            docs.append([match.group(1)])
            open_doc = True
        elif open_doc and line.strip() and _heading(line) is None:
            docs[-1].append(line)
        else:
            open_doc = False
            outside.append(line)
    found = [d for d in ("\n".join(doc).strip() for doc in docs) if d]
    if not found:
        return None
    question = _question_from("\n".join(outside))
    return ExtractedContext(tuple(found), question, f"the input's numbered passages ({len(found)})")


# --------------------------------------------------------------------------------------------- transcripts


@dataclass
class ExtractedCall:
    """One tool call read from a transcript."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    result: str | None = None
    error: str | None = None
    status: str | None = None  # "success" | "error" | None


@dataclass
class ExtractedMessage:
    """One turn of a transcript: role is system, user, assistant or tool."""

    role: str
    content: str
    tool_call_id: str | None = None
    status: str | None = None
    calls: list[ExtractedCall] = field(default_factory=list)


@dataclass(frozen=True)
class Transcript:
    """Tool calls (results attached) and the conversation's turns read from a serialised transcript."""

    calls: tuple[ExtractedCall, ...]
    messages: tuple[ExtractedMessage, ...]
    format: str  # "OpenAI message list", "LangChain message list", "JSON list of tool calls"


_LC_TYPES = {
    "ai": "assistant",
    "aimessage": "assistant",
    "aimessagechunk": "assistant",
    "human": "user",
    "humanmessage": "user",
    "system": "system",
    "systemmessage": "system",
    "tool": "tool",
    "toolmessage": "tool",
    "function": "tool",
    "functionmessage": "tool",
}
_OPENAI_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


def _arguments(value: Any) -> dict[str, Any]:
    """Tool arguments: a dict, or a JSON object string (OpenAI); anything else gives {}."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _str_or_none(value: Any) -> str | None:
    return _clean(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _openai_call(item: Any) -> ExtractedCall | None:
    """An OpenAI call (``{"id", "function": {"name", "arguments"}}``) or LangChain's ``{"name", "args"}``."""
    if not isinstance(item, dict):
        return None
    function = item.get("function")
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return ExtractedCall(
            _clean(function["name"]), _arguments(function.get("arguments")), _str_or_none(item.get("id"))
        )
    if isinstance(item.get("name"), str):
        args = item.get("args", item.get("arguments", item.get("input")))
        return ExtractedCall(_clean(item["name"]), _arguments(args), _str_or_none(item.get("id")))
    return None


@dataclass
class _Normalised:
    role: str
    content: str
    raw_calls: list[Any]
    tool_call_id: str | None
    status: str | None
    flavour: str  # "openai" | "langchain"


def _normalise_message(item: Any) -> _Normalised | None:
    """An OpenAI or LangChain message dict in one shape, or None when ``item`` is not a message."""
    if not isinstance(item, dict):
        return None
    if "lc" in item and isinstance(item.get("kwargs"), dict) and isinstance(item.get("id"), list):
        name = str(item["id"][-1]).lower() if item["id"] else ""
        return _langchain(_LC_TYPES.get(name), item["kwargs"])
    kind = item.get("type")
    if isinstance(kind, str) and kind.lower() in _LC_TYPES and not isinstance(item.get("function"), dict):
        data = item.get("data")
        return _langchain(_LC_TYPES[kind.lower()], data if isinstance(data, dict) else item)
    role = _OPENAI_ROLES.get(str(item.get("role", "")).lower())
    if role is None:
        return None
    listed = item.get("tool_calls")
    raw_calls: list[Any] = list(listed) if isinstance(listed, list) else []
    if isinstance(item.get("function_call"), dict):  # the legacy single function call
        raw_calls = [*raw_calls, {"function": item["function_call"], "id": None}]
    call_id = _str_or_none(item.get("tool_call_id"))
    return _Normalised(role, _as_text(item.get("content")), raw_calls, call_id, None, "openai")


def _langchain(role: str | None, data: dict[str, Any]) -> _Normalised | None:
    if role is None:
        return None
    raw_calls = data.get("tool_calls")
    if not isinstance(raw_calls, list) or not raw_calls:
        extra = data.get("additional_kwargs")
        raw_calls = extra.get("tool_calls") if isinstance(extra, dict) else None
    status = data.get("status")
    return _Normalised(
        role,
        _as_text(data.get("content")),
        list(raw_calls) if isinstance(raw_calls, list) else [],
        _str_or_none(data.get("tool_call_id")),
        status.lower() if isinstance(status, str) and status.lower() in ("success", "error") else None,
        "langchain",
    )


def _messages_transcript(items: list[Any]) -> Transcript | None:
    normalised = [_normalise_message(i) for i in items[:MAX_ITEMS]]
    if not normalised or any(m is None for m in normalised):
        return None
    messages: list[ExtractedMessage] = []
    calls: list[ExtractedCall] = []
    by_id: dict[str, ExtractedCall] = {}
    pending: list[ExtractedCall] = []  # calls in order, for tool messages without an id
    first_open = 0  # pending[:first_open] all have a result (amortised linear)
    flavours: set[str] = set()
    for m in normalised:
        assert m is not None
        flavours.add(m.flavour)
        message = ExtractedMessage(m.role, m.content, m.tool_call_id, m.status)
        for raw in m.raw_calls[:MAX_ITEMS] if m.role == "assistant" else []:
            call = _openai_call(raw)
            if call is None:
                continue
            message.calls.append(call)
            calls.append(call)
            pending.append(call)
            if call.id:
                by_id[call.id] = call
        if m.role == "tool":
            target = by_id.get(m.tool_call_id or "")
            if target is None:
                while first_open < len(pending) and pending[first_open].result is not None:
                    first_open += 1
                target = pending[first_open] if first_open < len(pending) else None
            if target is not None and target.result is None:
                target.result = m.content
                if m.status is not None:
                    target.status = m.status
        messages.append(message)
    if not any(m.calls or m.role == "tool" for m in messages):
        return Transcript((), tuple(messages), _flavour(flavours))
    return Transcript(tuple(calls), tuple(messages), _flavour(flavours))


def _flavour(flavours: set[str]) -> str:
    if flavours == {"langchain"}:
        return "LangChain message list"
    if flavours == {"openai"}:
        return "OpenAI message list"
    return "message list"


_NAME_KEYS = ("name", "tool", "tool_name")
_ARG_KEYS = ("arguments", "args", "input", "parameters", "tool_input")
_RESULT_KEYS = ("result", "output", "response", "content", "observation")


def _plain_call(item: Any) -> ExtractedCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):
        return _openai_call(item)
    name = next((item[k] for k in _NAME_KEYS if isinstance(item.get(k), str)), None)
    if name is None or not any(k in item for k in (*_ARG_KEYS, *_RESULT_KEYS, "error", "status", "id")):
        return None
    args = next((item[k] for k in _ARG_KEYS if k in item), None)
    result = next((item[k] for k in _RESULT_KEYS if k in item), None)
    error = item.get("error")
    status = item.get("status")
    status_text = status.lower() if isinstance(status, str) else None
    if status_text in ("failed", "failure", "error"):
        status_text = "error"
    elif status_text not in ("success", None):
        status_text = None
    return ExtractedCall(
        _clean(name),
        _arguments(args),
        _str_or_none(item.get("id")),
        None if result is None else _as_text(result),
        None if error in (None, False, "") else _as_text(error),
        status_text,
    )


def transcript_from_json(value: Any) -> Transcript | None:
    """Tool calls and turns from a parsed JSON transcript, or None when ``value`` is not one."""
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list):
            value = value["messages"]
        elif isinstance(value.get("tool_calls"), list) and "role" not in value and "type" not in value:
            value = value["tool_calls"]
        elif isinstance(value.get("choices"), list) and value["choices"]:  # a chat completion response
            choice = value["choices"][0]
            message = choice.get("message") if isinstance(choice, dict) else None
            value = [message] if isinstance(message, dict) else None
        else:
            value = [value]
    if not isinstance(value, list) or not value:
        return None
    found = _messages_transcript(value)
    if found is not None:
        return found
    plain = [_plain_call(i) for i in value[:MAX_ITEMS]]
    if all(c is not None for c in plain):
        return Transcript(tuple(c for c in plain if c is not None), (), "JSON list of tool calls")
    return None


def transcript_from_text(text: str, *, limit: int = TRANSCRIPT_LIMIT) -> Transcript | None:
    """The transcript serialised in ``text`` (JSON), or None. Never raises; longer than ``limit``: None."""
    data = _load_json(text, limit)
    if data is None:
        return None
    return transcript_from_json(data)

"""Human review of tool calls, the framework-neutral part: the request a person sees and their decisions.

The shapes follow LangChain's ``HumanInTheLoopMiddleware``: a request holds ``action_requests`` (one per
flagged call: its name, arguments, the model's id, the triggered rules and the action the stage proposes)
and ``review_configs``; the answer is ``{"decisions": [...]}``, one decision per action request, in order:

- ``{"type": "approve"}``: run the call as the model made it;
- ``{"type": "edit", "edited_action": {"name": <the tool>, "args": {...}}}``: run it with these arguments;
- ``{"type": "reject", "message": ...}`` (message optional): don't run it; the model gets the message
  (else the override, else a standard note) as the call's error result;
- ``{"type": "respond", "message": ...}``: don't run it; the message is the call's result.

Everything here is JSON-friendly: a request holds the arguments as the model wrote them (pseudonyms, never
a vault's values), so it can be shown, stored or sent to a reviewing UI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .checkpoints import arguments_from_text
from .response import Response
from .rules import ActionType

TOOL_DECISIONS: tuple[str, ...] = ("approve", "edit", "reject", "respond")
_TOOL_ALLOWED = (
    "answer with {'decisions': [...]}, one decision per action request, in order: {'type': 'approve'} "
    "(run the call as the model made it), {'type': 'edit', 'edited_action': {'name': <the tool>, "
    "'args': {...}}} (run it with these arguments), {'type': 'reject'} (don't run it; optional "
    "'message' for the model), {'type': 'respond', 'message': ...} (don't run it; your message is its result)"
)


class InvalidToolReview(ValueError):
    """An answer that is not a list of tool-call decisions (the message says why and what is allowed)."""

    def __init__(self, answer: Any, problem: str) -> None:
        self.answer = answer
        super().__init__(f"invalid review {answer!r}: {problem}; {_TOOL_ALLOWED}")


def _tool_decision(answer: Any, decision: Any, name: str) -> dict[str, Any]:
    """One decision about a call to ``name``, validated (raises :class:`InvalidToolReview`)."""
    if not isinstance(decision, Mapping):
        raise InvalidToolReview(answer, f"each decision must be a dict with a 'type', not {decision!r}")
    kind = decision.get("type")
    if kind not in TOOL_DECISIONS:
        raise InvalidToolReview(answer, f"'type' must be one of {', '.join(TOOL_DECISIONS)}, not {kind!r}")
    allowed = {"approve": {"type"}, "edit": {"type", "edited_action"}}.get(kind, {"type", "message"})
    unknown = set(decision) - allowed
    if unknown:
        raise InvalidToolReview(
            answer, f"unexpected keys for {kind!r}: {', '.join(sorted(map(repr, unknown)))}"
        )
    if kind == "edit":
        edited = decision.get("edited_action")
        if not isinstance(edited, Mapping) or not isinstance(edited.get("args"), Mapping):
            raise InvalidToolReview(answer, "an 'edit' needs 'edited_action': {'name': ..., 'args': {...}}")
        if edited.get("name", name) != name:
            raise InvalidToolReview(answer, f"an edit keeps the tool ({name!r}); reject the call instead")
        return {"type": "edit", "edited_action": {"name": name, "args": dict(edited["args"])}}
    message = decision.get("message")
    if kind == "respond" and not isinstance(message, str):
        raise InvalidToolReview(answer, "a 'respond' decision needs 'message' (a string)")
    if message is not None and not isinstance(message, str):
        raise InvalidToolReview(answer, "'message' must be a string")
    return dict(decision)


def parse_tool_decisions(answer: Any, names: Sequence[str]) -> list[dict[str, Any]]:
    """The decisions of an answer ``{"decisions": [...]}`` about calls to ``names`` (in order), in
    ``HumanInTheLoopMiddleware``'s shapes; :class:`InvalidToolReview` for anything else."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("decisions"), list):
        raise InvalidToolReview(answer, "expected a dict {'decisions': [...]}")
    decisions = answer["decisions"]
    if len(decisions) != len(names):
        raise InvalidToolReview(answer, f"{len(decisions)} decision(s) for {len(names)} action request(s)")
    return [_tool_decision(answer, d, n) for d, n in zip(decisions, names, strict=True)]


def triggered_rules(response: Response) -> list[dict[str, Any]]:
    """The rules that triggered, JSON-friendly (metric, operator, target and the metric's value)."""
    return [
        {"metric": r.metric, "operator": r.operator.value, "target_value": r.target_value, "value": r.value}
        for r in response.triggered_rules
    ]


def tool_review_entry(
    name: str, args: dict[str, Any], call_id: str | None, response: Response, stage: str | None
) -> dict[str, Any]:
    """What a person sees about one flagged call (an ``ActionRequest`` plus why it was flagged)."""
    meta = response.stage_metadata
    rules = triggered_rules(response)
    if response.action_result.type is ActionType.OVERRIDE:
        proposed: dict[str, Any] = {"type": "OVERRIDE", "message": response.text}
        effect = f"block it, telling the model: {response.text!r}"
    else:
        redacted = arguments_from_text(args, response.text)
        proposed = {"type": "REDACT", "args": redacted}
        effect = "run it with redacted arguments" if redacted is not None else "block it"
    listed = ", ".join(f"{r['metric']} {r['operator']} {r['target_value']!r}" for r in rules)
    stage_name = meta.stage_name if meta else stage
    return {
        "name": name,
        "args": args,
        "description": (
            f"Stage {stage_name!r} flagged this call to {name!r} ({listed}) and proposes to "
            f"{effect}. approve: run it as the model asked; edit: run it with your arguments; "
            "reject: don't run it; respond: don't run it, your message is its result."
        ),
        "tool_call_id": call_id,
        "stage": stage_name,
        "stage_version": meta.stage_version if meta else None,
        "triggered_rules": rules,
        "proposed_action": proposed,
        "trace_id": response.trace_metadata.id,
    }


def review_request(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The request put to a person for the flagged calls of one step (``HumanInTheLoopMiddleware``'s)."""
    return {
        "action_requests": entries,
        "review_configs": [
            {"action_name": e["name"], "allowed_decisions": list(TOOL_DECISIONS)} for e in entries
        ],
    }


def rejected_message(entry: Mapping[str, Any], decision: Mapping[str, Any]) -> str:
    """What the model is told about a call the reviewer rejected."""
    if decision.get("message"):
        return str(decision["message"])
    proposed = entry["proposed_action"]
    if proposed["type"] == "OVERRIDE":
        return str(proposed["message"])
    return (
        f"A reviewer rejected the tool call for `{entry['name']}` with id {entry['tool_call_id']}. "
        "The tool was not executed. Do not retry this tool call unless the user explicitly requests it."
    )

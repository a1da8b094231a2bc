"""LangGraph: a guard node for message graphs, with optional human review through ``interrupt()``.

The node checks the last human message (``field="input"``) or the last AI message (``"output"``) of
``state[messages_key]`` and returns an update that replaces it by id, so the key needs the
``add_messages`` reducer (as in ``MessagesState``). With ``review=True`` a triggered decision is put to
a human with ``interrupt()`` (the graph needs a checkpointer) and resumed with
``Command(resume="approve" | "reject" | {"action": "replace", "text": ...})``: *approve* applies the
guard's action, *reject* lets the original text through, *replace* uses the reviewer's text as an
override (an input guard then answers with it). On resume
the node runs again from the start, so the stage is invoked a second time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.types import Command, interrupt

from ..payload import Payload
from ..protect import Protect
from ..response import Response
from ..rules import ActionType
from ..stage_ref import StageLike
from ..status import FailPolicy
from ._convert import last_user_text, message_text, replace_text, texts_of, to_messages, tool_calls_of
from ._errors import GuardrailTriggered
from ._events import decision_data
from ._stage import Checker, checker

Review = Literal["approve", "reject"] | Mapping[str, Any]


def _last(messages: Sequence[BaseMessage], field: str) -> int | None:
    kind = "ai" if field == "output" else "human"
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].type == kind:
            return i
    return None


def resolve_review(answer: Any, response: Response, original: str) -> tuple[str, ActionType]:
    """The text a reviewer's answer leads to, and the action type it amounts to."""
    action = answer.get("action") if isinstance(answer, Mapping) else answer
    if action == "approve":
        return response.action_result.value, response.action_result.type
    if action == "reject":
        return original, ActionType.PASSTHROUGH
    if action == "replace" and isinstance(answer, Mapping) and isinstance(answer.get("text"), str):
        return answer["text"], ActionType.OVERRIDE
    raise ValueError(
        f"unknown review answer {answer!r}: resume with 'approve', 'reject' or "
        "{'action': 'replace', 'text': ...}"
    )


class GuardNode:
    """The callable behind :func:`guard_node` (sync and async)."""

    def __init__(
        self,
        check: Checker,
        *,
        field: Literal["input", "output"],
        messages_key: str,
        context_key: str | None,
        review: bool,
        goto_on_block: str | None,
        goto_on_pass: str | None,
        decision_key: str | None,
        on_trigger: Literal["apply", "raise"],
    ) -> None:
        self.check = check
        self.field = field
        self.messages_key = messages_key
        self.context_key = context_key
        self.review = review
        self.goto_on_block = goto_on_block
        self.goto_on_pass = goto_on_pass
        self.decision_key = decision_key
        self.on_trigger = on_trigger

    def _payload(self, state: Mapping[str, Any]) -> tuple[int, str, Payload] | None:
        messages: list[BaseMessage] = list(state.get(self.messages_key) or [])
        index = _last(messages, self.field)
        if index is None:
            return None
        text = message_text(messages[index])
        if not text:
            return None
        context = texts_of(state.get(self.context_key)) if self.context_key else None
        if self.field == "input":
            payload = Payload(input=text, context=context or None, messages=to_messages(messages))
        else:
            payload = Payload(
                input=last_user_text(messages[:index]),
                output=text,
                context=context or None,
                messages=to_messages(messages[: index + 1]),
                tool_calls=tool_calls_of(messages[:index]) or None,
            )
        return index, text, payload

    def _update(self, state: Mapping[str, Any], index: int, text: str, response: Response) -> Any:
        no_change: dict[str, Any] = {}
        if self.decision_key:
            no_change[self.decision_key] = decision_data(
                response, where=self.field, stage=self.check.stage.label
            )
        if self.review and response.triggered and not response.shadow:
            new_text, action = resolve_review(interrupt(self._review_request(text, response)), response, text)
        elif response.applied:
            if self.on_trigger == "raise":
                raise GuardrailTriggered(response, where=self.field, text=text)
            new_text, action = response.text, response.action_result.type
        else:
            return self._route(no_change, blocked=False)
        if new_text == text:
            return self._route(no_change, blocked=False)
        message = state[self.messages_key][index]
        updates: list[AnyMessage]
        if self.field == "input" and action is ActionType.OVERRIDE:
            updates = [AIMessage(content=new_text)]  # the guard answers in the model's place
        else:
            updates = [replace_text(message, (), new_text, action)]
        update = {**no_change, self.messages_key: updates}
        return self._route(update, blocked=action is ActionType.OVERRIDE)

    def _route(self, update: dict[str, Any], *, blocked: bool) -> Any:
        goto = self.goto_on_block if blocked else self.goto_on_pass
        return update if goto is None else Command(update=update, goto=goto)

    def _review_request(self, text: str, response: Response) -> dict[str, Any]:
        return {
            **decision_data(response, where=self.field, stage=self.check.stage.label),
            "text": text,
            "proposed": response.action_result.value,
            "options": ["approve", "reject", "replace"],
        }

    def __call__(self, state: Mapping[str, Any], config: RunnableConfig) -> Any:
        found = self._payload(state)
        if found is None:
            return self._route({}, blocked=False)
        index, text, payload = found
        return self._update(state, index, text, self.check.check(payload, config, where=self.field))

    async def acall(self, state: Mapping[str, Any], config: RunnableConfig) -> Any:
        found = self._payload(state)
        if found is None:
            return self._route({}, blocked=False)
        index, text, payload = found
        response = await self.check.acheck(payload, config, where=self.field)
        return self._update(state, index, text, response)


def guard_node(
    stage: StageLike,
    *,
    field: Literal["input", "output"] = "input",
    messages_key: str = "messages",
    context_key: str | None = None,
    review: bool = False,
    goto_on_block: str | None = None,
    goto_on_pass: str | None = None,
    decision_key: str | None = None,
    on_trigger: Literal["apply", "raise"] = "apply",
    protect: Protect | None = None,
    project_name: str | None = None,
    timeout: float = 300.0,
    fail_policy: FailPolicy | str | None = None,
    shadow: bool = False,
    metadata: dict[str, Any] | None = None,
    name: str | None = None,
) -> RunnableLambda[Any, Any]:
    """A graph node that guards the last human (input) or AI (output) message of ``messages_key``.

    An input override appends the override as the AI's answer. To route on the decision, give
    ``goto_on_block`` (e.g. ``END``) and ``goto_on_pass`` (the next node) and add no static edge out of
    the guard node: it returns a ``Command`` that goes to one of them (LangGraph follows static edges
    *as well as* a ``Command``'s ``goto``). ``context_key`` names a state key with retrieved documents;
    ``decision_key`` a state key that receives the decision (it must be in the state schema).
    """
    check = checker(
        stage,
        protect=protect,
        timeout=timeout,
        fail_policy=fail_policy,
        shadow=shadow,
        metadata=metadata,
        project_name=project_name,
    )
    assert check is not None
    node = GuardNode(
        check,
        field=field,
        messages_key=messages_key,
        context_key=context_key,
        review=review,
        goto_on_block=goto_on_block,
        goto_on_pass=goto_on_pass,
        decision_key=decision_key,
        on_trigger=on_trigger,
    )
    return RunnableLambda(node.__call__, afunc=node.acall, name=name or f"guard[{check.stage.label}:{field}]")

"""LangGraph: a guard node for message graphs, with optional human review through ``interrupt()``.

The node checks the last human message (``field="input"``) or the last AI message (``"output"``) of
``state[messages_key]`` and returns an update that replaces it by id, so the key needs the
``add_messages`` reducer (as in ``MessagesState``).

Blocking an input takes routing: LangGraph follows a node's static edges *as well as* the ``goto`` of
the ``Command`` it returns, so a node cannot stop a static edge to the model. An input guard therefore
answers with the override only when it routes (``goto_on_pass`` given, no static edge out); without
routing it raises :class:`GuardrailTriggered`, so the model never sees a blocked input.

With ``review=True`` a decision that would change the text is put to a human with ``interrupt()`` (the
graph needs a checkpointer) and resumed with a decision in the vocabulary of LangChain's
``HumanInTheLoopMiddleware``, about the flagged text: approve it, reject it (apply the guard's action),
edit it, or respond in its place. An invalid answer interrupts again with an ``error``, so the thread
never gets stuck. On resume the node runs again from the start, so the stage is invoked again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict, cast

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph import END
from langgraph.types import Command, interrupt

from ..checkpoints import input_payload, output_payload
from ..payload import Payload
from ..protect import Protect
from ..response import ActionResult, Response
from ..rules import ActionType
from ..stage_ref import StageLike
from ..status import FailPolicy
from ._convert import message_text, replace_text, texts_of, to_turn
from ._errors import GuardrailTriggered
from ._events import decision_data
from ._stage import Checker, checker

# -- review decisions: HumanInTheLoopMiddleware's vocabulary, about the flagged text


class ApproveDecision(TypedDict):
    """Let the flagged text through unchanged (same shape as LangChain's ``ApproveDecision``)."""

    type: Literal["approve"]


class RejectDecision(TypedDict):
    """Don't let the flagged text through: apply the guard's action (its override, or its redaction).

    Same shape as LangChain's ``RejectDecision``; ``message`` is the reviewer's reason, kept in the
    decision under ``decision_key``.
    """

    type: Literal["reject"]
    message: NotRequired[str]


class EditTextDecision(TypedDict):
    """Put the reviewer's ``text`` in place of the flagged text, and carry on as if it had been written.

    An edited input goes to the model; an edited answer goes to the user. (LangChain's ``EditDecision``
    edits a tool call; a guard node reviews text.)
    """

    type: Literal["edit"]
    text: str


class RespondDecision(TypedDict):
    """Answer with the reviewer's ``message`` instead: for an input guard the model is skipped.

    Same shape as LangChain's ``RespondDecision``.
    """

    type: Literal["respond"]
    message: str


ReviewDecision = ApproveDecision | RejectDecision | EditTextDecision | RespondDecision

DECISION_TYPES: tuple[str, ...] = ("approve", "reject", "edit", "respond")

# per decision type: its required and optional string fields
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "approve": ((), ()),
    "reject": ((), ("message",)),
    "edit": (("text",), ()),
    "respond": (("message",), ()),
}

_ALLOWED = (
    "resume with {'type': 'approve'} (let the text through), {'type': 'reject'} (apply the guard's "
    "action; optional 'message': your reason), {'type': 'edit', 'text': ...} (use your text in its "
    "place), {'type': 'respond', 'message': ...} (answer with your message instead)"
)


class InvalidReview(ValueError):
    """A resume value that is not a review decision; the message says what is wrong and what is allowed."""

    def __init__(self, answer: Any, problem: str) -> None:
        self.answer = answer
        super().__init__(f"invalid review decision {answer!r}: {problem}; {_ALLOWED}")


def parse_decision(answer: Any) -> ReviewDecision:
    """The typed decision a resume value stands for, or :class:`InvalidReview`."""
    if isinstance(answer, str):
        # Bare strings meant the opposite before (an old "reject" let the text through): refuse them
        # rather than silently flip an existing reviewer's meaning.
        raise InvalidReview(
            answer, f"answer with a dict such as {{'type': {answer.strip().lower()!r}}}, not a bare string"
        )
    if not isinstance(answer, Mapping):
        raise InvalidReview(answer, f"expected a dict with a 'type', got {type(answer).__name__}")
    kind = answer.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise InvalidReview(answer, f"'type' must be one of {', '.join(DECISION_TYPES)}")
    required, optional = _FIELDS[kind]
    for key in required:
        if not isinstance(answer.get(key), str):
            raise InvalidReview(answer, f"a {kind!r} decision needs {key!r} (a string)")
    for key in optional:
        if key in answer and not isinstance(answer[key], str):
            raise InvalidReview(answer, f"{key!r} must be a string")
    unknown = set(answer) - {"type", *required, *optional}
    if unknown:
        raise InvalidReview(answer, f"unexpected keys for {kind!r}: {', '.join(sorted(map(repr, unknown)))}")
    return cast(ReviewDecision, {key: answer[key] for key in ("type", *required, *optional) if key in answer})


def _outcome(decision: ReviewDecision, response: Response, original: str) -> tuple[str, ActionType]:
    if decision["type"] == "approve":
        return original, ActionType.PASSTHROUGH
    if decision["type"] == "reject":
        return response.action_result.value, response.action_result.type
    if decision["type"] == "edit":
        return decision["text"], ActionType.REDACT  # changed in place, like a redaction
    return decision["message"], ActionType.OVERRIDE


def _reviewed(response: Response, text: str, action: ActionType) -> Response:
    """``response`` as a reviewer's decision left it (itself unless they edited or responded)."""
    if text == response.text and action is response.action_result.type:
        return response
    result = ActionResult(type=action, value=text)
    return response.model_copy(update={"text": text, "action_result": result})


def resolve_review(answer: Any, response: Response, original: str) -> tuple[str, ActionType]:
    """The text a reviewer's answer leads to, and the action type it amounts to.

    *approve*: the original text (``PASSTHROUGH``); *reject*: the guard's action; *edit*: the reviewer's
    text in place (``REDACT``); *respond*: the reviewer's message as an override (``OVERRIDE``).
    Raises :class:`InvalidReview` (a ``ValueError``) for anything else.
    """
    return _outcome(parse_decision(answer), response, original)


# -- the node


def _last(messages: Sequence[BaseMessage], field: str) -> int | None:
    kind = "ai" if field == "output" else "human"
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].type == kind:
            return i
    return None


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
        on_trigger: Literal["apply", "raise"] | None,
    ) -> None:
        self.check = check
        self.field = field
        self.messages_key = messages_key
        self.context_key = context_key
        self.review = review
        self.goto_on_block = goto_on_block if goto_on_block is not None or field == "output" else END
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
        fields = self.check.fields_read()
        context = texts_of(state.get(self.context_key)) if self.context_key and "context" in fields else None
        # the conversation before the checked text
        turn = to_turn(messages[:index], context=context, fields=fields)
        payload = input_payload(text, turn) if self.field == "input" else output_payload(text, turn)
        return None if payload is None else (index, text, payload)

    def _ask(self, text: str, response: Response) -> ReviewDecision:
        """The reviewer's decision; an invalid answer is put back to them with the error."""
        request = self._review_request(text, response)
        while True:
            answer = interrupt(request)
            try:
                return parse_decision(answer)
            except InvalidReview as exc:
                request = {**request, "error": str(exc)}

    def _raises(self, answered: bool) -> bool:
        if self.on_trigger is None:  # an input answered without routing would still reach the model
            return answered and self.goto_on_pass is None
        return self.on_trigger == "raise"

    def _update(self, state: Mapping[str, Any], index: int, text: str, response: Response) -> Any:
        decision: ReviewDecision | None = None
        if self.review and response.applied:
            decision = self._ask(text, response)
            new_text, action = _outcome(decision, response, text)
        elif response.applied:
            new_text, action = response.text, response.action_result.type
        else:
            new_text, action = text, ActionType.PASSTHROUGH
        update: dict[str, Any] = {}
        if self.decision_key:
            data = decision_data(response, where=self.field, stage=self.check.stage.label)
            update[self.decision_key] = data if decision is None else {**data, "review": dict(decision)}
        answered = self.field == "input" and action is ActionType.OVERRIDE  # the guard answers instead
        if not answered and new_text == text:
            return self._route(update, self.goto_on_pass)
        if self._raises(answered):
            raise GuardrailTriggered(_reviewed(response, new_text, action), where=self.field, text=text)
        message = state[self.messages_key][index]
        update[self.messages_key] = [
            AIMessage(content=new_text) if answered else replace_text(message, (), new_text, action)
        ]
        blocked = action is ActionType.OVERRIDE
        return self._route(update, self.goto_on_block if blocked else self.goto_on_pass)

    @staticmethod
    def _route(update: dict[str, Any], goto: str | None) -> Any:
        return update if goto is None else Command(update=update, goto=goto)

    def _review_request(self, text: str, response: Response) -> dict[str, Any]:
        return {
            **decision_data(response, where=self.field, stage=self.check.stage.label),
            "text": text,
            "proposed": response.action_result.value,
            "allowed_decisions": list(DECISION_TYPES),
            "description": (
                f"The guard flagged this {self.field} and proposes {response.action_result.type.value}. "
                "approve: let the text through; reject: apply the proposal; edit: use your text; "
                "respond: answer with your message instead."
            ),
        }

    def _start(self, state: Mapping[str, Any], config: RunnableConfig) -> tuple[int, str, Payload] | None:
        if self.review and config.get("configurable", {}).get(CONFIG_KEY_CHECKPOINTER) is None:
            # interrupt() needs one; LangGraph only notices when a decision is first put to review
            raise ValueError(
                f"guard_node {self.check.stage.label!r} has review=True, which pauses the graph with "
                "interrupt() and needs a checkpointer: compile the graph with "
                "graph.compile(checkpointer=...) (e.g. InMemorySaver())"
            )
        return self._payload(state)

    def __call__(self, state: Mapping[str, Any], config: RunnableConfig) -> Any:
        found = self._start(state, config)
        if found is None:
            return self._route({}, self.goto_on_pass)
        index, text, payload = found
        return self._update(state, index, text, self.check.check(payload, config, where=self.field))

    async def acall(self, state: Mapping[str, Any], config: RunnableConfig) -> Any:
        found = self._start(state, config)
        if found is None:
            return self._route({}, self.goto_on_pass)
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
    on_trigger: Literal["apply", "raise"] | None = None,
    protect: Protect | None = None,
    project_name: str | None = None,
    timeout: float = 300.0,
    fail_policy: FailPolicy | str | None = None,
    shadow: bool = False,
    metadata: dict[str, Any] | None = None,
    name: str | None = None,
) -> RunnableLambda[Any, Any]:
    """A graph node that guards the last human (input) or AI (output) message of ``messages_key``.

    A redaction (or an output override) replaces the message in place. An input override must stop
    the model, and a node cannot stop a static edge (LangGraph follows static edges *as well as* a
    ``Command``'s ``goto``), so:

    - with ``goto_on_pass`` (the next node) and no static edge out of the node, the override is
      appended as the AI's answer and the node returns ``Command(goto=goto_on_block)`` (default
      ``END``);
    - without ``goto_on_pass`` it raises :class:`GuardrailTriggered` (``.override`` holds the answer).

    ``on_trigger="raise"`` raises for any change of text; ``"apply"`` always applies (route yourself,
    e.g. with a conditional edge on ``decision_key``). ``review=True`` puts each decision that would
    change the text to a human (see :class:`ReviewDecision`); the graph needs a checkpointer, checked
    on the node's first run. ``context_key`` names a state key with retrieved documents;
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

"""Retry with feedback: on an output trigger, ask the chain again with the triggered rules as feedback.

``protect(chain, output_stage=..., retry=Retry(max_attempts=3))``: when the output check triggers an
action named in ``Retry.on`` (default: OVERRIDE), the chain is called again with its input extended by the
rejected answer and a feedback message built from the triggered rules and their metrics' explanations.
The first answer that passes is returned; when none does, the last attempt's decision applies (the
override). Each attempt is reported as the custom event :data:`RETRY_EVENT` and listed in the answer's
metadata (see :func:`attempts_into`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableLambda,
    RunnableSequence,
)
from langchain_core.runnables.config import (
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)

from .._retry import ATTEMPTS_KEY, AttemptLog, Feedback, RetryPolicy, feedback_message
from ..response import Response
from ._convert import find_spots
from ._events import decision_data, listening

RETRY_EVENT = "stageguard_retry"
"""Name of the custom event dispatched after each attempt of a retrying ``protect()``."""

__all__ = [
    "ATTEMPTS_KEY",
    "RETRY_EVENT",
    "Attempts",
    "Feedback",
    "Plan",
    "Retry",
    "feedback_message",
]


@dataclass(frozen=True)
class Retry(RetryPolicy):
    """How ``protect()`` re-asks the chain when its output is rejected.

    ``max_attempts`` counts every call, the first included (``2``: one retry). ``on`` lists the actions
    that reject an answer (a REDACT left out passes, masked). ``feedback`` builds the message from the
    rejecting responses (default :func:`feedback_message`); ``role`` is the message's role when it is
    added to a conversation; ``include_answer`` adds the rejected answer before it (as an AI message, or
    quoted in text). ``key`` names the dict input key the feedback goes into (a string: appended text; a
    message list: appended messages); without it a dict input's feedback is appended to the messages
    of the chain's prompt (its first prompt template step). ``on_attempt`` is called with each attempt's
    record (as in the event), for answers that can't carry metadata (``str``, plain dicts). The policy
    is the core's (``stageguard._retry.RetryPolicy``, shared with LlamaIndex).
    """

    role: Literal["human", "system"] = "human"
    key: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.role not in ("human", "system"):
            raise ValueError(f"Retry.role must be 'human' or 'system', got {self.role!r}")

    def rejects(self, responses: list[Response]) -> list[Response]:
        """The responses that reject the answer (applied, with an action in :attr:`on`)."""
        return self.rejecting(responses)

    def message(self, text: str) -> BaseMessage:
        return HumanMessage(content=text) if self.role == "human" else SystemMessage(content=text)


# -- where the feedback goes


def _prompt_split(chain: Runnable[Any, Any]) -> tuple[Runnable[Any, Any], Runnable[Any, Any]] | None:
    """``(up to the prompt, after it)`` for a sequence with a prompt template step, else ``None``."""
    while isinstance(chain, RunnableBinding):  # with_config, bind... (not a guard wrapping the chain)
        chain = chain.bound
    if not isinstance(chain, RunnableSequence):
        return None
    steps = chain.steps
    for i, step in enumerate(steps[:-1]):
        if isinstance(step, BasePromptTemplate):
            head = steps[0] if i == 0 else RunnableSequence(*steps[: i + 1])
            tail = steps[i + 1] if i + 1 == len(steps) - 1 else RunnableSequence(*steps[i + 1 :])
            return head, tail
    return None


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, BaseMessage) for m in value)


class Plan:
    """How a chain is re-asked for one input value (decided before the first call, so a chain that can't
    take feedback fails on its first call, not on its first trigger)."""

    def __init__(self, retry: Retry, chain: Runnable[Any, Any], value: Any) -> None:
        self.retry = retry
        self.chain = chain
        self.split: tuple[Runnable[Any, Any], Runnable[Any, Any]] | None = None
        if isinstance(value, Mapping):
            if retry.key is not None:
                if retry.key not in value:
                    raise KeyError(f"Retry.key {retry.key!r} is not in the chain input (keys: {list(value)})")
                self._check_extendable(value[retry.key], f"the input key {retry.key!r}")
            else:
                self.split = _prompt_split(chain)
                if self.split is None:
                    raise TypeError(
                        "retry with a dict input needs Retry(key=...) naming the input key that gets the "
                        "feedback, or a chain whose steps include a prompt template"
                    )
        else:
            self._check_extendable(value, "the chain input")

    @staticmethod
    def _check_extendable(value: Any, what: str) -> None:
        if not isinstance(value, (str, StringPromptValue, ChatPromptValue, BaseMessage)) and not _is_messages(
            value
        ):
            raise TypeError(
                f"retry cannot add feedback to {what} ({type(value).__name__}): it extends a str, "
                "a prompt value, a message or a list of messages"
            )

    def _extend(self, value: Any, answer: str, feedback: str) -> Any:
        """``value`` with the rejected answer and the feedback added at its end, same type."""
        if isinstance(value, (str, StringPromptValue)):
            text = value if isinstance(value, str) else value.text
            quoted = self.retry.quoted(answer)
            text = f"{text}{quoted}\n\n{feedback}"
            return text if isinstance(value, str) else StringPromptValue(text=text)
        added: list[BaseMessage] = [AIMessage(content=answer)] if self.retry.include_answer and answer else []
        added.append(self.retry.message(feedback))
        if isinstance(value, ChatPromptValue):
            return ChatPromptValue(messages=[*value.messages, *added])
        if isinstance(value, BaseMessage):
            return [value, *added]
        return [*value, *added]

    def next_call(self, value: Any, answer: str, feedback: str) -> tuple[Runnable[Any, Any], Any]:
        """The runnable and input of the next attempt, for the chain input ``value``."""
        if self.split is not None:  # the chain's own steps up to the prompt, then the feedback, then the rest
            head, tail = self.split
            add = RunnableLambda(
                lambda prompt: self._extend(prompt, answer, feedback), name="stageguard_feedback"
            )
            return head | add | tail, value
        if isinstance(value, Mapping):
            assert self.retry.key is not None
            key = self.retry.key
            return self.chain, {**value, key: self._extend(value[key], answer, feedback)}
        return self.chain, self._extend(value, answer, feedback)


def answer_text(output: Any, keys: Sequence[str] | None) -> str:
    """The text of a rejected answer (its texts, not its tool calls), for the next attempt."""
    try:
        spots = find_spots(output, "output", keys=keys)
    except TypeError:
        return ""
    return "\n".join(spot.text for spot in spots if spot.call is None)


# -- what each attempt leaves behind


def report_attempt(record: dict[str, Any], config: RunnableConfig) -> None:
    """Dispatch the attempt as a custom event of the current run (nobody listening: nothing)."""
    run = listening(config)
    if run is None:
        return
    manager: CallbackManager = get_callback_manager_for_config(run)
    if manager.parent_run_id is not None:
        manager.on_custom_event(RETRY_EVENT, record, run_id=manager.parent_run_id)


async def areport_attempt(record: dict[str, Any], config: RunnableConfig) -> None:
    run = listening(config)
    if run is None:
        return
    manager: AsyncCallbackManager = get_async_callback_manager_for_config(run)
    if manager.parent_run_id is not None:
        await manager.on_custom_event(RETRY_EVENT, record, run_id=manager.parent_run_id)


def attempts_into(output: Any, attempts: list[dict[str, Any]]) -> Any:
    """The answer with its attempts listed: in a message's ``response_metadata``, or under
    :data:`ATTEMPTS_KEY` of each message value of a dict (other types can't carry them: use the events)."""
    if isinstance(output, BaseMessage):
        metadata = {**output.response_metadata, ATTEMPTS_KEY: attempts}
        return output.model_copy(update={"response_metadata": metadata})
    if isinstance(output, Mapping) and any(isinstance(v, BaseMessage) for v in output.values()):
        return {k: attempts_into(v, attempts) if isinstance(v, BaseMessage) else v for k, v in output.items()}
    return output


class Attempts:
    """The attempts of one retrying call: records each, and says what to call next."""

    def __init__(self, plan: Plan, stage: str | None, keys: Sequence[str] | None) -> None:
        self.plan = plan
        self.keys = keys
        self._log = AttemptLog(plan.retry, lambda r: decision_data(r, where="output", stage=stage))
        self.last: dict[str, Any] = {}
        """The latest attempt's record (what its event carries)."""

    @property
    def records(self) -> list[dict[str, Any]]:
        return self._log.records

    def judge(
        self, value: Any, output: Any, responses: list[Response]
    ) -> tuple[Runnable[Any, Any], Any] | None:
        """Record an attempt; the next ``(runnable, input)`` when its answer is rejected and attempts
        remain, else ``None`` (the answer, or the last decision, is final). :attr:`last` is the record."""
        feedback = self._log.judge(responses)
        self.last = self._log.records[-1]
        if feedback is None:
            return None
        return self.plan.next_call(value, answer_text(output, self.keys), feedback)

    def into(self, output: Any) -> Any:
        return attempts_into(output, self.records)

"""protect(..., retry=Retry(...)): a rejected answer is re-asked with feedback built from the triggered
rules; the first answer that passes comes back, the override when none does, every attempt visible."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda

from stageguard import Payload, Protect, ScoreResult
from stageguard.langchain import ATTEMPTS_KEY, EVENT_NAME, RETRY_EVENT, GuardrailTriggered, Retry
from stageguard.langchain import protect as guarded

PROMPT = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
LEAK = "the secret is 42"


class Events(BaseCallbackHandler):
    """Keeps the custom events of a run."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.seen.append((name, data))

    def named(self, name: str) -> list[Any]:
        return [data for event, data in self.seen if event == name]


async def _run(chain: Any, value: Any, use_async: bool, config: Any = None) -> Any:
    return await chain.ainvoke(value, config) if use_async else chain.invoke(value, config)


@pytest.mark.parametrize("use_async", [False, True])
async def test_success_on_the_second_attempt_with_feedback_after_the_prompt(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    llm = chat(LEAK, "I can't share that.")
    chain = guarded(
        PROMPT | llm | StrOutputParser(),
        output_stage=rules.block("NO"),
        retry=Retry(max_attempts=2),
        protect=protect,
    )
    assert await _run(chain, {"question": "what is the code?"}, use_async) == "I can't share that."
    assert llm.calls == 2
    first, second = llm.seen
    assert [type(m) for m in first] == [SystemMessage, HumanMessage]
    # the prompt's own messages, then the rejected answer and the feedback
    assert second[:2] == first
    assert isinstance(second[2], AIMessage) and second[2].content == LEAK
    assert isinstance(second[3], HumanMessage)
    assert "lc_secret gt 0.5" in str(second[3].content) and "value: 1.0" in str(second[3].content)


@pytest.mark.parametrize("use_async", [False, True])
async def test_override_after_max_attempts(protect: Protect, rules: Any, chat: Any, use_async: bool) -> None:
    llm = chat(LEAK, "still a secret", "secret again", "never asked")
    chain = guarded(
        PROMPT | llm, output_stage=rules.block("NO"), retry=Retry(max_attempts=3), protect=protect
    )
    out = await _run(chain, {"question": "code?"}, use_async)
    assert isinstance(out, AIMessage) and out.content == "NO"
    assert llm.calls == 3  # the limit: three calls, no fourth
    attempts = out.response_metadata[ATTEMPTS_KEY]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["passed"] for a in attempts] == [False, False, False]
    assert [a["feedback"] is not None for a in attempts] == [True, True, False]  # no feedback after the last
    assert all(a["decisions"][0]["action"] == "OVERRIDE" for a in attempts)


@pytest.mark.parametrize("use_async", [False, True])
async def test_one_attempt_means_no_retry_and_a_clean_answer_is_not_retried(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    llm = chat(LEAK, "never asked")
    chain = guarded(
        PROMPT | llm, output_stage=rules.block("NO"), retry=Retry(max_attempts=1), protect=protect
    )
    assert (await _run(chain, {"question": "q"}, use_async)).content == "NO"
    assert llm.calls == 1
    llm = chat("fine", "never asked")
    chain = guarded(
        PROMPT | llm, output_stage=rules.block("NO"), retry=Retry(max_attempts=3), protect=protect
    )
    out = await _run(chain, {"question": "q"}, use_async)
    assert out.content == "fine" and llm.calls == 1
    (attempt,) = out.response_metadata[ATTEMPTS_KEY]
    assert (attempt["attempt"], attempt["max_attempts"], attempt["passed"], attempt["feedback"]) == (
        1,
        3,
        True,
        None,
    )
    assert attempt["decisions"][0]["status"] == "not_triggered"


@pytest.mark.parametrize("use_async", [False, True])
async def test_each_attempt_is_a_custom_event(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    llm = chat(LEAK, "all good")
    chain = guarded(
        PROMPT | llm, output_stage=rules.block("NO"), retry=Retry(max_attempts=2), protect=protect
    )
    events = Events()
    out = await _run(chain, {"question": "q"}, use_async, {"callbacks": [events]})
    assert out.content == "all good"
    retries = events.named(RETRY_EVENT)
    assert [(r["attempt"], r["passed"]) for r in retries] == [(1, False), (2, True)]
    assert retries[0]["decisions"][0]["triggered_rules"][0]["metric"] == "lc_secret"
    assert "lc_secret" in retries[0]["feedback"]
    assert [d["status"] for d in events.named(EVENT_NAME)] == ["triggered", "not_triggered"]  # one check each
    assert out.response_metadata[ATTEMPTS_KEY] == retries


@pytest.mark.parametrize("use_async", [False, True])
async def test_messages_and_string_inputs(protect: Protect, rules: Any, chat: Any, use_async: bool) -> None:
    llm = chat(LEAK, "ok")
    chain = guarded(llm, output_stage=rules.block("NO"), retry=Retry(role="system"), protect=protect)
    assert (await _run(chain, [HumanMessage(content="code?")], use_async)).content == "ok"
    retried = llm.seen[1]
    assert [type(m) for m in retried] == [HumanMessage, AIMessage, SystemMessage]  # appended messages
    llm = chat(LEAK, "ok")
    chain = guarded(llm | StrOutputParser(), output_stage=rules.block("NO"), retry=Retry(), protect=protect)
    assert await _run(chain, "code?", use_async) == "ok"
    (message,) = llm.seen[1]  # a string input gets the answer and the feedback as appended text
    text = str(message.content)
    assert text.startswith("code?\n\nYour previous answer:\n" + LEAK) and "lc_secret gt 0.5" in text


@pytest.mark.parametrize("use_async", [False, True])
async def test_dict_input_key_and_history(protect: Protect, rules: Any, chat: Any, use_async: bool) -> None:
    seen: list[Any] = []
    answers = iter([LEAK, "ok"])
    chain = RunnableLambda(lambda x: seen.append(x) or next(answers))
    wrapped = guarded(chain, output_stage=rules.block("NO"), retry=Retry(key="question"), protect=protect)
    assert await _run(wrapped, {"question": "code?", "n": 1}, use_async) == "ok"
    assert seen[1]["n"] == 1 and seen[1]["question"].startswith("code?\n\nYour previous answer:")
    # a prompt with a history placeholder: the feedback goes after the prompt's last message
    prompt = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{question}")])
    llm = chat(LEAK, "ok")
    chain2 = guarded(prompt | llm, output_stage=rules.block("NO"), retry=Retry(), protect=protect)
    value = {"history": [HumanMessage(content="hi"), AIMessage(content="hello")], "question": "code?"}
    assert (await _run(chain2, value, use_async)).content == "ok"
    assert [m.content for m in llm.seen[1]][:3] == ["hi", "hello", "code?"]
    assert llm.seen[1][3].content == LEAK


def test_a_dict_input_with_nowhere_to_put_feedback_fails_on_the_first_call(
    protect: Protect, rules: Any
) -> None:
    chain = RunnableLambda(lambda x: "fine")  # clean answer: the error must not wait for a trigger
    wrapped = guarded(chain, output_stage=rules.block(), retry=Retry(), protect=protect)
    with pytest.raises(TypeError, match=r"Retry\(key=\.\.\.\)"):
        wrapped.invoke({"question": "q"})
    with pytest.raises(KeyError, match="nope"):
        guarded(chain, output_stage=rules.block(), retry=Retry(key="nope"), protect=protect).invoke(
            {"q": "x"}
        )


@pytest.mark.parametrize("use_async", [False, True])
async def test_raise_mode_raises_only_when_no_attempt_passes(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    llm = chat(LEAK, "ok")
    chain = guarded(
        PROMPT | llm, output_stage=rules.block(), retry=Retry(), on_trigger="raise", protect=protect
    )
    assert (await _run(chain, {"question": "q"}, use_async)).content == "ok"
    llm = chat(LEAK, LEAK)
    chain = guarded(
        PROMPT | llm, output_stage=rules.block(), retry=Retry(), on_trigger="raise", protect=protect
    )
    with pytest.raises(GuardrailTriggered):
        await _run(chain, {"question": "q"}, use_async)
    assert llm.calls == 2


@pytest.mark.parametrize("use_async", [False, True])
async def test_redactions_retry_only_when_asked(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    llm = chat(LEAK, "ok")
    chain = guarded(
        PROMPT | llm | StrOutputParser(), output_stage=rules.mask(), retry=Retry(), protect=protect
    )
    assert await _run(chain, {"question": "q"}, use_async) == "the <SECRET> is 42"  # masked, passes
    assert llm.calls == 1
    llm = chat(LEAK, "ok")
    chain = guarded(
        PROMPT | llm | StrOutputParser(),
        output_stage=rules.mask(),
        retry=Retry(on={"OVERRIDE", "REDACT"}),
        protect=protect,
    )
    assert await _run(chain, {"question": "q"}, use_async) == "ok"


@pytest.mark.parametrize("use_async", [False, True])
async def test_streams_release_only_the_final_attempt(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    llm = chat(LEAK, "nothing to hide here")
    chain = guarded(PROMPT | llm, output_stage=rules.block("NO"), retry=Retry(), protect=protect)
    if use_async:
        chunks = [c async for c in chain.astream({"question": "q"})]
    else:
        chunks = list(chain.stream({"question": "q"}))
    assert "".join(str(c.content) for c in chunks) == "nothing to hide here"
    assert len(chunks) > 1  # the passing attempt keeps its chunking
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert [a["passed"] for a in total.response_metadata[ATTEMPTS_KEY]] == [False, True]
    llm = chat(LEAK, LEAK)
    chain = guarded(PROMPT | llm, output_stage=rules.block("NO"), retry=Retry(), protect=protect)
    chunks = (
        [c async for c in chain.astream({"question": "q"})]
        if use_async
        else list(chain.stream({"question": "q"}))
    )
    assert "".join(str(c.content) for c in chunks) == "NO"


def test_feedback_uses_metric_explanations_or_a_function(
    protect: Protect, chat: Any, metric: Callable[..., str]
) -> None:
    def explained(payload: Payload) -> ScoreResult:
        found = "secret" in (payload.output or "")
        return ScoreResult(
            value=1.0 if found else 0.0, explanation="the answer reveals a secret" if found else None
        )

    metric("lc_explained", explained, kind="score")
    stage = [
        {
            "rules": [{"metric": "lc_explained", "operator": "gt", "target_value": 0.5}],
            "action": {"type": "OVERRIDE", "choices": ["NO"]},
        }
    ]
    llm = chat(LEAK, "ok")
    chain = guarded(llm, output_stage=stage, retry=Retry(include_answer=False), protect=protect)
    assert chain.invoke([HumanMessage(content="q")]).content == "ok"
    assert [type(m) for m in llm.seen[1]] == [HumanMessage, HumanMessage]  # no rejected answer sent back
    assert "the answer reveals a secret" in str(llm.seen[1][1].content)
    llm = chat(LEAK, "ok")
    own = Retry(feedback=lambda responses: f"Avoid: {responses[0].triggered_rules[0].metric}")
    guarded(llm, output_stage=stage, retry=own, protect=protect).invoke([HumanMessage(content="q")])
    assert llm.seen[1][-1].content == "Avoid: lc_explained"


def test_on_attempt_sees_every_attempt_for_outputs_without_metadata(
    protect: Protect, rules: Any, chat: Any
) -> None:
    records: list[dict[str, Any]] = []
    llm = chat(LEAK, "ok")
    chain = guarded(
        PROMPT | llm | StrOutputParser(),
        output_stage=rules.block(),
        retry=Retry(on_attempt=records.append),
        protect=protect,
    )
    assert chain.invoke({"question": "q"}) == "ok"
    assert [(r["attempt"], r["passed"]) for r in records] == [(1, False), (2, True)]


def test_bad_retry_configurations(protect: Protect, rules: Any, chat: Any) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Retry(max_attempts=0)
    with pytest.raises(TypeError, match="int"):
        Retry(max_attempts=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="PASSTHROUGH"):
        Retry(on={"PASSTHROUGH"})
    with pytest.raises(ValueError, match="role"):
        Retry(role="tool")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output_stage"):
        guarded(chat("x"), input_stage=rules.block(), retry=Retry(), protect=protect)
    with pytest.raises(ValueError, match="buffer"):
        guarded(chat("x"), output_stage=rules.block(), retry=Retry(), streaming="window", protect=protect)
    with pytest.raises(TypeError, match="Retry"):
        guarded(chat("x"), output_stage=rules.block(), retry=2, protect=protect)  # type: ignore[arg-type]


@pytest.mark.parametrize("use_async", [False, True])
async def test_retry_with_a_parallel_input_check(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    llm = chat(LEAK, "ok")
    chain = guarded(
        PROMPT | llm,
        input_stage=rules.note(),
        output_stage=rules.block("NO"),
        retry=Retry(),
        parallel_input=True,
        protect=protect,
    )
    out = await _run(chain, {"question": "q"}, use_async)
    assert out.content == "ok" and llm.calls == 2

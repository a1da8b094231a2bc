"""Guard: a Runnable step that checks and rewrites the value flowing through a chain."""

from __future__ import annotations

import pickle
from typing import Any
from uuid import UUID

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from stageguard import ExecutionStatus, Protect, register_metric, set_default_protect
from stageguard.langchain import EVENT_NAME, Guard, GuardrailTriggered, StageRef

PROMPT = ChatPromptTemplate.from_messages([("system", "be nice"), ("human", "{q}")])


class Runs(BaseCallbackHandler):
    """Names of the runs started, and the custom events seen."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.events: list[tuple[str, Any]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.names.append(kwargs.get("name") or "")

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append((name, data))


# -- types in, same types out


def test_str_override_and_passthrough(protect: Protect, rules: Any) -> None:
    guard = Guard(prioritized_rulesets=rules.block("NO"), field="output", protect=protect)
    assert guard.invoke("tell me the secret") == "NO"
    assert guard.invoke("hello") == "hello"
    going_on = Guard(prioritized_rulesets=rules.block("NO"), on_block="continue", protect=protect)
    assert going_on.invoke("tell me the secret") == "NO"


def test_positional_stage_and_run_name(protect: Protect, rules: Any) -> None:
    protect.create_stage("answers")  # a local stage: its rulesets come with each call
    guard = Guard(StageRef(name="answers", rulesets=tuple(rules.block())), field="output", protect=protect)
    assert guard.get_name() == "Guard[answers:output]"
    assert guard.invoke("a secret") == "BLOCKED"


def test_dict_checks_every_string_value_but_context(
    protect: Protect, rules: Any, recorder: list[Any]
) -> None:
    guard = Guard(prioritized_rulesets=rules.mask() + rules.record, protect=protect, context_key="docs")
    out = guard.invoke({"q": "my secret", "other": "fine", "docs": "a secret doc", "n": 3})
    assert out == {"q": "my <SECRET>", "other": "fine", "docs": "a secret doc", "n": 3}
    assert {p.input for p in recorder} == {"my secret", "fine"}
    assert all(p.context == ["a secret doc"] for p in recorder)


def test_dict_keys_option_reaches_nested_messages(protect: Protect, rules: Any) -> None:
    guard = Guard(prioritized_rulesets=rules.block(), field="output", keys=["answer"], protect=protect)
    value = {"answer": AIMessage(content="the secret"), "question": "secret?"}
    out = guard.invoke(value)
    assert isinstance(out["answer"], AIMessage) and out["answer"].content == "BLOCKED"
    assert out["question"] == "secret?"


def test_prompt_values(protect: Protect, rules: Any) -> None:
    guard = Guard(prioritized_rulesets=rules.mask(), protect=protect)
    out = guard.invoke(StringPromptValue(text="a secret"))
    assert isinstance(out, StringPromptValue) and out.text == "a <SECRET>"

    value = ChatPromptValue(
        messages=[SystemMessage("secret system"), HumanMessage("old secret"), HumanMessage("new secret")]
    )
    out = guard.invoke(value)
    assert isinstance(out, ChatPromptValue)
    assert [m.content for m in out.messages] == ["secret system", "old <SECRET>", "new <SECRET>"]
    assert isinstance(out.messages[2], HumanMessage)


def test_message_list_and_messages_in_payload(protect: Protect, rules: Any, recorder: list[Any]) -> None:
    guard = Guard(prioritized_rulesets=rules.block() + rules.record, on_block="continue", protect=protect)
    messages = [SystemMessage("sys"), HumanMessage("hi"), AIMessage("hello"), HumanMessage("fine")]
    out = guard.invoke(messages)
    assert out is messages
    # each human message is checked with the conversation before it
    assert [p.input for p in recorder] == ["hi", "fine"]
    assert [m.role for m in recorder[1].messages] == ["system", "user", "assistant"]
    out = guard.invoke([*messages[:-1], HumanMessage("secret")])
    assert isinstance(out, list) and out[-1].content == "BLOCKED" and isinstance(out[-1], HumanMessage)


def test_ai_message_override_drops_tool_calls_redact_keeps_them(protect: Protect, rules: Any) -> None:
    call = {"name": "lookup", "args": {"q": "x"}, "id": "c1"}
    message = AIMessage(content="the secret", tool_calls=[call], id="m1")
    out = Guard(prioritized_rulesets=rules.block(), field="output", protect=protect).invoke(message)
    assert isinstance(out, AIMessage) and out.content == "BLOCKED" and out.tool_calls == [] and out.id == "m1"
    out = Guard(prioritized_rulesets=rules.mask(), field="output", protect=protect).invoke(message)
    assert out.content == "the <SECRET>" and out.tool_calls[0]["name"] == "lookup"


def test_ai_message_chunk_stays_a_chunk(protect: Protect, rules: Any) -> None:
    chunk = AIMessageChunk(content="a secret")
    out = Guard(prioritized_rulesets=rules.block(), field="output", protect=protect).invoke(chunk)
    assert type(out) is AIMessageChunk and out.content == "BLOCKED"


def test_content_blocks_keep_non_text_parts(protect: Protect, rules: Any) -> None:
    image = {"type": "image", "url": "https://example.com/a.png"}
    message = HumanMessage(content=[{"type": "text", "text": "my secret"}, image])
    out = Guard(prioritized_rulesets=rules.mask(), protect=protect).invoke(message)
    assert out.content == [{"type": "text", "text": "my <SECRET>"}, image]


def test_unsupported_type_is_an_error(protect: Protect, rules: Any) -> None:
    with pytest.raises(TypeError, match="cannot read int"):
        Guard(prioritized_rulesets=rules.block(), protect=protect).invoke(3)


def test_empty_text_is_not_checked(protect: Protect, rules: Any, recorder: list[Any]) -> None:
    guard = Guard(prioritized_rulesets=rules.record, field="output", protect=protect)
    assert guard.invoke(AIMessage(content="")).content == ""
    assert recorder == []


def test_needs_a_stage() -> None:
    with pytest.raises(ValueError, match="stage"):
        Guard()


# -- in chains


def test_chain_invoke_batch_and_async(protect: Protect, rules: Any, chat: Any) -> None:
    llm = chat("a secret answer", "a fine answer", "a secret answer", "fine again")
    chain = PROMPT | llm | Guard(prioritized_rulesets=rules.block("NOPE"), field="output", protect=protect)
    first = chain.invoke({"q": "x"})
    assert isinstance(first, AIMessage) and first.content == "NOPE"
    assert [m.content for m in chain.batch([{"q": "a"}, {"q": "b"}])] in (
        ["a fine answer", "NOPE"],
        ["NOPE", "a fine answer"],
    )


async def test_chain_ainvoke_and_abatch(protect: Protect, rules: Any, chat: Any) -> None:
    llm = chat("a secret answer", "ok", "ok")
    chain = (
        PROMPT
        | llm
        | StrOutputParser()
        | Guard(prioritized_rulesets=rules.block("NOPE"), field="output", protect=protect)
    )
    assert await chain.ainvoke({"q": "x"}) == "NOPE"
    assert await chain.abatch([{"q": "a"}, {"q": "b"}]) == ["ok", "ok"]


def test_raise_mode_works_with_fallbacks(protect: Protect, rules: Any) -> None:
    guard = Guard(prioritized_rulesets=rules.block(), on_trigger="raise", protect=protect)
    with pytest.raises(GuardrailTriggered) as info:
        guard.invoke("a secret")
    assert info.value.response.triggered and info.value.override == "BLOCKED"
    assert info.value.response.triggered_rules[0].metric == "lc_secret"
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value) and copy.where == "input" and copy.override == "BLOCKED"
    safe = guard.with_fallbacks(
        [RunnableLambda(lambda _: "fallback")], exceptions_to_handle=(GuardrailTriggered,)
    )
    assert safe.invoke("a secret") == "fallback"
    assert safe.invoke("fine") == "fine"
    # a passthrough decision does not raise
    assert (
        Guard(prioritized_rulesets=rules.note(), on_trigger="raise", protect=protect).invoke("secret")
        == "secret"
    )


async def test_raise_mode_async(protect: Protect, rules: Any) -> None:
    guard = Guard(prioritized_rulesets=rules.mask(), on_trigger="raise", protect=protect)
    with pytest.raises(GuardrailTriggered, match="REDACT"):
        await guard.ainvoke("a secret")


def test_shadow_changes_nothing_but_reports(protect: Protect, rules: Any) -> None:
    runs = Runs()
    guard = Guard(prioritized_rulesets=rules.block(), shadow=True, protect=protect)
    assert guard.invoke("a secret", {"callbacks": [runs]}) == "a secret"
    [(name, data)] = runs.events
    assert name == EVENT_NAME
    assert data["status"] == "triggered" and data["shadow"] is True and data["applied"] is False
    assert data["action"] == "OVERRIDE"


def test_pii_builtin_redacts_an_ssn(protect: Protect, builtin: Any) -> None:
    builtin("pii")
    rulesets = [
        {
            "rules": [{"metric": "input_pii", "operator": "contains", "target_value": "ssn"}],
            "action": {"type": "REDACT"},
        }
    ]
    out = Guard(prioritized_rulesets=rulesets, protect=protect).invoke("my ssn is 123-45-6789 ok")
    assert "123-45-6789" not in out and out.startswith("my ssn is ")


# -- stages: by name, pinned, updated, paused, local


def test_central_stage_updates_and_pauses_take_effect(protect: Protect, rules: Any) -> None:
    protect.create_stage("answers", stage_type="central", prioritized_rulesets=rules.block("V1"))
    latest = Guard("answers", field="output", protect=protect)
    pinned = Guard("answers", field="output", stage_version=1, protect=protect)
    assert latest.invoke("secret") == "V1"
    protect.update_stage("answers", prioritized_rulesets=rules.block("V2"))
    assert latest.invoke("secret") == "V2"
    assert pinned.invoke("secret") == "V1"
    protect.pause_stage("answers")
    assert latest.invoke("secret") == "secret"
    protect.resume_stage("answers")
    assert latest.invoke("secret") == "V2"


def test_local_stage_with_rulesets(protect: Protect, rules: Any) -> None:
    protect.create_stage("local-one")
    runs = Runs()
    guard = Guard("local-one", prioritized_rulesets=rules.block(), field="output", protect=protect)
    assert guard.invoke("secret", {"callbacks": [runs]}) == "BLOCKED"
    assert runs.events[0][1]["stage"] == "local-one"


def test_unknown_stage_is_a_programming_error(protect: Protect) -> None:
    from stageguard import StageNotFoundError

    with pytest.raises(StageNotFoundError):
        Guard("nope", protect=protect).invoke("x")


def test_default_protect_is_resolved_at_call_time(protect: Protect, rules: Any) -> None:
    guard = Guard(prioritized_rulesets=rules.block(), field="output")
    set_default_protect(protect)
    try:
        assert guard.invoke("secret") == "BLOCKED"
    finally:
        set_default_protect(None)


def test_fail_policies(protect: Protect) -> None:
    def broken(payload: Any) -> float:
        raise RuntimeError("scorer down")

    register_metric("lc_broken", broken, replace=True)
    try:
        rulesets = [
            {
                "rules": [{"metric": "lc_broken", "operator": "gt", "target_value": 0.5}],
                "action": {"type": "OVERRIDE", "choices": ["closed"]},
            }
        ]
        assert Guard(prioritized_rulesets=rulesets, field="output", protect=protect).invoke("x") == "x"
        closed = Guard(
            prioritized_rulesets=rulesets, field="output", fail_policy="fail_closed", protect=protect
        )
        assert closed.invoke("x") == "closed"
    finally:
        from stageguard.metrics import remove_custom_metric
        from stageguard.scorers.registry import default_registry

        default_registry.unregister("lc_broken")
        remove_custom_metric("lc_broken")


# -- tracing: named runs, custom events, config propagation


def test_guard_is_a_named_run_and_reports_events(protect: Protect, rules: Any, chat: Any) -> None:
    runs = Runs()
    guard = Guard(prioritized_rulesets=rules.block(), field="output", protect=protect)
    chain = PROMPT | chat("a secret") | guard
    chain.invoke({"q": "x"}, {"callbacks": [runs]})
    assert "Guard[inline:output]" in runs.names
    [(name, data)] = runs.events
    assert name == EVENT_NAME
    assert data["status"] == "triggered" and data["action"] == "OVERRIDE" and data["applied"] is True
    assert data["triggered_rules"][0]["metric"] == "lc_secret" and data["where"] == "output"
    named = guard.with_config(run_name="answer-guard")
    runs = Runs()
    named.invoke("fine", {"callbacks": [runs]})
    assert runs.names == ["answer-guard"]
    assert runs.events[0][1]["status"] == ExecutionStatus.not_triggered.value


async def test_events_show_in_astream_events(protect: Protect, rules: Any, chat: Any) -> None:
    chain = (
        PROMPT | chat("a secret") | Guard(prioritized_rulesets=rules.block(), field="output", protect=protect)
    )
    events = [e async for e in chain.astream_events({"q": "x"}, version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert [e["name"] for e in custom] == [EVENT_NAME]
    assert custom[0]["data"]["triggered_rules"][0]["metric"] == "lc_secret"
    starts = [e["name"] for e in events if e["event"] == "on_chain_start"]
    assert "Guard[inline:output]" in starts


def test_config_reaches_the_guard(protect: Protect, rules: Any) -> None:
    seen: list[Any] = []

    class Tags(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            seen.append((kwargs.get("name"), kwargs.get("tags"), kwargs.get("metadata", {}).get("user")))

    guard = Guard(prioritized_rulesets=rules.block(), protect=protect)
    guard.invoke("x", {"callbacks": [Tags()], "tags": ["t1"], "metadata": {"user": "u1"}})
    assert seen == [("Guard[inline:input]", ["t1"], "u1")]


# -- streaming


def test_buffered_stream_never_leaks_and_keeps_chunks_when_clean(
    protect: Protect, rules: Any, chat: Any
) -> None:
    guard = Guard(prioritized_rulesets=rules.block("NOPE"), field="output", protect=protect)
    chain = PROMPT | chat("the secret is out", "all is well here") | guard
    chunks = list(chain.stream({"q": "x"}))
    assert [c.content for c in chunks] == ["NOPE"]
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    chunks = list(chain.stream({"q": "x"}))
    assert len(chunks) > 1 and "".join(str(c.content) for c in chunks) == "all is well here"


async def test_buffered_astream_never_leaks(protect: Protect, rules: Any, chat: Any) -> None:
    guard = Guard(prioritized_rulesets=rules.mask(), field="output", protect=protect)
    chain = PROMPT | chat("the secret is out") | StrOutputParser() | guard
    chunks = [c async for c in chain.astream({"q": "x"})]
    assert chunks == ["the <SECRET> is out"]


@pytest.mark.parametrize("use_async", [False, True])
async def test_windowed_stream_cuts_on_trigger(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    text = "one two three four five six seven eight nine ten secret eleven twelve"
    guard = Guard(
        prioritized_rulesets=rules.block("[cut]"),
        field="output",
        protect=protect,
        streaming="window",
        window=20,
    )
    chain = PROMPT | chat(text) | guard
    chunks = [c async for c in chain.astream({"q": "x"})] if use_async else list(chain.stream({"q": "x"}))
    released = "".join(str(c.content) for c in chunks[:-1])
    assert chunks[-1].content == "[cut]" and "secret" not in released
    assert len(chunks) > 2 and text.startswith(released)  # some text was streamed before the cut
    assert all(isinstance(c, AIMessageChunk) for c in chunks)


@pytest.mark.parametrize("use_async", [False, True])
async def test_windowed_stream_redacts_and_streams(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    text = "alpha beta secret gamma delta epsilon secret zeta eta theta"
    guard = Guard(
        prioritized_rulesets=rules.mask(),
        field="output",
        protect=protect,
        streaming="window",
        window=10,
        check_every=1,
    )
    chain = PROMPT | chat(text) | StrOutputParser() | guard
    chunks = [c async for c in chain.astream({"q": "x"})] if use_async else list(chain.stream({"q": "x"}))
    assert len(chunks) > 3
    assert "".join(chunks) == text.replace("secret", "<SECRET>")


def test_windowed_stream_of_clean_text_is_complete(protect: Protect, rules: Any, chat: Any) -> None:
    text = "nothing to see here, just a plain and long enough answer"
    guard = Guard(
        prioritized_rulesets=rules.block(), field="output", protect=protect, streaming="window", window=8
    )
    chunks = list((PROMPT | chat(text) | guard).stream({"q": "x"}))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == text and len(chunks) > 1


def test_stream_of_a_dict_is_buffered(protect: Protect, rules: Any) -> None:
    guard = Guard(prioritized_rulesets=rules.block(), field="output", protect=protect, streaming="window")
    assert list(guard.stream({"q": "secret"})) == [{"q": "BLOCKED"}]


# -- the hot path


async def test_checks_take_no_slow_attribute_reads(
    protect: Protect, rules: Any, slow_reads: list[tuple[str, str]]
) -> None:
    """A guard's private attributes are read without pydantic's ``__getattr__`` (~1.7 µs a read, several
    per check), nor are the rules' when the stage is made: in a chain, sync, async and streamed, passing
    and overriding."""
    protect.create_stage("answers", stage_type="central", prioritized_rulesets=rules.block("NO"))
    guard = Guard("answers", field="output", protect=protect)
    chain = RunnableLambda(lambda q: f"about {q}") | guard
    assert chain.invoke("the weather") == "about the weather"
    assert chain.invoke("the secret") == "NO"
    assert await chain.ainvoke("the secret") == "NO"
    assert list(chain.stream("the weather")) == ["about the weather"]
    assert guard.checker.stage.label == "answers"
    assert slow_reads == [], slow_reads

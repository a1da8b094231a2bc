"""Reversible redaction in LangChain: ProtectMiddleware numbers pseudonyms in one in-memory vault per
conversation, tools get the values back, the user gets them back through ``restore``; nothing restored
reaches the state, checkpoints or events. Also: windowed streaming applies a REDACT's strategy, and
ProtectCallbackHandler ignores a GuardedRetriever's unchecked inner run."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from stageguard import Payload, Protect, ScoreResult, Span
from stageguard.langchain import (
    DocumentGuard,
    Guard,
    GuardedRetriever,
    ProtectCallbackHandler,
    ProtectMiddleware,
)
from stageguard.redaction import Vault

both = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
_threads = itertools.count()
EMAIL = re.compile(r"[\w.]+@[\w.]+\.\w+")
ALICE, BOB = "alice@example.com", "bob@example.org"


def _emails(payload: Payload) -> ScoreResult:
    text = payload.output if payload.output is not None else (payload.input or "")
    spans = [
        Span(start=m.start(), end=m.end(), label="email", field=payload.text_field)
        for m in EMAIL.finditer(text)
    ]
    return ScoreResult(value=["email"] if spans else [], spans=spans)


@pytest.fixture(autouse=True)
def email_metric(metric: Callable[..., str]) -> None:
    metric("lc_emails", _emails, kind="categories")


def pii(strategy: str = "pseudonym") -> list[dict[str, Any]]:
    return [
        {
            "rules": [{"metric": "lc_emails", "operator": "not_empty"}],
            "action": {"type": "REDACT", "strategy": strategy},
        }
    ]


class Mail:
    def __init__(self, reply: str = "sent") -> None:
        self.sent: list[dict[str, Any]] = []
        sent = self.sent

        @tool
        def send_email(to: str, body: str) -> str:
            """Send an e-mail."""
            sent.append({"to": to, "body": body})
            return reply.format(to=to)

        self.tools = [send_email]


def send(to: str, body: str = "refund approved", id: str = "c1") -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": "send_email", "args": {"to": to, "body": body}, "id": id}]
    )


def thread() -> Any:
    return {"configurable": {"thread_id": f"pseudo-{next(_threads)}"}}


async def invoke(agent: Any, text: str, config: Any, use_async: bool) -> dict[str, Any]:
    value = {"messages": [HumanMessage(text)]}
    result: dict[str, Any] = await agent.ainvoke(value, config) if use_async else agent.invoke(value, config)
    return result


@both
async def test_tool_gets_the_value_the_model_and_the_state_never_see_it(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    model = chat(send("<EMAIL_1>"), "I wrote to <EMAIL_1>.")
    middleware = ProtectMiddleware(input_stage=pii(), protect=protect)
    saver = InMemorySaver()
    agent = create_agent(model, mail.tools, middleware=[middleware], checkpointer=saver)
    config = thread()
    result = await invoke(agent, f"Email {ALICE} about the refund", config, use_async)
    assert model.seen[0][-1].content == "Email <EMAIL_1> about the refund"  # the model never saw it
    assert mail.sent == [{"to": ALICE, "body": "refund approved"}]  # the tool did
    messages = result["messages"]
    assert messages[0].content == "Email <EMAIL_1> about the refund"
    assert messages[1].tool_calls[0]["args"]["to"] == "<EMAIL_1>"  # the conversation keeps the pseudonym
    assert messages[-1].content == "I wrote to <EMAIL_1>."
    assert ALICE not in str(agent.get_state(config).values)
    # every checkpoint after the input was redacted holds the pseudonym only
    later = [c for c in saver.list(config) if c.metadata and c.metadata.get("step", -1) >= 1]
    assert later and all(ALICE not in str(c.checkpoint) for c in later)

    restored = middleware.restore(result, config)
    assert restored["messages"][-1].content == f"I wrote to {ALICE}."
    assert restored["messages"][0].content == f"Email {ALICE} about the refund"
    assert restored["messages"][1].tool_calls[0]["args"]["to"] == ALICE
    assert result["messages"][-1].content == "I wrote to <EMAIL_1>."  # restore copies
    assert middleware.restore("Done: <EMAIL_1>", config) == f"Done: {ALICE}"
    assert middleware.restore("Done: <EMAIL_1>", thread()) == "Done: <EMAIL_1>"  # another thread: no vault


@both
async def test_one_vault_per_thread_across_turns(protect: Protect, chat: Any, use_async: bool) -> None:
    model = chat("Noted.", "Noted again.", "Other thread.")
    middleware = ProtectMiddleware(input_stage=pii(), protect=protect)
    agent = create_agent(model, [], middleware=[middleware], checkpointer=InMemorySaver())
    config = thread()
    await invoke(agent, f"I am {ALICE}", config, use_async)
    await invoke(agent, f"cc {BOB} and {ALICE}", config, use_async)
    assert model.seen[1][-1].content == "cc <EMAIL_2> and <EMAIL_1>"  # same value, same pseudonym
    await invoke(agent, f"I am {BOB}", thread(), use_async)
    assert model.seen[2][-1].content == "I am <EMAIL_1>"  # numbered afresh in another thread
    vault = middleware.vault(config)
    assert isinstance(vault, Vault) and len(vault) == 2 and vault.restore("<EMAIL_2>") == BOB


@both
async def test_without_a_checkpointer_the_run_keeps_its_vault(
    protect: Protect, chat: Any, use_async: bool
) -> None:
    mail = Mail()
    model = chat(send("<EMAIL_1>"), "Wrote to <EMAIL_1>.")
    middleware = ProtectMiddleware(input_stage=pii(), protect=protect)
    agent = create_agent(model, mail.tools, middleware=[middleware])
    result = await invoke(agent, f"write to {ALICE}", None, use_async)
    assert mail.sent[0]["to"] == ALICE
    assert middleware.restore(result)["messages"][-1].content == f"Wrote to {ALICE}."
    assert (
        middleware.restore(result["messages"][-1:]) == result["messages"][-1:]
    )  # not the run's first message
    with pytest.raises(ValueError, match="thread_id"):
        middleware.restore("<EMAIL_1>")


@both
async def test_tool_results_and_answers_share_the_vault(protect: Protect, chat: Any, use_async: bool) -> None:
    """The tool's result is pseudonymised with the same numbers; an answer the model wrote with a
    real value is pseudonymised in the state and restored for the user."""
    mail = Mail(reply="sent to {to}, copy to " + BOB)
    model = chat(send("<EMAIL_1>"), f"Done, and {BOB} has a copy.")
    middleware = ProtectMiddleware(
        input_stage=pii(), output_stage=pii(), tool_result_stage=pii(), protect=protect
    )
    agent = create_agent(model, mail.tools, middleware=[middleware], checkpointer=InMemorySaver())
    config = thread()
    result = await invoke(agent, f"write to {ALICE}", config, use_async)
    [reply] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert reply.content == "sent to <EMAIL_1>, copy to <EMAIL_2>"
    assert result["messages"][-1].content == "Done, and <EMAIL_2> has a copy."
    assert middleware.restore(result, config)["messages"][-1].content == f"Done, and {BOB} has a copy."
    assert ALICE not in str(result) and BOB not in str(result)


async def test_events_show_pseudonyms_only(protect: Protect, chat: Any) -> None:
    mail = Mail()
    model = chat(send("<EMAIL_1>"), "I wrote to <EMAIL_1>.")
    middleware = ProtectMiddleware(input_stage=pii(), output_stage=pii(), protect=protect)
    agent = create_agent(model, mail.tools, middleware=[middleware], checkpointer=InMemorySaver())
    config = thread()
    value = {"messages": [HumanMessage(f"Email {ALICE}")]}
    events = [e async for e in agent.astream_events(value, config, version="v2")]
    assert mail.sent[0]["to"] == ALICE
    kinds = {e["event"] for e in events}
    assert {"on_tool_start", "on_tool_end", "on_chat_model_end", "on_custom_event"} <= kinds
    for event in events:
        assert "Vault" not in str(event)
        if event["event"] in ("on_tool_start", "on_tool_end", "on_chat_model_start", "on_chat_model_end"):
            assert ALICE not in str(event["data"]), event["event"]
    tool_start = next(e for e in events if e["event"] == "on_tool_start")
    assert tool_start["data"]["input"]["to"] == "<EMAIL_1>"
    root_end = next(e for e in reversed(events) if e["event"] == "on_chain_end" and not e["parent_ids"])
    assert ALICE not in str(root_end["data"]["output"])


def test_vaults_are_bounded(protect: Protect, chat: Any) -> None:
    middleware = ProtectMiddleware(input_stage=pii(), protect=protect, max_vaults=1)
    agent = create_agent(chat("a", "b"), [], middleware=[middleware], checkpointer=InMemorySaver())
    first, second = thread(), thread()
    agent.invoke({"messages": [HumanMessage(f"I am {ALICE}")]}, first)
    assert middleware.vault(first) is not None
    agent.invoke({"messages": [HumanMessage(f"I am {BOB}")]}, second)
    assert middleware.vault(first) is None and middleware.restore("<EMAIL_1>", first) == "<EMAIL_1>"
    assert middleware.restore("<EMAIL_1>", second) == BOB
    with pytest.raises(ValueError, match="max_vaults"):
        ProtectMiddleware(input_stage=pii(), protect=protect, vault_ttl=0)


# -- windowed streaming: the action's strategy, not always placeholders

PROMPT = ChatPromptTemplate.from_messages([("human", "{q}")])


@both
@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (
            "mask",
            "write to *****@*******.*** and to ***@*******.*** today, then tell *****@*******.*** again",
        ),
        ("pseudonym", "write to <EMAIL_1> and to <EMAIL_2> today, then tell <EMAIL_1> again"),
        ("placeholder", "write to <EMAIL> and to <EMAIL> today, then tell <EMAIL> again"),
    ],
)
async def test_windowed_stream_uses_the_strategy(
    protect: Protect, chat: Any, strategy: str, expected: str, use_async: bool
) -> None:
    text = f"write to {ALICE} and to {BOB} today, then tell {ALICE} again"
    guard = Guard(
        prioritized_rulesets=pii(strategy),
        field="output",
        protect=protect,
        streaming="window",
        window=20,
        check_every=5,
    )
    chain = PROMPT | chat(text) | StrOutputParser() | guard
    chunks = [c async for c in chain.astream({"q": "x"})] if use_async else list(chain.stream({"q": "x"}))
    assert len(chunks) > 2  # streamed in pieces, each redacted on its own
    assert "".join(chunks) == expected


# -- ProtectCallbackHandler: a GuardedRetriever's raw documents are not context


class Fixed(BaseRetriever):
    documents: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.documents)


def test_callback_context_skips_a_guarded_retrievers_unchecked_documents(
    protect: Protect, rules: Any, chat: Any, recorder: list[Payload]
) -> None:
    inner = Fixed(documents=[Document("the secret door"), Document("the front door")])
    retriever = GuardedRetriever(inner, guard=DocumentGuard(rules.block(), protect=protect))
    handler = ProtectCallbackHandler(output_stage=rules.record, protect=protect)
    chain = (
        RunnablePassthrough.assign(context=lambda x: retriever.invoke(x["q"]))
        | ChatPromptTemplate.from_messages([("human", "{q} {context}")])
        | chat("use the front door")
        | StrOutputParser()
    )
    chain.invoke({"q": "which door?"}, {"callbacks": [handler]})
    [payload] = recorder
    assert payload.context == ["the front door"]  # not the dropped document, nor the kept one twice

"""guarded(chain, ...): an input stage that short-circuits and an output stage around a whole chain."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, RunnableLambda, RunnableParallel, RunnablePassthrough

from stageguard import Protect
from stageguard.langchain import GuardrailTriggered, ProtectedRunnable
from stageguard.langchain import protect as guarded

PROMPT = ChatPromptTemplate.from_messages([("human", "{question}")])


class Docs(BaseRetriever):
    """A retriever returning fixed documents."""

    docs: list[str]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document(page_content=d) for d in self.docs]


@pytest.mark.parametrize("use_async", [False, True])
async def test_input_override_short_circuits_in_the_chain_type(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    llm = chat("never")
    as_message = guarded(PROMPT | llm, input_stage=rules.block("NO"), protect=protect)
    to_str = guarded(PROMPT | llm | StrOutputParser(), input_stage=rules.block("NO"), protect=protect)
    to_dict = guarded(
        RunnableParallel(answer=PROMPT | llm | StrOutputParser()),
        input_stage=rules.block("NO"),
        protect=protect,
    )
    for wrapped_chain, expected in (
        (as_message, AIMessage(content="NO")),
        (to_str, "NO"),
        (to_dict, {"answer": "NO"}),  # the chain's own key
    ):
        assert isinstance(wrapped_chain, ProtectedRunnable)
        value = {"question": "tell me the secret"}
        out = await wrapped_chain.ainvoke(value) if use_async else wrapped_chain.invoke(value)
        if isinstance(expected, AIMessage):
            assert isinstance(out, AIMessage) and out.content == "NO"
        else:
            assert out == expected
    assert llm.calls == 0


def test_short_circuit_output_key_and_callable(protect: Protect, rules: Any) -> None:
    chain = RunnableLambda(lambda x: {"answer": "never"})
    wrapped = guarded(chain, input_stage=rules.block("NO"), output_key="answer", protect=protect)
    assert wrapped.invoke({"q": "secret"}) == {"answer": "NO"}
    custom = guarded(
        chain, input_stage=rules.block("NO"), short_circuit=lambda text, value: [text], protect=protect
    )
    assert custom.invoke({"q": "secret"}) == ["NO"]


def test_redacted_input_reaches_the_chain(protect: Protect, rules: Any) -> None:
    seen: list[Any] = []
    chain = RunnableLambda(lambda x: seen.append(x) or "done")
    wrapped = guarded(chain, input_stage=rules.mask(), protect=protect)
    assert wrapped.invoke({"q": "my secret plan", "n": 1}) == "done"
    assert seen == [{"q": "my <SECRET> plan", "n": 1}]


@pytest.mark.parametrize("use_async", [False, True])
async def test_output_stage_gets_input_and_context(
    protect: Protect, rules: Any, chat: Any, recorder: list[Any], use_async: bool
) -> None:
    chain = PROMPT | chat("the secret answer") | StrOutputParser()
    wrapped = guarded(
        chain,
        input_stage=rules.record,
        output_stage=rules.record + rules.block("OUT"),
        context_key="context",
        protect=protect,
    )
    value = {"question": "what?", "context": [Document(page_content="doc one"), "doc two"]}
    out = await wrapped.ainvoke(value) if use_async else wrapped.invoke(value)
    assert out == "OUT"
    checked_input, checked_output = recorder
    assert checked_input.input == "what?" and checked_input.context == ["doc one", "doc two"]
    assert checked_output.input == "what?" and checked_output.output == "the secret answer"
    assert checked_output.context == ["doc one", "doc two"]


@pytest.mark.parametrize("use_async", [False, True])
async def test_context_captured_from_retrievers(
    protect: Protect, rules: Any, chat: Any, recorder: list[Any], use_async: bool
) -> None:
    retriever = Docs(docs=["Paris is in France.", "It rains."])
    rag = (
        RunnablePassthrough.assign(context=lambda x: retriever.invoke(x["question"]))
        | PROMPT
        | chat("Paris is in France.")
        | StrOutputParser()
    )
    wrapped = guarded(rag, output_stage=rules.record, capture_retrievers=True, protect=protect)
    value = {"question": "Where is Paris?"}
    out = await wrapped.ainvoke(value) if use_async else wrapped.invoke(value)
    assert out == "Paris is in France."
    [payload] = recorder
    assert payload.context == ["Paris is in France.", "It rains."]
    assert payload.input == "Where is Paris?"


def test_capture_is_automatic_when_the_stage_may_need_context(
    protect: Protect, chat: Any, metric: Any, recorder: list[Any]
) -> None:
    seen: list[Any] = []
    metric("lc_ctx", lambda p: seen.append(p.context) or 0.0, required_fields=["output", "context"])
    retriever = Docs(docs=["Paris is in France."])
    rag = RunnablePassthrough.assign(context=lambda x: retriever.invoke(x["question"])) | PROMPT
    inline = [{"rules": [{"metric": "lc_ctx", "operator": "gt", "target_value": 0.5}]}]
    guarded(rag | chat("Paris.") | StrOutputParser(), output_stage=inline, protect=protect).invoke(
        {"question": "q"}
    )
    assert seen == [["Paris is in France."]]
    protect.create_stage(
        "stored",
        stage_type="central",
        prioritized_rulesets=[{"rules": [{"metric": "lc_record", "operator": "gt", "target_value": 0.5}]}],
    )
    guarded(rag | chat("Paris.") | StrOutputParser(), output_stage="stored", protect=protect).invoke(
        {"question": "q"}
    )
    assert recorder[-1].context == ["Paris is in France."]
    recorder.clear()
    no_context_metric = guarded(
        rag | chat("Paris.") | StrOutputParser(),
        output_stage=[{"rules": [{"metric": "lc_record", "operator": "gt", "target_value": 0.5}]}],
        protect=protect,
    )
    assert isinstance(no_context_metric, ProtectedRunnable) and not no_context_metric.capture_retrievers


def test_context_adherence_builtin_on_retrieved_docs(protect: Protect, chat: Any, builtin: Any) -> None:
    builtin("rag")
    retriever = Docs(docs=["The Eiffel Tower is 330 metres tall and stands in Paris."])
    rag = RunnablePassthrough.assign(context=lambda x: retriever.invoke(x["question"])) | PROMPT
    rulesets = [
        {
            "rules": [{"metric": "context_adherence", "operator": "lt", "target_value": 0.5}],
            "action": {"type": "OVERRIDE", "choices": ["I can't answer that from the documents."]},
        }
    ]
    grounded = "The Eiffel Tower is 330 metres tall."
    made_up = "The Eiffel Tower was built by Napoleon in 1650 in Berlin and is 20 metres tall."
    chain = guarded(rag | chat(grounded, made_up) | StrOutputParser(), output_stage=rulesets, protect=protect)
    question = {"question": "How tall is the Eiffel Tower?"}
    assert chain.invoke(question) == grounded
    assert chain.invoke(question) == "I can't answer that from the documents."


def test_output_dict_keys_and_context_key(protect: Protect, rules: Any, recorder: list[Any]) -> None:
    chain = RunnableLambda(
        lambda x: {"answer": "a secret", "context": ["the doc"], "question": x["question"]}
    )
    wrapped = guarded(
        chain,
        output_stage=rules.record + rules.mask(),
        output_keys=["answer"],
        context_key="context",
        protect=protect,
    )
    out = wrapped.invoke({"question": "secret?"})
    assert out == {"answer": "a <SECRET>", "context": ["the doc"], "question": "secret?"}
    assert recorder[0].context == ["the doc"]


def test_raise_mode(protect: Protect, rules: Any, chat: Any) -> None:
    wrapped = guarded(PROMPT | chat("fine"), input_stage=rules.block(), on_trigger="raise", protect=protect)
    with pytest.raises(GuardrailTriggered):
        wrapped.invoke({"question": "secret"})


def test_needs_a_stage(chat: Any) -> None:
    with pytest.raises(ValueError, match="input_stage"):
        guarded(chat("x"))


@pytest.mark.parametrize("use_async", [False, True])
async def test_streaming_never_leaks(protect: Protect, rules: Any, chat: Any, use_async: bool) -> None:
    llm = chat("the secret is out", "a clean answer that streams")
    wrapped = guarded(
        PROMPT | llm, input_stage=rules.block("IN"), output_stage=rules.block("OUT"), protect=protect
    )

    async def collect(value: dict[str, str]) -> list[Any]:
        if use_async:
            return [c async for c in wrapped.astream(value)]
        return list(wrapped.stream(value))

    chunks = await collect({"question": "what?"})
    assert [c.content for c in chunks] == ["OUT"]
    chunks = await collect({"question": "a secret question"})
    assert len(chunks) == 1 and chunks[0].content == "IN" and isinstance(chunks[0], AIMessageChunk)
    assert llm.calls == 1
    chunks = await collect({"question": "what?"})
    assert len(chunks) > 1 and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(str(c.content) for c in chunks) == "a clean answer that streams"


def test_windowed_streaming_through_protect(protect: Protect, rules: Any, chat: Any) -> None:
    text = "first some harmless words and then the secret shows up at the end"
    wrapped = guarded(
        PROMPT | chat(text) | StrOutputParser(),
        output_stage=rules.block("[cut]"),
        streaming="window",
        window=16,
        protect=protect,
    )
    chunks = list(wrapped.stream({"question": "q"}))
    assert chunks[-1] == "[cut]" and len(chunks) > 1
    assert "secret" not in "".join(chunks[:-1])


def test_traces_show_both_guards(protect: Protect, rules: Any, chat: Any) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    names: list[str] = []

    class Names(BaseCallbackHandler):
        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            names.append(kwargs.get("name") or "")

    wrapped = guarded(
        PROMPT | chat("ok"), input_stage=rules.block(), output_stage=rules.block(), protect=protect
    )
    wrapped.invoke({"question": "q"}, {"callbacks": [Names()]})
    assert names[0].startswith("Protected[")
    assert "Guard[inline:input]" in names and "Guard[inline:output]" in names


# -- an input block keeps a dict chain's own keys


def test_short_circuit_keeps_a_parallel_chains_keys(protect: Protect, rules: Any, chat: Any) -> None:
    llm, retriever = chat("never"), Docs(docs=["a doc"])
    chain = RunnableParallel(
        answer=PROMPT | llm | StrOutputParser(),
        context=RunnableLambda(lambda x: x["question"]) | retriever,
    )
    wrapped = guarded(chain, input_stage=rules.block("NO"), protect=protect)
    result = wrapped.invoke({"question": "the secret?"})
    assert result["answer"] == "NO" and result == {"answer": "NO", "context": []}
    assert list(wrapped.stream({"question": "the secret?"})) == [{"answer": "NO", "context": []}]
    assert llm.calls == 0
    as_message = guarded(RunnableParallel(reply=PROMPT | llm), input_stage=rules.block("NO"), protect=protect)
    reply = as_message.invoke({"question": "secret"})["reply"]
    assert isinstance(reply, AIMessage) and reply.content == "NO"


@pytest.mark.parametrize("use_async", [False, True])
async def test_short_circuit_of_a_retrieval_chain(
    protect: Protect, rules: Any, chat: Any, use_async: bool
) -> None:
    """The shape ``create_retrieval_chain`` builds: the input keys, ``context`` and ``answer``."""
    llm, retriever = chat("never"), Docs(docs=["a doc"])
    prompt = ChatPromptTemplate.from_messages([("system", "{context}"), ("human", "{input}")])
    chain = (
        RunnablePassthrough.assign(context=RunnableLambda(lambda x: x["input"]) | retriever)
        .assign(answer=prompt | llm | StrOutputParser())
        .with_config(run_name="retrieval_chain")
    )
    wrapped = guarded(chain, input_stage=rules.block("NO"), protect=protect)
    value = {"input": "the secret?", "chat_history": []}
    result = await wrapped.ainvoke(value) if use_async else wrapped.invoke(value)
    assert result == {"input": "the secret?", "chat_history": [], "context": [], "answer": "NO"}
    assert llm.calls == 0


def test_short_circuit_answer_keys_from_output_keys(protect: Protect, rules: Any) -> None:
    chain = RunnableLambda(lambda x: {"answer": "never", "sources": []})
    wrapped = guarded(
        chain,
        input_stage=rules.block("NO"),
        output_stage=rules.note(),
        output_keys=["answer"],
        protect=protect,
    )
    assert wrapped.invoke({"q": "secret"}) == {"answer": "NO"}
    unknown = guarded(
        RunnableParallel(docs=RunnableLambda(lambda x: [])), input_stage=rules.block("NO"), protect=protect
    )
    # no text key: the fallback key; a value of unknown type: None
    assert unknown.invoke({"q": "secret"}) == {"docs": None, "output": "NO"}


def test_retrievers_are_captured_only_while_the_stage_reads_context(
    protect: Protect, chat: Any, recorder: list[Any]
) -> None:
    """Collecting retrieved documents makes LangChain dispatch every inner step's events: a stage that
    doesn't read ``context`` (a text metric) doesn't pay for it; a new version that does, gets them."""
    handlers: list[list[str]] = []

    def look(value: Any, config: RunnableConfig) -> Any:
        callbacks = config.get("callbacks")
        handlers.append([type(h).__name__ for h in getattr(callbacks, "handlers", None) or []])
        return value

    retriever = Docs(docs=["Paris is in France."])
    rag = RunnablePassthrough.assign(context=lambda x: retriever.invoke(x["question"])) | RunnableLambda(look)
    text_only = [{"rules": [{"metric": "output_toxicity", "operator": "gt", "target_value": 0.99}]}]
    protect.create_stage("stored", stage_type="central", prioritized_rulesets=text_only)
    wrapped = guarded(rag | PROMPT | chat("Paris.", "Paris."), output_stage="stored", protect=protect)
    assert isinstance(wrapped, ProtectedRunnable) and wrapped.capture_retrievers  # a stored stage may change
    wrapped.invoke({"question": "q"})
    assert "_ContextCollector" not in handlers[-1]
    reads_all = [{"rules": [{"metric": "lc_record", "operator": "gt", "target_value": 0.5}]}]
    protect.update_stage("stored", prioritized_rulesets=reads_all)
    wrapped.invoke({"question": "q"})
    assert "_ContextCollector" in handlers[-1]
    assert recorder[-1].context == ["Paris is in France."]

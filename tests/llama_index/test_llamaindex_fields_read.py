"""LlamaIndex guards build only the payload parts the stage's scorers read (``Protect.fields_read``)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import ChatMessage

from stageguard.llama_index import GuardedChatEngine, GuardedQueryEngine

QUESTION = "What is the capital of France?"


def stage(metric: str, target: float = 0.99) -> list[dict[str, Any]]:
    return [{"rules": [{"metric": metric, "operator": "gt", "target_value": target}]}]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_query_engine_gathers_no_node_text_for_a_text_metric(
    spy_protect: Any, index: Any, echo_llm: Any, use_async: bool
) -> None:
    spy = spy_protect()
    guarded = GuardedQueryEngine(
        index.as_query_engine(llm=echo_llm), output_stage=stage("output_toxicity"), protect=spy
    )
    result = await guarded.aquery(QUESTION) if use_async else guarded.query(QUESTION)
    assert result.source_nodes  # the engine did retrieve
    (checked,) = spy.payloads
    assert checked.context is None and checked.input == QUESTION


def test_query_engine_sends_the_nodes_to_a_metric_that_reads_them(
    spy_protect: Any, index: Any, echo_llm: Any
) -> None:
    spy = spy_protect()
    guarded = GuardedQueryEngine(
        index.as_query_engine(llm=echo_llm), output_stage=stage("context_adherence", 1.0), protect=spy
    )
    result = guarded.query(QUESTION)
    (checked,) = spy.payloads
    assert checked.context == [node.node.get_content() for node in result.source_nodes]


def test_chat_engine_leaves_out_the_history_a_text_metric_does_not_read(
    spy_protect: Any, echo_llm: Any
) -> None:
    history = [ChatMessage(role="user", content="Hi"), ChatMessage(role="assistant", content="Hello!")]
    for metric, with_history in (("prompt_injection", False), ("action_completion", True)):
        spy = spy_protect()
        guarded = GuardedChatEngine(
            SimpleChatEngine.from_defaults(llm=echo_llm), input_stage=stage(metric), protect=spy
        )
        guarded.chat(QUESTION, chat_history=history)
        checked = spy.payloads[0]
        assert checked.input == QUESTION
        assert (checked.messages is not None) is with_history


def test_event_handler_leaves_out_what_the_stage_does_not_read(
    spy_protect: Any, index: Any, echo_llm: Any
) -> None:
    from llama_index.core.instrumentation import get_dispatcher

    from stageguard.llama_index import ProtectEventHandler

    for metric, reads_all in (("output_toxicity", False), ("action_completion", True)):
        spy = spy_protect()
        handler = ProtectEventHandler(
            output_stage=stage(metric), llm_stage=stage(metric), protect=spy
        ).attach()
        try:
            index.as_query_engine(llm=echo_llm).query(QUESTION)
            echo_llm.chat(
                [ChatMessage(role="user", content="Hi"), ChatMessage(role="user", content=QUESTION)]
            )
        finally:
            get_dispatcher().event_handlers.remove(handler)
            handler.close()
        payloads = spy.payloads
        assert any(p.input == QUESTION and p.output for p in payloads)  # the query's answer, the chat's
        assert any(p.context for p in payloads) is reads_all
        assert any(p.messages for p in payloads) is reads_all

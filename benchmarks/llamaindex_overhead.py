"""What a LlamaIndex guard adds: guarded engines, tools and agents against the same ones unguarded.

Mock models (``MockLLM``, ``MockFunctionCallingLLM``, ``MockEmbedding``) over a real ``VectorStoreIndex``.
The stage is a stored central stage over a constant custom metric, so scorer time is near zero and what is
left is the adapter (objects <-> payload, action back, decision event) plus ``Protect.invoke``.
Times are CPU time of the calling thread (``--wall`` for wall time); plain and guarded calls are
interleaved and the added time is the median of paired differences, divided by the guard checks per call.
Target (issue 17): at most 100 µs added per guard beyond scorer time.
Run: python benchmarks/llamaindex_overhead.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _stats import percentiles
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.agent.workflow.agent_context import SimpleAgentContext
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import ChatMessage, MockLLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.tools import FunctionTool

from stageguard import Payload, Protect, Response, SQLiteStageStore, register_metric
from stageguard.llama_index import (
    AgentGuard,
    GuardedChatEngine,
    GuardedFunctionTool,
    GuardedQueryEngine,
    GuardNodePostprocessor,
)

REPEAT = 1000
TARGET = 100e-6  # seconds per guard beyond scorer time (issue 17)
# CPU time of the calling thread: other load on a shared machine barely moves it (everything a guard
# does runs on the caller's thread). ``--wall`` measures wall time instead.
CLOCK: Callable[[], float] = time.perf_counter if "--wall" in sys.argv else time.thread_time
QUESTION = "What is the capital of France?"
DOCS = [
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "Madrid is the capital of Spain.",
    "Rome is the capital of Italy.",
]


def sample(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = CLOCK()
        fn()
        samples.append(CLOCK() - start)
    return samples


def pairs(
    plain: Callable[[], object], guarded: Callable[[], object], n: int
) -> tuple[list[float], list[float]]:
    """Plain and guarded calls interleaved (order alternating), so load spikes hit both sides alike."""
    a: list[float] = []
    b: list[float] = []
    for i in range(n):
        for fn, out in ((plain, a), (guarded, b)) if i % 2 else ((guarded, b), (plain, a)):
            start = CLOCK()
            fn()
            out.append(CLOCK() - start)
    return a, b


def apairs(
    plain: Callable[[], Awaitable[object]], guarded: Callable[[], Awaitable[object]], n: int
) -> tuple[list[float], list[float]]:
    async def go() -> tuple[list[float], list[float]]:
        a: list[float] = []
        b: list[float] = []
        for i in range(n):
            for fn, out in ((plain, a), (guarded, b)) if i % 2 else ((guarded, b), (plain, a)):
                start = CLOCK()
                await fn()
                out.append(CLOCK() - start)
        return a, b

    return asyncio.run(go())


def compare(
    plain: Callable[[], Any], guarded: Callable[[], Any], sampler: Callable[..., Any], n: int
) -> tuple[list[float], list[float]]:
    sampler(plain, guarded, 20)  # warm up
    result: tuple[list[float], list[float]] = sampler(plain, guarded, n)
    return result


def row(label: str, plain: list[float], guarded: list[float], guards: int, floor: float) -> dict[str, Any]:
    """Medians, and the added time as the median of paired differences (robust on a busy machine)."""
    p50_plain, p50_guarded = statistics.median(plain), statistics.median(guarded)
    added = statistics.median(g - p for p, g in zip(plain, guarded, strict=True)) / guards
    _, p99 = percentiles(guarded)
    return {
        "label": label,
        "plain": p50_plain,
        "guarded": p50_guarded,
        "p99": p99,
        "ratio": p50_guarded / p50_plain,
        "guards": guards,
        "added": added,
        "beyond": added - floor,
    }


class StubProtect(Protect):
    """Answers every invoke with one precomputed decision: isolates the adapter from the core."""

    def __init__(self, real: Protect) -> None:
        super().__init__(real.store)
        self._answer = real.invoke(Payload(input=QUESTION), stage_name="bench")

    def invoke(self, *args: Any, **kwargs: Any) -> Response:
        return self._answer

    async def ainvoke(self, *args: Any, **kwargs: Any) -> Response:
        return self._answer


def main() -> None:
    register_metric("bench_li", lambda _p: 0.1, replace=True)
    sg = Protect(SQLiteStageStore(":memory:"))
    rulesets = [
        {
            "rules": [{"metric": "bench_li", "operator": "gt", "target_value": 0.5}],
            "action": {"type": "OVERRIDE", "choices": ["no"]},
        }
    ]
    sg.create_stage("bench", stage_type="central", prioritized_rulesets=rulesets)
    response = sg.invoke(Payload(input=QUESTION), stage_name="bench")
    scorer = sum(m.execution_time or 0.0 for m in response.metric_results.values())
    invoke_alone = statistics.median(
        sample(lambda: sg.invoke(Payload(input=QUESTION), stage_name="bench"), REPEAT)
    )

    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS], embed_model=MockEmbedding(embed_dim=8)
    )
    llm = MockLLM(max_tokens=12)
    plain_qe = index.as_query_engine(llm=llm)
    guarded_qe = GuardedQueryEngine(index.as_query_engine(llm=llm), "bench", protect=sg)
    inline_qe = GuardedQueryEngine(index.as_query_engine(llm=llm), rulesets, protect=sg)
    stub_qe = GuardedQueryEngine(index.as_query_engine(llm=llm), "bench", protect=StubProtect(sg))
    plain_stream = index.as_query_engine(llm=llm, streaming=True)
    guarded_stream = GuardedQueryEngine(index.as_query_engine(llm=llm, streaming=True), "bench", protect=sg)
    assert str(guarded_qe.query(QUESTION)) == str(plain_qe.query(QUESTION))

    print(
        f"Protect.invoke alone, hot loop (stage by name): {invoke_alone * 1e6:.1f} µs; "
        f"scorer time {scorer * 1e6:.1f} µs"
    )
    print(f"{'':44} {'plain':>10} {'guarded':>10} {'p99':>10} {'ratio':>6} {'µs/guard':>9} {'- scorer':>9}")
    rows: list[dict[str, Any]] = []

    def add(r: dict[str, Any]) -> None:
        rows.append(r)
        print(
            f"{r['label']:44} {r['plain'] * 1e6:8.1f}µs {r['guarded'] * 1e6:8.1f}µs {r['p99'] * 1e6:8.1f}µs "
            f"{r['ratio']:6.2f} {r['added'] * 1e6:7.1f}µs {r['beyond'] * 1e6:7.1f}µs",
            flush=True,
        )

    a, b = compare(lambda: plain_qe.query(QUESTION), lambda: guarded_qe.query(QUESTION), pairs, REPEAT)
    add(row("GuardedQueryEngine query (in+out, by name)", a, b, 2, scorer))
    a, b = compare(lambda: plain_qe.query(QUESTION), lambda: inline_qe.query(QUESTION), pairs, REPEAT)
    add(row("GuardedQueryEngine query (inline rulesets)", a, b, 2, scorer))
    a, b = compare(lambda: plain_qe.query(QUESTION), lambda: stub_qe.query(QUESTION), pairs, REPEAT)
    add(row("GuardedQueryEngine query, adapter only (stub)", a, b, 2, 0.0))
    a, b = compare(lambda: plain_qe.aquery(QUESTION), lambda: guarded_qe.aquery(QUESTION), apairs, REPEAT)
    add(row("GuardedQueryEngine aquery", a, b, 2, scorer))
    a, b = compare(
        lambda: list(plain_stream.query(QUESTION).response_gen),  # type: ignore[union-attr]
        lambda: list(guarded_stream.query(QUESTION).response_gen),  # type: ignore[union-attr]
        pairs,
        REPEAT // 2,
    )
    add(row("GuardedQueryEngine stream (buffered)", a, b, 2, scorer))

    nodes = [NodeWithScore(node=TextNode(text=t), score=1.0) for t in DOCS]
    post = GuardNodePostprocessor("bench", protect=sg)
    a, b = compare(
        lambda: list(nodes), lambda: post.postprocess_nodes(nodes, query_str=QUESTION), pairs, REPEAT
    )
    add(row(f"GuardNodePostprocessor ({len(nodes)} nodes)", a, b, len(nodes), scorer))

    plain_chat = SimpleChatEngine.from_defaults(
        llm=llm, memory=ChatMemoryBuffer.from_defaults(token_limit=200)
    )
    guarded_chat = GuardedChatEngine(
        SimpleChatEngine.from_defaults(llm=llm, memory=ChatMemoryBuffer.from_defaults(token_limit=200)),
        "bench",
        protect=sg,
    )
    # Reset before each turn: a growing history would make later turns slower for both sides.
    a, b = compare(
        lambda: (plain_chat.reset(), plain_chat.chat(QUESTION)),
        lambda: (guarded_chat.reset(), guarded_chat.chat(QUESTION)),
        pairs,
        REPEAT,
    )
    add(row("GuardedChatEngine chat (in+out)", a, b, 2, scorer))

    def capital(country: str) -> str:
        """The capital of a country."""
        return "Paris"

    plain_tool = FunctionTool.from_defaults(capital)
    guarded_tool = GuardedFunctionTool(FunctionTool.from_defaults(capital), "bench", protect=sg)
    a, b = compare(
        lambda: plain_tool.call(country="France"), lambda: guarded_tool.call(country="France"), pairs, REPEAT
    )
    add(row("GuardedFunctionTool call (args+result)", a, b, 2, scorer))

    def answer(messages: Any, **kwargs: Any) -> ChatMessage:
        return ChatMessage(role="assistant", content="Paris.")

    def agent(guard: AgentGuard | None) -> FunctionAgent:
        made = FunctionAgent(
            llm=MockFunctionCallingLLM(response_generator=answer), tools=[plain_tool], streaming=False
        )
        return guard.wrap(made) if guard is not None else made

    plain_agent, guarded_agent = agent(None), agent(AgentGuard("bench", protect=sg))

    async def run(which: FunctionAgent) -> object:
        return await which.run(user_msg=QUESTION)

    a, b = compare(lambda: run(plain_agent), lambda: run(guarded_agent), apairs, REPEAT // 5)
    add(row("FunctionAgent run + AgentGuard (input+step)", a, b, 2, scorer))  # runtime noise dominates

    # The same step without the workflow runtime around it (whose scheduling dominates a run's timing).
    memory = ChatMemoryBuffer.from_defaults(token_limit=200)
    llm_input = [ChatMessage(role="user", content=QUESTION)]

    def step(which: FunctionAgent) -> Callable[[], Awaitable[object]]:
        ctx = SimpleAgentContext()

        async def go() -> object:
            await ctx.store.set("scratchpad", [])
            await ctx.store.set("user_msg_str", QUESTION)
            return await which.take_step(ctx, llm_input, [], memory)

        return go

    a, b = compare(step(plain_agent), step(guarded_agent), apairs, REPEAT)
    add(row("FunctionAgent.take_step + AgentGuard", a, b, 2, scorer))

    worst = max(r["beyond"] for r in rows)
    verdict = "OK" if worst <= TARGET else "OVER"
    print(
        f"\nworst added per guard beyond scorer time: {worst * 1e6:.1f} µs "
        f"(target <= {TARGET * 1e6:.0f} µs): {verdict}"
    )
    over = [f"{r['label']} ({r['beyond'] * 1e6:.0f})" for r in rows if r["beyond"] > TARGET]
    print(f"over the target: {', '.join(over) or 'none'}")
    adapter = next(r for r in rows if "stub" in r["label"])["added"]
    print(
        f"adapter alone (a Protect that answers at once; wrapper engine, payloads, mapping): "
        f"{adapter * 1e6:.1f} µs per guard; the rest is Protect.invoke in a cold cache"
    )


if __name__ == "__main__":
    main()

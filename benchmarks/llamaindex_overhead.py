"""What a LlamaIndex guard adds: guarded engines, tools and agents against the same ones unguarded.

Mock models (``MockLLM``, ``MockFunctionCallingLLM``, ``MockEmbedding``) over a real ``VectorStoreIndex``.
The stage is a stored central stage over a constant custom metric, so scorer time is near zero and what is
left is the adapter (objects <-> payload, action back, decision event) plus ``Protect.invoke``.
Times are CPU time of the calling thread (``--wall`` for wall time); plain and guarded calls are
interleaved and the added time is the median of paired differences, divided by the guard checks per call.
Target (issue 17): at most 100 µs added per guard beyond scorer time.
Run: python benchmarks/llamaindex_overhead.py [--text-metric] [--wall]

``--text-metric``: the constant metric declares ``fields_read=["input", "output"]``, as the built-in text
metrics do, so the guards gather no node text, history or tool specs; without it, it may read anything
(a custom metric's default) and they build everything.

The framework's floor: LlamaIndex charges any wrapper engine, postprocessor or tool its instrumentation
(dispatcher spans, and events for queries) whatever it does. So each case also runs, in the same
interleaved rounds, a no-op of the same kind built on the framework's base class in the guard's place
(the ``NoOp*`` classes below; for the agent a ``FunctionAgent`` subclass, the way ``AgentGuard`` hooks
in), and the table shows what the no-op adds per guard check and what the guard adds beyond it: the
adapter plus ``Protect.invoke`` (scorer time included) beyond what LlamaIndex charges any component of
that kind. The second verdict holds that to the same 100 µs.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _stats import ain_turns, in_turns, percentiles, print_verdict
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent
from llama_index.core.agent.workflow.agent_context import AgentContext, SimpleAgentContext
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import RESPONSE_TYPE, StreamingResponse
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.chat_engine.types import (
    AGENT_CHAT_RESPONSE_TYPE,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import ChatMessage, MockLLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.memory import BaseMemory, ChatMemoryBuffer
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.tools import AsyncBaseTool, FunctionTool, ToolOutput
from llama_index.core.workflow import Context

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


Calls = Sequence[Callable[[], Any]]  # plain, no-op, guarded
Runs = tuple[list[float], ...]  # their times, round by round, in the same order


def _clocked(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


async def _aclocked(fn: Callable[[], Awaitable[object]]) -> float:
    start = CLOCK()
    await fn()
    return CLOCK() - start


def rounds(calls: Calls, n: int) -> Runs:
    return in_turns(calls, n, _clocked)


def arounds(calls: Calls, n: int) -> Runs:
    return asyncio.run(ain_turns(calls, n, _aclocked))


def compare(calls: Calls, sampler: Callable[[Calls, int], Runs], n: int) -> Runs:
    sampler(calls, 20)  # warm up
    return sampler(calls, n)


def row(label: str, kind: str, runs: Runs, guards: int, floor: float) -> dict[str, Any]:
    """Medians, and the added time as the median of paired differences (robust on a busy machine)."""
    plain, noop, guarded = runs

    def added(than: list[float], this: list[float]) -> float:
        return statistics.median(b - a for a, b in zip(than, this, strict=True)) / guards

    p50_plain, p50_guarded = statistics.median(plain), statistics.median(guarded)
    _, p99 = percentiles(guarded)
    return {
        "label": label,
        "kind": kind,
        "plain": p50_plain,
        "guarded": p50_guarded,
        "p99": p99,
        "ratio": p50_guarded / p50_plain,
        "guards": guards,
        "added": added(plain, guarded),
        "beyond": added(plain, guarded) - floor,
        "noop": added(plain, noop),  # what the framework charges a component doing nothing
        "beyond_noop": added(noop, guarded),  # adapter + Protect.invoke beyond that
    }


# -- the framework's floor: components of each kind that only hand on to the real one


class NoOpQueryEngine(BaseQueryEngine):
    """A query engine around another that only delegates, as ``GuardedQueryEngine`` wraps one:
    what LlamaIndex charges any wrapper engine (``query``'s span and events, and the span the base class
    puts on ``_query``)."""

    def __init__(self, engine: BaseQueryEngine) -> None:
        self._engine = engine
        super().__init__(engine.callback_manager)

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {"inner": self._engine}

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return self._engine.query(query_bundle)

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return await self._engine.aquery(query_bundle)


class NoOpPostprocessor(BaseNodePostprocessor):
    """A node postprocessor that returns the nodes it gets (``postprocess_nodes``'s span)."""

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return nodes


class NoOpChatEngine(BaseChatEngine):
    """A chat engine around another that only delegates, as ``GuardedChatEngine`` wraps one (the spans
    the base class puts on each method)."""

    def __init__(self, engine: BaseChatEngine) -> None:
        self._engine = engine

    def reset(self) -> None:
        self._engine.reset()

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AGENT_CHAT_RESPONSE_TYPE:
        return self._engine.chat(message, chat_history)

    def stream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        return self._engine.stream_chat(message, chat_history)

    async def achat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> AGENT_CHAT_RESPONSE_TYPE:
        return await self._engine.achat(message, chat_history)

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        return await self._engine.astream_chat(message, chat_history)

    @property
    def chat_history(self) -> list[ChatMessage]:
        return self._engine.chat_history


class NoOpTool(FunctionTool):
    """A tool around another that only calls it, built as ``GuardedFunctionTool`` is (a ``FunctionTool``
    whose ``call``/``acall`` hand on to the inner tool): the spans LlamaIndex puts on the wrapper's
    ``call`` and on the inner tool's ``__call__``. A ``FunctionTool`` over a function that calls the tool
    would be a dearer floor (~10 µs here): it also runs ``FunctionTool.call``'s own work (arguments,
    output blocks, a second ``ToolOutput``), which the guarded tool does not."""

    def __init__(self, tool: FunctionTool) -> None:
        self._inner = tool
        super().__init__(fn=tool.real_fn, metadata=tool.metadata)

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        return self._inner(*args, **kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        return await self._inner.acall(*args, **kwargs)


class NoOpFunctionAgent(FunctionAgent):
    """A ``FunctionAgent`` overriding what ``AgentGuard``'s agent class overrides, each only calling the
    base. LlamaIndex's workflow agents have no hook or middleware of their own: a subclass is how
    anything hooks in, and the framework charges next to nothing for it, so this floor is about zero."""

    async def take_step(
        self,
        ctx: AgentContext,
        llm_input: list[ChatMessage],
        tools: Sequence[AsyncBaseTool],
        memory: BaseMemory,
    ) -> AgentOutput:
        return await super().take_step(ctx, llm_input, tools, memory)

    async def _get_streaming_response(self, ctx: AgentContext, *args: Any, **kwargs: Any) -> Any:
        return await super()._get_streaming_response(ctx, *args, **kwargs)

    async def _call_tool(self, ctx: Context, tool: AsyncBaseTool, tool_input: dict[str, Any]) -> ToolOutput:
        return await super()._call_tool(ctx, tool, tool_input)

    async def finalize(self, ctx: Context, output: AgentOutput, memory: BaseMemory) -> AgentOutput:
        return await super().finalize(ctx, output, memory)


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
    # ``--text-metric``: the stand-in says it reads only the text, as the built-in text metrics do, so the
    # adapters leave out the conversation, tools and context (Protect.fields_read); by default it may read
    # anything, as a custom metric does
    reads = {"fields_read": ["input", "output"]} if "--text-metric" in sys.argv else {}
    register_metric("bench_li", lambda _p: 0.1, replace=True, **reads)
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
    noop_qe = NoOpQueryEngine(index.as_query_engine(llm=llm))
    guarded_qe = GuardedQueryEngine(index.as_query_engine(llm=llm), "bench", protect=sg)
    inline_qe = GuardedQueryEngine(index.as_query_engine(llm=llm), rulesets, protect=sg)
    stub_qe = GuardedQueryEngine(index.as_query_engine(llm=llm), "bench", protect=StubProtect(sg))
    plain_stream = index.as_query_engine(llm=llm, streaming=True)
    noop_stream = NoOpQueryEngine(index.as_query_engine(llm=llm, streaming=True))
    guarded_stream = GuardedQueryEngine(index.as_query_engine(llm=llm, streaming=True), "bench", protect=sg)
    assert str(guarded_qe.query(QUESTION)) == str(noop_qe.query(QUESTION)) == str(plain_qe.query(QUESTION))

    print(
        f"Protect.invoke alone, hot loop (stage by name): {invoke_alone * 1e6:.1f} µs; "
        f"scorer time {scorer * 1e6:.1f} µs"
    )
    print("framework floor: a no-op of the guard's kind in its place (NoOp* classes); per guard check")
    head = f"{'':44} {'plain':>10} {'guarded':>10} {'p99':>10} {'ratio':>6} {'µs/guard':>9} {'- scorer':>9}"
    print(f"{head} {'no-op/guard':>12} {'- no-op':>9}")
    rows: list[dict[str, Any]] = []

    def add(r: dict[str, Any]) -> None:
        rows.append(r)
        print(
            f"{r['label']:44} {r['plain'] * 1e6:8.1f}µs {r['guarded'] * 1e6:8.1f}µs {r['p99'] * 1e6:8.1f}µs "
            f"{r['ratio']:6.2f} {r['added'] * 1e6:7.1f}µs {r['beyond'] * 1e6:7.1f}µs "
            f"{r['noop'] * 1e6:10.1f}µs {r['beyond_noop'] * 1e6:7.1f}µs",
            flush=True,
        )

    def query(engine: BaseQueryEngine) -> Any:
        return engine.query(QUESTION)

    def aquery(engine: BaseQueryEngine) -> Awaitable[Any]:
        return engine.aquery(QUESTION)

    def each(call: Callable[[Any], Any], *targets: Any) -> Calls:
        """The same call on each target: plain, no-op, guarded."""
        return [partial(call, target) for target in targets]

    engine = "BaseQueryEngine"
    runs = compare(each(query, plain_qe, noop_qe, guarded_qe), rounds, REPEAT)
    add(row("GuardedQueryEngine query (in+out, by name)", engine, runs, 2, scorer))
    runs = compare(each(query, plain_qe, noop_qe, inline_qe), rounds, REPEAT)
    add(row("GuardedQueryEngine query (inline rulesets)", engine, runs, 2, scorer))
    runs = compare(each(query, plain_qe, noop_qe, stub_qe), rounds, REPEAT)
    add(row("GuardedQueryEngine query, adapter only (stub)", engine, runs, 2, 0.0))
    runs = compare(each(aquery, plain_qe, noop_qe, guarded_qe), arounds, REPEAT)
    add(row("GuardedQueryEngine aquery", engine, runs, 2, scorer))

    def stream(engine: BaseQueryEngine) -> list[str]:
        response = engine.query(QUESTION)
        assert isinstance(response, StreamingResponse)
        return list(response.response_gen)

    runs = compare(each(stream, plain_stream, noop_stream, guarded_stream), rounds, REPEAT // 2)
    add(row("GuardedQueryEngine stream (buffered)", engine, runs, 2, scorer))

    nodes = [NodeWithScore(node=TextNode(text=t), score=1.0) for t in DOCS]
    noop_post = NoOpPostprocessor()
    post = GuardNodePostprocessor("bench", protect=sg)
    calls = [
        lambda: list(nodes),
        lambda: noop_post.postprocess_nodes(nodes, query_str=QUESTION),
        lambda: post.postprocess_nodes(nodes, query_str=QUESTION),
    ]
    runs = compare(calls, rounds, REPEAT)
    label = f"GuardNodePostprocessor ({len(nodes)} nodes)"
    add(row(label, "BaseNodePostprocessor", runs, len(nodes), scorer))

    def chat_engine() -> SimpleChatEngine:
        return SimpleChatEngine.from_defaults(llm=llm, memory=ChatMemoryBuffer.from_defaults(token_limit=200))

    def chat(engine: BaseChatEngine) -> object:
        engine.reset()  # before each turn: a growing history would make later turns slower for all
        return engine.chat(QUESTION)

    noop_chat = NoOpChatEngine(chat_engine())
    guarded_chat = GuardedChatEngine(chat_engine(), "bench", protect=sg)
    runs = compare(each(chat, chat_engine(), noop_chat, guarded_chat), rounds, REPEAT)
    add(row("GuardedChatEngine chat (in+out)", "BaseChatEngine", runs, 2, scorer))

    def capital(country: str) -> str:
        """The capital of a country."""
        return "Paris"

    plain_tool = FunctionTool.from_defaults(capital)
    noop_tool = NoOpTool(FunctionTool.from_defaults(capital))
    guarded_tool = GuardedFunctionTool(FunctionTool.from_defaults(capital), "bench", protect=sg)

    def call(tool: FunctionTool) -> ToolOutput:
        return tool.call(country="France")

    runs = compare(each(call, plain_tool, noop_tool, guarded_tool), rounds, REPEAT)
    add(row("GuardedFunctionTool call (args+result)", "FunctionTool", runs, 2, scorer))

    def answer(messages: Any, **kwargs: Any) -> ChatMessage:
        return ChatMessage(role="assistant", content="Paris.")

    def agent(kind: type[FunctionAgent] = FunctionAgent) -> FunctionAgent:
        return kind(
            llm=MockFunctionCallingLLM(response_generator=answer), tools=[plain_tool], streaming=False
        )

    agents = agent(), agent(NoOpFunctionAgent), AgentGuard("bench", protect=sg).wrap(agent())
    subclass = "FunctionAgent subclass"

    async def run(which: FunctionAgent) -> object:
        return await which.run(user_msg=QUESTION)

    runs = compare(each(run, *agents), arounds, REPEAT // 5)  # the workflow runtime's noise dominates
    add(row("FunctionAgent run + AgentGuard (input+step)", subclass, runs, 2, scorer))

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

    runs = compare([step(which) for which in agents], arounds, REPEAT)
    add(row("FunctionAgent.take_step + AgentGuard", subclass, runs, 2, scorer))

    print()
    print_verdict(rows, "beyond", TARGET, "scorer time")
    kind = max(rows, key=lambda r: r["beyond_noop"])["kind"]
    print_verdict(rows, "beyond_noop", TARGET, f"the framework's own no-op {kind} (scorer time included)")
    adapter = next(r for r in rows if "stub" in r["label"])["added"]
    print(
        f"adapter alone (a Protect that answers at once; wrapper engine, payloads, mapping): "
        f"{adapter * 1e6:.1f} µs per guard; the rest is Protect.invoke in a cold cache"
    )


if __name__ == "__main__":
    main()

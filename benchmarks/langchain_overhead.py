"""What a LangChain guard adds: a guarded chain against the same chain unguarded, with a fake model.

The stage is a stored central stage over a constant custom metric, so scorer time is near zero and what
is left is the adapter (value <-> payload, traced run, custom event) plus ``Protect.invoke``.
Target (issue 17): at most 100 µs added per guard beyond scorer time.
Run: python benchmarks/langchain_overhead.py [--text-metric]

``--text-metric``: the constant metric declares ``fields_read=["input", "output"]``, as the built-in text
metrics do, so the adapters leave the conversation, tools and context out of the payload; without it, it
may read anything (a custom metric's default) and they build everything.

Both the wall time and the CPU time of the calling thread are measured, plain and guarded calls
alternating. On a shared machine the wall-time p50 moves with the load while the CPU time barely does, so
the verdict uses the CPU time. (Work a framework hands to other threads, like the fake model under
``ainvoke``, is in neither side's CPU time.)

The framework's floor: LangChain charges every step of a chain, whatever the step does, and every
middleware of an agent. So each case also runs, in the same interleaved rounds, the plain pipeline with
a no-op of the same kind in the guard's place: a ``NoOpStep`` after the chain for ``chain | Guard`` and
``protect(chain, output_stage)``, one before and one after it for ``protect(chain, input + output)``
(one per guard), and a ``NoOpMiddleware`` for the agent. The table shows what the no-op adds per guard,
and what the guard adds beyond it: the adapter plus ``Protect.invoke`` (scorer time included) beyond
what the framework charges any component of that kind. The second verdict holds that to the same
100 µs. ``--floor=traced`` or ``--floor=lambda`` use a dearer no-op step (see ``NoOpStep``).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _stats import ain_turns, in_turns, percentiles, print_verdict
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.callbacks import BaseCallbackManager
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from stageguard import Payload, Protect, SQLiteStageStore, register_metric
from stageguard.langchain import Guard, ProtectMiddleware, protect

REPEAT = 3000
WARMUP = 100
TARGET = 100e-6  # seconds of CPU time per guard beyond scorer time (issue 17)
ANSWER = "Paris is the capital of France. It has been for a long time."

Sample = tuple[float, float]  # (wall, cpu) seconds


def fake_model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.cycle([AIMessage(content=ANSWER)]))


# -- the framework's floor: components that do nothing


def _same(value: Any) -> Any:
    return value


async def _asame(value: Any) -> Any:
    return value


def _passing(chunks: Iterator[Any]) -> Iterator[Any]:
    yield from chunks


class NoOpStep(Runnable[Any, Any]):
    """A chain step that returns its input: what LangChain charges any step, whatever it does.

    Like ``Guard``, it opens a run of its own (``_call_with_config`` and friends: callbacks, a traced run)
    only when some callback handler listens, and otherwise just returns. What is left is the sequence's
    own work per step (a child callback manager, a patched config, a context copy, under ``ainvoke`` an
    asyncio task), the cheapest a well-behaved step can cost, so the most demanding floor. With
    ``traced=True`` it always opens its run, as a step that ignores who listens does (``--floor=traced``);
    ``RunnableLambda(identity)`` (``--floor=lambda``) costs more still. Beside either of those the guard
    would look cheaper than it is, since it skips that run when nobody listens.
    """

    def __init__(self, traced: bool = False) -> None:
        self.traced = traced

    def _quiet(self, config: RunnableConfig | None) -> bool:
        callbacks = (config or {}).get("callbacks")
        return not self.traced and isinstance(callbacks, BaseCallbackManager) and not callbacks.handlers

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if self._quiet(config):
            return input
        return self._call_with_config(_same, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if self._quiet(config):
            return input
        return await self._acall_with_config(_asame, input, config)

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        if self._quiet(config):
            return input
        return self._transform_stream_with_config(input, _passing, config)


FLOORS: dict[str, tuple[str, Callable[[], Runnable[Any, Any]]]] = {  # --floor=...: (kind, no-op step)
    "noop": ("Runnable step", NoOpStep),
    "traced": ("Runnable step, always traced", lambda: NoOpStep(traced=True)),
    "lambda": ("RunnableLambda step", lambda: RunnableLambda(_same)),
}
FLOOR = next((arg.split("=", 1)[1] for arg in sys.argv[1:] if arg.startswith("--floor=")), "noop")


class NoOpMiddleware(AgentMiddleware):
    """An agent middleware overriding the hooks ``ProtectMiddleware`` overrides (the model-call and
    tool-call wrappers, sync and async), each only calling on. ``ProtectMiddleware``'s extra state keys
    are left out: they are part of what it costs, not the framework's floor."""

    def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        return handler(request)

    async def awrap_model_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        return await handler(request)

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        return handler(request)

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        return await handler(request)


def _timed(fn: Callable[[], object]) -> Sample:
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


async def _atimed(fn: Callable[[], Awaitable[object]]) -> Sample:
    wall, cpu = time.perf_counter(), time.thread_time()
    await fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


Calls = tuple[Callable[[], Any], ...]  # plain, no-op, guarded
Runs = tuple[list[Sample], ...]  # their samples, in the same order


def compare(calls: Calls, n: int) -> Runs:
    """The calls take turns (see ``in_turns``) after a warm-up."""
    for _ in range(WARMUP):
        for call in calls:
            call()
    return in_turns(calls, n, _timed)


def acompare(calls: Calls, n: int) -> Runs:
    async def go() -> Runs:
        for _ in range(WARMUP):
            for call in calls:
                await call()
        return await ain_turns(calls, n, _atimed)

    return asyncio.run(go())


def row(label: str, kind: str, runs: Runs, guards: int, scorer: float) -> dict[str, Any]:
    plain, noop, guarded = runs
    wall = statistics.median(w for w, _ in plain), statistics.median(w for w, _ in guarded)
    cpu = statistics.median(c for _, c in plain), statistics.median(c for _, c in guarded)
    cpu_noop = statistics.median(c for _, c in noop)
    added_cpu = (cpu[1] - cpu[0]) / guards
    return {
        "label": label,
        "kind": kind,
        "wall": (*wall, wall[1] / wall[0], (wall[1] - wall[0]) / guards),
        "cpu": (*cpu, cpu[1] / cpu[0], added_cpu),
        "p99": percentiles([w for w, _ in guarded])[1],
        "beyond": added_cpu - scorer,
        "noop": (cpu_noop - cpu[0]) / guards,  # what the framework charges a component doing nothing
        "beyond_noop": (cpu[1] - cpu_noop) / guards,  # adapter + Protect.invoke beyond that
    }


def main() -> None:
    # ``--text-metric``: the stand-in says it reads only the text, as the built-in text metrics do, so the
    # adapters leave out the conversation, tools and context (Protect.fields_read); by default it may read
    # anything, as a custom metric does
    reads = {"fields_read": ["input", "output"]} if "--text-metric" in sys.argv else {}
    register_metric("bench_lc", lambda _p: 0.1, replace=True, **reads)
    sg = Protect(SQLiteStageStore(":memory:"))
    rulesets = [
        {
            "rules": [{"metric": "bench_lc", "operator": "gt", "target_value": 0.5}],
            "action": {"type": "OVERRIDE", "choices": ["no"]},
        }
    ]
    sg.create_stage("bench", stage_type="central", prioritized_rulesets=rulesets)
    response = sg.invoke(Payload(output=ANSWER), stage_name="bench")
    scorer = sum(m.execution_time or 0.0 for m in response.metric_results.values())
    alone = [_timed(lambda: sg.invoke(Payload(output=ANSWER), stage_name="bench")) for _ in range(REPEAT)]

    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    value = {"question": "What is the capital of France?"}
    step, noop = FLOORS[FLOOR]  # the kind of component the floor is, and its no-op
    plain = prompt | fake_model() | StrOutputParser()
    after = prompt | fake_model() | StrOutputParser() | noop()  # the floor of one guard after the chain
    around = noop() | prompt | fake_model() | StrOutputParser() | noop()  # of a guard on each side
    guarded = prompt | fake_model() | StrOutputParser() | Guard("bench", field="output", protect=sg)
    wrapped = protect(prompt | fake_model() | StrOutputParser(), output_stage="bench", protect=sg)
    both = protect(
        prompt | fake_model() | StrOutputParser(), input_stage="bench", output_stage="bench", protect=sg
    )
    assert guarded.invoke(value) == ANSWER and both.invoke(value) == ANSWER
    assert after.invoke(value) == ANSWER and around.invoke(value) == ANSWER

    def invoke(chain: Runnable[Any, Any]) -> Any:
        return chain.invoke(value)

    def ainvoke(chain: Runnable[Any, Any]) -> Awaitable[Any]:
        return chain.ainvoke(value)

    def stream(chain: Runnable[Any, Any]) -> list[Any]:
        return list(chain.stream(value))

    def each(call: Callable[[Any], Any], *targets: Any) -> Calls:
        """The same call on each target: plain, no-op, guarded."""
        return tuple(partial(call, target) for target in targets)

    rows = []
    runs = compare(each(invoke, plain, after, guarded), REPEAT)
    rows.append(row("chain | Guard, invoke", step, runs, 1, scorer))
    runs = acompare(each(ainvoke, plain, after, guarded), REPEAT)
    rows.append(row("chain | Guard, ainvoke", step, runs, 1, scorer))
    runs = compare(each(stream, plain, after, guarded), REPEAT // 2)
    rows.append(row("chain | Guard, stream (buffered)", step, runs, 1, scorer))
    runs = compare(each(invoke, plain, after, wrapped), REPEAT)
    rows.append(row("protect(chain, output_stage)", step, runs, 1, scorer))
    runs = compare(each(invoke, plain, around, both), REPEAT)
    rows.append(row("protect(chain, input + output), per guard", step, runs, 2, scorer))

    agent_plain = create_agent(fake_model(), [])
    agent_noop = create_agent(fake_model(), [], middleware=[NoOpMiddleware()])
    middleware = ProtectMiddleware(input_stage="bench", output_stage="bench", protect=sg)
    agent_guarded = create_agent(fake_model(), [], middleware=[middleware])
    message = {"messages": [HumanMessage("What is the capital of France?")]}

    def run(agent: Any) -> Any:
        return agent.invoke(message)

    runs = compare(each(run, agent_plain, agent_noop, agent_guarded), REPEAT // 4)
    rows.append(row("agent + middleware (in + out), per guard", "AgentMiddleware", runs, 2, scorer))

    invoke_wall = statistics.median(w for w, _ in alone)
    invoke_cpu = statistics.median(c for _, c in alone)
    print(
        f"Protect.invoke alone (stage by name): {invoke_wall * 1e6:.0f} µs wall, "
        f"{invoke_cpu * 1e6:.0f} µs CPU"
    )
    print(f"scorer time per invoke: {scorer * 1e6:.1f} µs\n")
    print(f"framework floor: a no-op {step} in the guard's place (a no-op AgentMiddleware for the agent)")
    head = f"{'p50, µs':42} {'plain':>7} {'guarded':>8} {'ratio':>6} {'+/guard':>8}"
    head = f"{head}  | CPU {'plain':>7} {'guarded':>8} {'ratio':>6} {'+/guard':>8}"
    print(f"{head}  | {'no-op +/guard':>14} {'guard - no-op':>14}")
    for r in rows:
        wp, wg, wr, wa = r["wall"]
        cp, cg, cr, ca = r["cpu"]
        print(
            f"{r['label']:42} {wp * 1e6:7.0f} {wg * 1e6:8.0f} {wr:6.2f} {wa * 1e6:8.0f}  |     "
            f"{cp * 1e6:7.0f} {cg * 1e6:8.0f} {cr:6.2f} {ca * 1e6:8.0f}  | "
            f"{r['noop'] * 1e6:14.0f} {r['beyond_noop'] * 1e6:14.0f}"
        )
    print()
    print_verdict(rows, "beyond", TARGET, "scorer time")
    kind = max(rows, key=lambda r: r["beyond_noop"])["kind"]
    print_verdict(rows, "beyond_noop", TARGET, f"the framework's own no-op {kind} (scorer time included)")
    adapter = rows[0]["cpu"][3] - invoke_cpu
    print(f"adapter alone (chain | Guard minus Protect.invoke, CPU): {adapter * 1e6:.0f} µs")


if __name__ == "__main__":
    main()

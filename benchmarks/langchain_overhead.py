"""What a LangChain guard adds: a guarded chain against the same chain unguarded, with a fake model.

The stage is a stored central stage over a constant custom metric, so scorer time is near zero and what
is left is the adapter (value <-> payload, traced run, custom event) plus ``Protect.invoke``.
Target (issue 17): at most 100 µs added per guard beyond scorer time.
Run: python benchmarks/langchain_overhead.py

Both the wall time and the CPU time of the calling thread are measured, plain and guarded calls
alternating. On a shared machine the wall-time p50 moves with the load while the CPU time barely does, so
the verdict uses the CPU time. (Work a framework hands to other threads, like the fake model under
``ainvoke``, is in neither side's CPU time.)
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _stats import percentiles
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from stageguard import Payload, Protect, SQLiteStageStore, register_metric
from stageguard.langchain import Guard, ProtectMiddleware, protect

REPEAT = 3000
WARMUP = 100
TARGET = 100e-6  # seconds of CPU time per guard beyond scorer time (issue 17)
ANSWER = "Paris is the capital of France. It has been for a long time."

Sample = tuple[float, float]  # (wall, cpu) seconds


def fake_model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.cycle([AIMessage(content=ANSWER)]))


def _timed(fn: Callable[[], object]) -> Sample:
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


async def _atimed(fn: Callable[[], Awaitable[object]]) -> Sample:
    wall, cpu = time.perf_counter(), time.thread_time()
    await fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def compare(
    plain: Callable[[], object], guarded: Callable[[], object], n: int
) -> tuple[list[Sample], list[Sample]]:
    """Plain and guarded calls alternate one by one, so load changes hit both sides alike."""
    for _ in range(WARMUP):
        plain(), guarded()
    pairs = [(_timed(plain), _timed(guarded)) for _ in range(n)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def acompare(
    plain: Callable[[], Awaitable[object]], guarded: Callable[[], Awaitable[object]], n: int
) -> tuple[list[Sample], list[Sample]]:
    async def go() -> list[tuple[Sample, Sample]]:
        for _ in range(WARMUP):
            await plain(), await guarded()
        return [(await _atimed(plain), await _atimed(guarded)) for _ in range(n)]

    pairs = asyncio.run(go())
    return [a for a, _ in pairs], [b for _, b in pairs]


def row(label: str, plain: list[Sample], guarded: list[Sample], guards: int, scorer: float) -> dict[str, Any]:
    wall = statistics.median(w for w, _ in plain), statistics.median(w for w, _ in guarded)
    cpu = statistics.median(c for _, c in plain), statistics.median(c for _, c in guarded)
    added_cpu = (cpu[1] - cpu[0]) / guards
    return {
        "label": label,
        "wall": (*wall, wall[1] / wall[0], (wall[1] - wall[0]) / guards),
        "cpu": (*cpu, cpu[1] / cpu[0], added_cpu),
        "p99": percentiles([w for w, _ in guarded])[1],
        "beyond": added_cpu - scorer,
    }


def main() -> None:
    register_metric("bench_lc", lambda _p: 0.1, replace=True)
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
    plain = prompt | fake_model() | StrOutputParser()
    guarded = prompt | fake_model() | StrOutputParser() | Guard("bench", field="output", protect=sg)
    wrapped = protect(prompt | fake_model() | StrOutputParser(), output_stage="bench", protect=sg)
    both = protect(
        prompt | fake_model() | StrOutputParser(), input_stage="bench", output_stage="bench", protect=sg
    )
    assert guarded.invoke(value) == ANSWER and both.invoke(value) == ANSWER

    rows = []
    a, b = compare(lambda: plain.invoke(value), lambda: guarded.invoke(value), REPEAT)
    rows.append(row("chain | Guard, invoke", a, b, 1, scorer))
    a, b = acompare(lambda: plain.ainvoke(value), lambda: guarded.ainvoke(value), REPEAT)
    rows.append(row("chain | Guard, ainvoke", a, b, 1, scorer))
    a, b = compare(lambda: list(plain.stream(value)), lambda: list(guarded.stream(value)), REPEAT // 2)
    rows.append(row("chain | Guard, stream (buffered)", a, b, 1, scorer))
    a, b = compare(lambda: plain.invoke(value), lambda: wrapped.invoke(value), REPEAT)
    rows.append(row("protect(chain, output_stage)", a, b, 1, scorer))
    a, b = compare(lambda: plain.invoke(value), lambda: both.invoke(value), REPEAT)
    rows.append(row("protect(chain, input + output), per guard", a, b, 2, scorer))

    agent_plain = create_agent(fake_model(), [])
    middleware = ProtectMiddleware(input_stage="bench", output_stage="bench", protect=sg)
    agent_guarded = create_agent(fake_model(), [], middleware=[middleware])
    message = {"messages": [HumanMessage("What is the capital of France?")]}
    a, b = compare(lambda: agent_plain.invoke(message), lambda: agent_guarded.invoke(message), REPEAT // 4)
    rows.append(row("agent + middleware (in + out), per guard", a, b, 2, scorer))

    invoke_wall = statistics.median(w for w, _ in alone)
    invoke_cpu = statistics.median(c for _, c in alone)
    print(
        f"Protect.invoke alone (stage by name): {invoke_wall * 1e6:.0f} µs wall, "
        f"{invoke_cpu * 1e6:.0f} µs CPU"
    )
    print(f"scorer time per invoke: {scorer * 1e6:.1f} µs\n")
    head = f"{'p50, µs':42} {'plain':>7} {'guarded':>8} {'ratio':>6} {'+/guard':>8}"
    print(f"{head}  | CPU {'plain':>7} {'guarded':>8} {'ratio':>6} {'+/guard':>8}")
    for r in rows:
        wp, wg, wr, wa = r["wall"]
        cp, cg, cr, ca = r["cpu"]
        print(
            f"{r['label']:42} {wp * 1e6:7.0f} {wg * 1e6:8.0f} {wr:6.2f} {wa * 1e6:8.0f}  |     "
            f"{cp * 1e6:7.0f} {cg * 1e6:8.0f} {cr:6.2f} {ca * 1e6:8.0f}"
        )
    worst = max(rows, key=lambda r: r["beyond"])
    verdict = "OK" if worst["beyond"] <= TARGET else "OVER"
    print(
        f"\nworst CPU time added per guard beyond scorer time: {worst['beyond'] * 1e6:.0f} µs "
        f"({worst['label']}); target <= {TARGET * 1e6:.0f} µs: {verdict}"
    )
    over = [f"{r['label']} ({r['beyond'] * 1e6:.0f})" for r in rows if r["beyond"] > TARGET]
    print(f"over the target: {', '.join(over) or 'none'}")
    adapter = rows[0]["cpu"][3] - invoke_cpu
    print(f"adapter alone (chain | Guard minus Protect.invoke, CPU): {adapter * 1e6:.0f} µs")


if __name__ == "__main__":
    main()

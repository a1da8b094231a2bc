"""Invoke overhead of the engine: a stored central stage of 3 rulesets over constant custom metrics.

Target: p50 under 100 µs (the engine must never be the bottleneck). Run: python benchmarks/engine.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _stats import percentiles, time_calls, us

from stageguard import (
    OverrideAction,
    Payload,
    Protect,
    Rule,
    Ruleset,
    SQLiteStageStore,
    register_metric,
)

REPEAT = 5000


def main() -> None:
    register_metric("bench_a", lambda _p: 0.2, replace=True)
    register_metric("bench_b", lambda _p: 0.7, replace=True)
    register_metric("bench_c", lambda _p: ["x"], kind="categories", replace=True)
    rulesets = [
        Ruleset(
            rules=[Rule(metric="bench_a", operator="gt", target_value=0.5)],
            action=OverrideAction(choices=["no"]),
        ),
        Ruleset(
            rules=[
                Rule(metric="bench_b", operator="gt", target_value=0.9),
                Rule(metric="bench_c", operator="contains", target_value="x"),
            ]
        ),
        Ruleset(rules=[Rule(metric="bench_c", operator="empty")], action=OverrideAction(choices=["no"])),
    ]
    payload = Payload(input="What is the capital of France?", output="Paris.")
    rows = []
    for label, path in (("memory store", ":memory:"), ("SQLite file", "/tmp/stageguard-bench.db")):
        Path("/tmp/stageguard-bench.db").unlink(missing_ok=True)
        protect = Protect(SQLiteStageStore(path))
        protect.create_stage("bench", stage_type="central", prioritized_rulesets=rulesets)
        rows.append(
            (
                f"invoke, stage by name ({label})",
                time_calls(lambda p=protect: p.invoke(payload, stage_name="bench"), REPEAT),
            )
        )
    inline = Protect(SQLiteStageStore(":memory:"))
    rows.append(("invoke, inline rulesets", time_calls(lambda: inline.invoke(payload, rulesets), REPEAT)))
    rows.append(
        ("engine.evaluate only", time_calls(lambda: inline.engine.evaluate(payload, rulesets), REPEAT))
    )

    async def async_loop() -> list[float]:
        import time

        samples = []
        for _ in range(REPEAT):
            start = time.perf_counter()
            await inline.ainvoke(payload, rulesets)
            samples.append(time.perf_counter() - start)
        return samples

    rows.append(("ainvoke, inline rulesets", asyncio.run(async_loop())))

    print(f"engine overhead, {REPEAT} invokes each, 3 rulesets / 4 rules / 3 constant metrics")
    print(f"{'case':<42} {'p50':>11} {'p99':>11}")
    for label, samples in rows:
        p50, p99 = percentiles(samples)
        print(f"{label:<42} {us(p50)} {us(p99)}")
    p50 = percentiles(rows[0][1])[0]
    print(f"target p50 < 100 µs: {'met' if p50 < 100e-6 else 'NOT met'} ({p50 * 1e6:.1f} µs)")


if __name__ == "__main__":
    main()

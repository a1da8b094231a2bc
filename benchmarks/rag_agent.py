"""RAG and agent scorers: accuracy on the labelled sets and latency per scorer.

Run ``python benchmarks/rag_agent.py``. Prints:

- groundedness (``context_adherence``): the figures of ``benchmarks/groundedness.py`` (pairwise
  accuracy overall and on length-matched pairs, AUROC, the ``lt 0.1`` rule's recall and false flags,
  the length baseline, the threshold trade-off) on the *report* half of the HaluEval QA dev file (split
  by ``crc32(pair_id) % 2``; the scorer is tuned on the other half) and on our hand-written
  contradiction fixture;
- ``completeness`` on ``tests/fixtures/completeness.jsonl``: ordering within each group (complete >
  partial > incomplete) and 3-bin accuracy (>= 0.7 complete, < 0.3 incomplete);
- the agent metrics on ``tests/fixtures/agent_transcripts.jsonl`` against their labels, separately for
  the ``dev`` rows (written while building the scorers) and the ``holdout`` rows (written afterwards);
- latency p50/p99 per scorer, wall and CPU time, with 2 KB of context (RAG) or a ~2 KB transcript (agent).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import groundedness as groundedness_benchmark
from _stats import percentiles

from stageguard.payload import Payload
from stageguard.scorers._text import clear_text_cache
from stageguard.scorers.agent import (
    ActionAdvancementScorer,
    ActionCompletionScorer,
    ToolErrorRateScorer,
    ToolSelectionQualityScorer,
)
from stageguard.scorers.base import Scorer
from stageguard.scorers.rag import CompletenessScorer, ContextAdherenceScorer, index_context

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
AGENT_THRESHOLDS = {"tool_selection_ok": 0.7, "advancement_ok": 0.5, "completion_ok": 0.75}
REPEAT = 300


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def score_value(scorer: Scorer, payload: Payload) -> float:
    value = scorer.score(payload).value
    assert isinstance(value, float | int)
    return float(value)


# ----------------------------------------------------------------------------------- groundedness


def groundedness() -> None:
    groundedness_benchmark.main(["--split", "report"])


# ----------------------------------------------------------------------------------- completeness


def completeness() -> None:
    print("== completeness on tests/fixtures/completeness.jsonl")
    rows = read_jsonl(FIXTURES / "completeness.jsonl")
    scorer = CompletenessScorer()
    by_group: dict[str, dict[str, float]] = defaultdict(dict)
    right = 0
    for row in rows:
        value = score_value(scorer, Payload.model_validate(row["payload"]))
        by_group[row["group"]][row["label"]] = value
        predicted = "complete" if value >= 0.7 else "incomplete" if value < 0.3 else "partial"
        right += predicted == row["label"]
    ordered = sum(
        (g["complete"] > g["partial"]) + (g["partial"] > g["incomplete"]) for g in by_group.values()
    )
    print(f"   {len(rows)} items in {len(by_group)} groups")
    print(
        f"   ordering accuracy {ordered / (2 * len(by_group)):.3f}   3-bin accuracy {right / len(rows):.3f}"
    )


# ------------------------------------------------------------------------------------------ agent

AGENT_SCORERS: dict[str, Scorer] = {
    "tool_error_rate": ToolErrorRateScorer(),
    "tool_selection_ok": ToolSelectionQualityScorer(),
    "advancement_ok": ActionAdvancementScorer(),
    "completion_ok": ActionCompletionScorer(),
}


def agent() -> None:
    print("== agent metrics on tests/fixtures/agent_transcripts.jsonl (accuracy vs labels)")
    rows = read_jsonl(FIXTURES / "agent_transcripts.jsonl")
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    misses: list[str] = []
    for row in rows:
        payload = Payload.model_validate(row["payload"])
        split = row.get("split", "dev")
        for key, scorer in AGENT_SCORERS.items():
            expected = row["expected"][key]
            if expected is None:
                continue
            value = score_value(scorer, payload)
            ok = (
                abs(value - expected) < 1e-6
                if key == "tool_error_rate"
                else (value >= AGENT_THRESHOLDS[key]) == expected
            )
            tally[(split, key)][0] += ok
            tally[(split, key)][1] += 1
            if not ok:
                misses.append(f"{row['id']}:{key}={value:.2f}")
    print(f"   {'metric':<24}{'dev':>12}{'holdout':>12}")
    for key in AGENT_SCORERS:
        cells = []
        for split in ("dev", "holdout"):
            right, total = tally[(split, key)]
            cells.append(f"{right}/{total} {right / total:.2f}" if total else "-")
        print(f"   {key:<24}{cells[0]:>12}{cells[1]:>12}")
    print("   thresholds: selection >= 0.7, advancement >= 0.5, completion >= 0.75; error rate exact")
    if misses:
        print("   misses: " + ", ".join(misses))


# ---------------------------------------------------------------------------------------- latency


def rag_payload(i: int) -> Payload:
    base = (
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
        "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. "
        "It was the centerpiece of the 1889 World's Fair. The tower is 330 metres tall and was the tallest "
        "man-made structure in the world until the Chrysler Building in New York City was finished in 1930. "
    )
    context = (base * 6)[:2048]
    output = f"It was built from 1887 to 1889 by Gustave Eiffel's company and is 330 metres tall ({i})."
    return Payload(
        input="When was the Eiffel Tower built and how tall is it?", output=output, context=[context]
    )


def agent_payload(i: int) -> Payload:
    rows = read_jsonl(FIXTURES / "agent_transcripts.jsonl")
    row = max(rows, key=lambda r: len(json.dumps(r["payload"])))
    payload = Payload.model_validate(row["payload"])
    pad = " ".join(["Here are the details you asked for, with prices and times."] * 24)
    messages = [*(payload.messages or [])]
    messages[0] = messages[0].model_copy(update={"content": f"{messages[0].content} {pad} ({i})"})
    return payload.model_copy(update={"messages": messages})


def latency(name: str, scorer: Scorer, make: Callable[[int], Payload]) -> None:
    payloads = [make(i) for i in range(REPEAT)]
    size = len(payloads[0].model_dump_json(exclude_none=True))
    for p in payloads[:30]:
        scorer.score(p)
    wall, cpu = [], []
    for p in payloads:
        index_context.cache_clear()  # every call pays for tokenising its texts (word-level caches stay warm,
        clear_text_cache()  # as they would in a running app)
        w, c = time.perf_counter(), time.thread_time()
        scorer.score(p)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    (w50, w99), (c50, c99) = percentiles(wall), percentiles(cpu)
    print(
        f"   {name:<24} payload {size / 1024:4.1f} KB   wall p50 {w50 * 1e3:5.2f} ms  p99 {w99 * 1e3:5.2f} ms"
        f"   cpu p50 {c50 * 1e3:5.2f} ms  p99 {c99 * 1e3:5.2f} ms"
    )


def latencies() -> None:
    print(f"== latency per scorer ({REPEAT} calls, text caches cleared before each; target p50 <= 2 ms)")
    latency("context_adherence", ContextAdherenceScorer(), rag_payload)
    latency("completeness", CompletenessScorer(), rag_payload)
    for key, scorer in AGENT_SCORERS.items():
        latency(scorer.name or key, scorer, agent_payload)


def main() -> None:
    groundedness()
    completeness()
    agent()
    latencies()


if __name__ == "__main__":
    main()

"""Robustness of the library: adversarial inputs up to 1 MB for every built-in scorer, and random fuzzing.

Two parts:

1. **1 MB grid**: every built-in scorer on 1 MB inputs of several adversarial shapes (a repeated
   sentence, one giant token, a base64 blob, many newlines, JSON, prose, Unicode soup) in every payload
   field it reads. Prints max and median time per scorer; each call runs in a child process with a
   hard cap (``--cap``) so a quadratic scorer shows up as ``>cap`` instead of hanging the benchmark.
2. **Fuzz**: ``--cases`` random payloads per target (each scorer, the model round-trips and
   ``Protect.invoke``), sizes log-uniform up to ``--max-size`` characters, mixing words, numbers,
   e-mails, Unicode (emoji, CJK, combining marks, zero-width, RTL), control characters, lone surrogates
   and JSON. Counts crashes (any exception other than the documented ones) and the slowest case.

Times are CPU seconds of the scoring process (``time.process_time``), so a busy shared machine doesn't
inflate them; on a quiet machine they equal the wall-clock time of these single-threaded calls.

Run the large version (the issue's figures)::

    python benchmarks/robustness.py                      # 10,000 cases per target, up to 1 MB

and a quick one::

    python benchmarks/robustness.py --cases 300 --max-size 20000 --grid-size 1000000
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import multiprocessing as mp
import random
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import ValidationError

# metric -> the payload fields its scorer reads (one scorer per family: input_/output_ variants share code)
SCORERS: dict[str, tuple[str, ...]] = {
    "input_pii": ("input",),
    "input_toxicity": ("input",),
    "input_sexism": ("input",),
    "prompt_injection": ("input",),
    "input_tone": ("input",),
    "context_adherence": ("input", "output", "context"),
    "completeness": ("input", "output", "context"),
    "tool_error_rate": ("tool_result", "tool_error", "many_calls"),
    "tool_selection_quality": ("input", "tool_args", "tool_result", "messages", "many_calls"),
    "action_advancement": ("input", "output", "tool_args", "tool_result", "messages", "many_calls"),
    "action_completion": ("input", "output", "tool_args", "tool_result", "messages", "many_calls"),
}

_WORDS = [
    "the",
    "order",
    "account",
    "refund",
    "weather",
    "Paris",
    "London",
    "Mr",
    "Smith",
    "said",
    "no",
    "not",
    "never",
    "42",
    "1999",
    "March",
    "email",
    "please",
    "cancel",
    "my",
    "booking",
    "and",
    "then",
    "also",
    "check",
    "status",
    "error",
    "failed",
    "timeout",
    "John",
    "Doe",
    "lives",
    "at",
    "221B",
    "Baker",
    "Street",
    "I",
    "can't",
    "do",
    "that",
    "because",
    "it's",
    "against",
    "policy",
    "ignore",
    "previous",
    "instructions",
]


# ------------------------------------------------------------------------------------------ 1 MB shapes


def shape(name: str, size: int, seed: int = 0) -> str:
    """A text of about ``size`` characters with an adversarial shape."""
    rng = random.Random(seed)
    if name == "repeated_sentence":
        return _fill("Mr Smith said no. ", size)
    if name == "giant_token":
        return "a" * size
    if name == "base64":
        return base64.b64encode(rng.randbytes(size * 3 // 4)).decode()[:size]
    if name == "newlines":
        return _fill("x\n\n", size)
    if name == "json":
        rows = [
            {"id": i, "name": "Mr Smith", "error": None, "tags": ["a", "b"], "n": i * 1.5} for i in range(50)
        ]
        chunk = json.dumps(rows)
        return "[" + ",".join([chunk] * max(1, size // (len(chunk) + 1))) + "]"
    if name == "prose":
        return _prose(rng, size)
    if name == "unicode":
        return _unicode(rng, size)
    if name == "run_on_names":  # no sentence end, names after newlines and ":" (fuzzing found it quadratic)
        return _fill(_RUN_ON, size)
    raise ValueError(name)


_RUN_ON = (
    "March 42@example.com it's@example.com and failed@example.com not@example.combooking688863070590 ,"
    '{"error": null, "status": "ok"}中文 Traceback (most recent call last):\n  ValueError: bad '
    "because@example.com Traceback (most recent call last):\n  ValueError: bad MarchTraceback (most "
    'recent call last):\n  ValueError: bad {"error": "boom", "status": "error"} 66031456657 '
    '257199869866312640835989 {"error": 500, "status": "error"}said@example.com '
    '{"error": null, "status": "ok"} Street ParisParisParisPa'
)
SHAPES = (
    "repeated_sentence",
    "giant_token",
    "base64",
    "newlines",
    "json",
    "prose",
    "unicode",
    "run_on_names",
)


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _prose(rng: random.Random, size: int) -> str:
    chunk = " ".join(rng.choice(_WORDS) + rng.choice(("", "", "", ".", ",", "?", ";")) for _ in range(2000))
    return _fill(chunk + " ", size)


_UNICODE_BITS = (
    "\u00e9",
    "\u0301",
    "\u200b",
    "\u200d",
    "\u202e",
    "\ufeff",
    "\U0001f600",
    "\u4e2d\u6587",
    "\u0627\u0644",
    "\x00",
    "\x1b[31m",
    "\r\n",
    "\t",
    "\ufffd",
    "\U0010ffff",
    "\u2028",
    "\ud800",
    "\udfff",
    "\uff21",
)


def _unicode(rng: random.Random, size: int) -> str:
    parts = [
        rng.choice(_UNICODE_BITS) if rng.random() < 0.4 else rng.choice(_WORDS) + " " for _ in range(3000)
    ]
    return _fill("".join(parts), size)


def payload_for(metric: str, where: str, text: str) -> dict[str, Any]:
    """A payload dict for ``metric`` with ``text`` in ``where`` and small, sensible other fields."""
    small = {
        "input": "Please cancel my booking for Paris and then check the weather in London.",
        "output": "I cancelled the booking for Paris. The weather in London is rainy.",
        "context": ["The booking for Paris was cancelled on 3 March.", "London weather: rainy, 12 C."],
    }
    tools = [
        {
            "name": "cancel_booking",
            "description": "Cancel a booking",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    ]
    calls: list[dict[str, Any]] = [
        {"name": "cancel_booking", "arguments": {"city": "Paris"}, "result": "cancelled", "id": "1"},
        {"name": "get_weather", "arguments": {"city": "London"}, "result": "rainy, 12 C", "id": "2"},
    ]
    payload: dict[str, Any] = dict(small)
    if SCORERS[metric][0] != "input" or metric.startswith(("tool", "action")):
        payload["tools"] = tools
        payload["tool_calls"] = calls
    if where in ("input", "output"):
        payload[where] = text
    elif where == "context":
        payload["context"] = [text]
    elif where == "tool_args":
        payload["tool_calls"] = [{**calls[0], "arguments": {"city": text}}, calls[1]]
    elif where == "tool_result":
        payload["tool_calls"] = [{**calls[0], "result": text}, calls[1]]
    elif where == "tool_error":
        payload["tool_calls"] = [{**calls[0], "error": text}, calls[1]]
    elif where == "messages":
        payload["messages"] = [
            {"role": "user", "content": text},
            {"role": "assistant", "content": small["output"]},
        ]
    elif where == "many_calls":
        words = text.split() or [text[:10] or "x"]
        n = max(1, min(20_000, len(text) // 50))
        payload["tool_calls"] = [
            {
                "name": "get_weather",
                "arguments": {"city": words[i % len(words)][:40]},
                "result": text[i * 50 : i * 50 + 50],
                "id": str(i),
            }
            for i in range(n)
        ]
    return payload


# --------------------------------------------------------------------------------------------- workers


def _score_worker(jobs: Any, results: Any) -> None:
    from stageguard.payload import Payload
    from stageguard.scorers.registry import default_registry

    while True:
        job = jobs.get()
        if job is None:
            return
        metric, payload = job
        try:
            scorer = default_registry.get(metric)
            assert scorer is not None
            p = Payload.model_validate(payload)
            start = time.process_time()
            result = scorer.score(p)
            elapsed = time.process_time() - start
            json.dumps(result.model_dump(mode="json"))
            results.put(("ok", elapsed, (result.explanation or "")[:160]))
        except Exception:
            results.put(("crash", 0.0, traceback.format_exc(limit=3)))


class Runner:
    """One child process scoring payloads, restarted when a call exceeds the cap."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._start()

    def _start(self) -> None:
        self.jobs = self._ctx.Queue()
        self.results = self._ctx.Queue()
        self.proc = self._ctx.Process(target=_score_worker, args=(self.jobs, self.results), daemon=True)
        self.proc.start()

    def run(self, metric: str, payload: dict[str, Any], cap: float) -> tuple[str, float, str]:
        self.jobs.put((metric, payload))
        try:
            out: tuple[str, float, str] = self.results.get(timeout=cap + 30.0)  # + pickling of 1 MB
        except Exception:
            self.proc.kill()
            self.proc.join()
            self._start()
            return ("timeout", math.inf, f"> {cap:.0f} s")
        return out

    def close(self) -> None:
        self.jobs.put(None)
        self.proc.join(timeout=5)


def grid(size: int, cap: float, only: list[str] | None) -> None:
    print(f"== 1 MB grid: every built-in scorer, {len(SHAPES)} shapes x its fields, {size:,} characters ==")
    print(f"{'scorer':<24} {'cases':>5} {'crashes':>7} {'median s':>9} {'max s':>8}  slowest (CPU s)")
    runner = Runner()
    runner.run("input_pii", {"input": "warm up"}, cap)  # imports outside the timings
    try:
        for metric, fields in SCORERS.items():
            if only and metric not in only:
                continue
            times: list[float] = []
            crashes, slowest = 0, ("", -1.0, "")
            for where in fields:
                for name in SHAPES:
                    status, elapsed, note = runner.run(
                        metric, payload_for(metric, where, shape(name, size)), cap
                    )
                    if status == "crash":
                        crashes += 1
                        print(f"   CRASH {metric} {where}/{name}: {note}")
                        continue
                    times.append(elapsed)
                    if elapsed > slowest[1]:
                        slowest = (f"{where}/{name}", elapsed, note)
            worst = max(times) if times else math.nan
            flag = "" if worst < 1.0 else "  <-- over 1 s"
            median = statistics.median(times) if times else math.nan
            print(
                f"{metric:<24} {len(times) + crashes:>5} {crashes:>7} {median:>9.3f} "
                f"{worst:>8.3f}  {slowest[0]}{flag}",
                flush=True,
            )
            if "truncat" in slowest[2] or "window" in slowest[2]:
                print(f"{'':<24} explanation: {slowest[2]}")
    finally:
        runner.close()


# ------------------------------------------------------------------------------------------------- fuzz


def fuzz_text(rng: random.Random, size: int) -> str:
    """Random text of about ``size`` characters: a random chunk of fragments, repeated with mutations."""
    fragments: list[Callable[[], str]] = [
        lambda: rng.choice(_WORDS),
        lambda: str(rng.randint(-(10**6), 10**12)),
        lambda: f"{rng.choice(_WORDS).lower()}@example.com",
        lambda: rng.choice(_UNICODE_BITS),
        lambda: chr(rng.randint(0, 0x10FFFF)),
        lambda: rng.choice((".", "?", "!", ",", ";", ":", "\n", " and ", " then ", "(", ")", '"', "'")),
        lambda: json.dumps({"error": rng.choice((None, "boom", 500)), "status": rng.choice(("ok", "error"))}),
        lambda: "Traceback (most recent call last):\n  ValueError: bad",
        lambda: rng.choice(_WORDS) * rng.randint(1, 50),
    ]
    chunk_len = min(size, rng.choice((8, 64, 512, 4096)))
    parts: list[str] = []
    length = 0
    while length < chunk_len:
        bit = rng.choice(fragments)()
        parts.append(bit + (" " if rng.random() < 0.7 else ""))
        length += len(bit) + 1
    chunk = "".join(parts)[:chunk_len]
    if len(chunk) >= size:
        return chunk[:size]
    reps = size // max(1, len(chunk)) + 1
    text = chunk * reps
    return text[:size]


def fuzz_payload(rng: random.Random, max_size: int) -> dict[str, Any]:
    size = int(math.exp(rng.uniform(0.0, math.log(max_size))))
    text = fuzz_text(rng, size)

    def small() -> str:
        return fuzz_text(rng, rng.randint(0, 200))

    payload: dict[str, Any] = {"input": small() or "x", "output": small()}
    roll = rng.random()
    if roll < 0.25:
        payload["input"] = text
    elif roll < 0.45:
        payload["output"] = text
    if rng.random() < 0.6:
        payload["context"] = [
            text if roll >= 0.45 and rng.random() < 0.5 else small() for _ in range(rng.randint(0, 3))
        ]
    if rng.random() < 0.6:
        payload["messages"] = [
            {
                "role": rng.choice(("user", "assistant", "system", "tool")),
                "content": small(),
                "tool_call_id": str(i),
            }
            for i in range(rng.randint(0, 4))
        ]
        if roll >= 0.45 and rng.random() < 0.3:
            payload["messages"].append({"role": "user", "content": text})
    if rng.random() < 0.7:
        calls = []
        for i in range(rng.randint(0, 6)):
            call: dict[str, Any] = {
                "name": rng.choice(("get_weather", "cancel_booking", small()[:20] or "t")),
                "id": str(i),
            }
            call["arguments"] = {
                "city": rng.choice((small(), text if rng.random() < 0.2 else "Paris", 12, None, [1, "a"]))
            }
            if rng.random() < 0.5:
                call["result"] = text if rng.random() < 0.2 else small()
            if rng.random() < 0.2:
                call["error"] = small()
            if rng.random() < 0.2:
                call["status"] = rng.choice(("success", "error"))
            calls.append(call)
        payload["tool_calls"] = calls
    if rng.random() < 0.5:
        payload["tools"] = [
            {
                "name": "get_weather",
                "description": small(),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {
                            "type": rng.choice(("string", "integer")),
                            "pattern": rng.choice(("^[A-Z]", "(a+)+$", "[")),
                        }
                    },
                    "required": rng.choice(([], ["city"], ["zip"])),
                },
            },
        ]
    if rng.random() < 0.2:
        payload["metadata"] = {"k": small(), "n": rng.choice((1, 2.5, float("nan"), None, [small()]))}
    return payload


def _fuzz_targets() -> dict[str, Callable[[dict[str, Any]], None]]:
    from stageguard import Protect, SQLiteStageStore
    from stageguard.errors import StageguardError
    from stageguard.payload import Payload
    from stageguard.response import Response
    from stageguard.rules import Rule, Ruleset
    from stageguard.scorers.registry import default_registry

    documented = (StageguardError, ValidationError)
    targets: dict[str, Callable[[dict[str, Any]], None]] = {}

    def scorer_target(metric: str) -> Callable[[dict[str, Any]], None]:
        def run(payload: dict[str, Any]) -> None:
            try:
                p = Payload.model_validate(payload)
            except documented:
                return
            scorer = default_registry.get(metric)
            assert scorer is not None
            result = scorer.score(p)
            result.model_dump_json()
            if isinstance(result.value, float) and not math.isfinite(result.value):
                raise AssertionError(f"non-finite value {result.value}")

        return run

    for metric in SCORERS:
        targets[metric] = scorer_target(metric)

    def model_round_trip(payload: dict[str, Any]) -> None:
        try:
            p = Payload.model_validate(payload)
        except documented:
            return
        again = Payload.model_validate_json(p.model_dump_json(exclude_none=True))
        assert again.model_dump(exclude_none=True) == p.model_dump(exclude_none=True) or _has_nan(payload)
        text = (payload.get("input") or "x")[:200]
        try:
            ruleset = Ruleset(
                rules=[Rule(metric="input_pii", operator="any", target_value=["ssn"])],
                description=text,
                action={"type": "override", "choices": [text or "x"]},
            )
        except documented:
            return
        assert Ruleset.model_validate_json(ruleset.model_dump_json()) == ruleset

    targets["model round-trip"] = model_round_trip

    protect = Protect(SQLiteStageStore(":memory:"))
    rulesets = [
        Ruleset(rules=[Rule(metric=m, operator="gte", target_value=0.5)])
        for m in ("prompt_injection", "input_toxicity", "context_adherence", "tool_error_rate")
    ] + [Ruleset(rules=[Rule(metric="input_pii", operator="not_empty")], action={"type": "REDACT"})]

    def invoke(payload: dict[str, Any]) -> None:
        try:
            response = protect.invoke(payload, prioritized_rulesets=rulesets, timeout=30.0)
        except documented:
            return
        Response.model_validate_json(response.model_dump_json())

    targets["Protect.invoke"] = invoke
    return targets


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


def fuzz(cases: int, max_size: int, seed: int, only: list[str] | None) -> None:
    print(
        f"== fuzz: {cases:,} random payloads per target, sizes log-uniform up to {max_size:,} characters =="
    )
    print(f"{'target':<24} {'cases':>7} {'crashes':>7} {'median ms':>9} {'max s':>8} {'max size':>9}  (CPU)")
    targets = _fuzz_targets()
    for name, target in targets.items():
        if only and name not in only:
            continue
        rng = random.Random(f"{seed}-{name}")
        crashes, times, worst = 0, [], (0.0, 0)
        for _ in range(cases):
            payload = fuzz_payload(rng, max_size)
            start = time.process_time()
            try:
                target(payload)
            except Exception:
                crashes += 1
                if crashes <= 3:
                    print(f"   CRASH {name}: {traceback.format_exc(limit=4)}")
            elapsed = time.process_time() - start
            times.append(elapsed)
            size = max((len(v) for v in _strings(payload)), default=0)
            if elapsed > worst[0]:
                worst = (elapsed, size)
        print(
            f"{name:<24} {cases:>7,} {crashes:>7} {statistics.median(times) * 1e3:>9.2f} {worst[0]:>8.3f} "
            f"{worst[1]:>9,}",
            flush=True,
        )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=10_000, help="fuzz cases per target")
    parser.add_argument("--max-size", type=int, default=1_000_000, help="largest fuzz input, characters")
    parser.add_argument(
        "--grid-size", type=int, default=1_000_000, help="size of the adversarial grid inputs"
    )
    parser.add_argument("--cap", type=float, default=30.0, help="seconds before a grid call counts as hung")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--only", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--skip-fuzz", action="store_true")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; one process, one core per call")
    if not args.skip_grid:
        grid(args.grid_size, args.cap, args.only)
    if not args.skip_fuzz:
        fuzz(args.cases, args.max_size, args.seed, args.only)


if __name__ == "__main__":
    main()

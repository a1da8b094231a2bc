"""Classifier benchmark: latency, load time and memory of the four trained scorers.

Run ``python benchmarks/_classifiers.py`` (prints JSON). Decision quality (leave one source out) is
``benchmarks/quality.py``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stageguard.scorers import _hashing, classifiers
from stageguard.scorers.base import TextScorer
from stageguard.scorers.classifiers import PromptInjectionScorer, SexismScorer, ToneScorer, ToxicityScorer

TEXT_200 = (
    "Hi team, thanks for the quick turnaround on the draft. I went through the numbers again and the "
    "forecast for the third quarter looks a bit optimistic to me; could we go over it together tomorrow?"
)[:200]
TEXT_2K = (
    "The migration plan has three phases. First we copy the historical data to the new cluster and run "
    "both systems side by side for two weeks, comparing the nightly reports. Then we move the write path. "
) * 10 + TEXT_200

SCORERS: dict[str, tuple[Callable[[], TextScorer], str, float]] = {
    "toxicity": (ToxicityScorer, "gt", 0.1),
    "sexism": (SexismScorer, "gt", 0.95),
    "prompt_injection": (PromptInjectionScorer, "gte", 0.5),
    "tone": (ToneScorer, "eq", 0.0),
}


def _rss_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50_ms": round(statistics.median(ordered) * 1e3, 4), "p99_ms": round(p99 * 1e3, 4)}


def latency(scorer: TextScorer, text: str, repeat: int = 300) -> dict[str, float]:
    for _ in range(20):
        scorer.score_text(text)
    samples = []
    for _ in range(repeat):
        classifiers._memo_vector.cache_clear()  # a scorer alone: no vector nor hashes left by another
        _hashing._memo_hashes.cache_clear()  # scorer (nor by this one's last call of the same text)
        start = time.perf_counter()
        scorer.score_text(text)
        samples.append(time.perf_counter() - start)
    return _percentiles(samples)


def load_cost(name: str) -> dict[str, float]:
    """Time (best of 3, untraced) and memory (tracemalloc, RSS) to read one model's weights."""
    times = []
    for _ in range(3):
        classifiers._MODELS.pop(name, None)
        start = time.perf_counter()
        classifiers.load_model(name)
        times.append(time.perf_counter() - start)
    classifiers._MODELS.pop(name, None)
    rss = _rss_kb()
    tracemalloc.start()
    classifiers.load_model(name)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "load_ms": round(min(times) * 1e3, 2),
        "memory_mb": round(current / 2**20, 2),
        "peak_memory_mb": round(peak / 2**20, 2),
        "rss_delta_mb": round((_rss_kb() - rss) / 1024, 2),
    }


def all_load_cost() -> dict[str, float]:
    """All four models loaded from a cold cache, the way the default rules load them."""
    for name in list(classifiers._MODELS):
        classifiers._MODELS.pop(name)
    rss = _rss_kb()
    start = time.perf_counter()
    for name in SCORERS:
        classifiers.load_model(name)
    return {
        "load_ms": round((time.perf_counter() - start) * 1e3, 2),
        "rss_delta_mb": round((_rss_kb() - rss) / 1024, 2),
    }


_COLD_START = """
import json, time
from pathlib import Path
def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
from stageguard.scorers import classifiers
t1 = time.perf_counter()
r1 = rss()
scorers = [classifiers.ToxicityScorer(), classifiers.SexismScorer(), classifiers.PromptInjectionScorer(),
           classifiers.ToneScorer()]
for s in scorers:
    s.score_text("warm up")
t2 = time.perf_counter()
print(json.dumps({
    "import_ms": round((t1 - t0) * 1e3, 1),
    "load_and_first_score_ms": round((t2 - t1) * 1e3, 1),
    "rss_after_import_mb": round(r1, 1),
    "rss_delta_mb": round(rss() - r1, 1),
}))
"""


def cold_start() -> dict[str, float]:
    """A fresh interpreter: import time, then all four scorers' first call (weights load) and RSS growth."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _COLD_START], check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def embedding_load_cost() -> dict[str, float]:
    """The static embedding table and tokenizer, read from a cold cache (shared by all four models)."""
    from stageguard.scorers import _embedding

    _embedding.static_embedder.cache_clear()
    _embedding.load_tokenizer.cache_clear()
    start = time.perf_counter()
    _embedding.static_embedder()
    return {"load_ms": round((time.perf_counter() - start) * 1e3, 2)}


def report() -> dict[str, Any]:
    """Per scorer: latency (200 chars / 2 KB), load time and memory. Decision quality: quality.py."""
    out: dict[str, Any] = {"all_models": all_load_cost(), "cold_start": cold_start()}
    out["embedding_table"] = embedding_load_cost()
    files = [*classifiers.WEIGHTS_DIR.rglob("*.npz"), classifiers.WEIGHTS_DIR / "tokenizer.json"]
    weights = {str(p.relative_to(classifiers.WEIGHTS_DIR)): p.stat().st_size for p in sorted(files)}
    out["weights_bytes"] = {**weights, "total": sum(weights.values())}
    for name, (factory, _, _) in SCORERS.items():
        entry: dict[str, Any] = load_cost(name)
        scorer = factory()
        entry["latency_200_chars"] = latency(scorer, TEXT_200)
        entry["latency_2kb"] = latency(scorer, TEXT_2K, repeat=200)
        out[name] = entry
    out["minilm_tier"] = minilm_tier()
    return out


def minilm_tier() -> dict[str, Any]:
    """The accurate tier side by side (needs stageguard[onnx] and weights/minilm/)."""
    try:
        from stageguard.scorers.minilm import minilm_encoder, minilm_scorers
    except ImportError as exc:
        return {"skipped": str(exc)}
    start = time.perf_counter()
    try:
        minilm_encoder()
    except ImportError as exc:
        return {"skipped": str(exc)}
    out: dict[str, Any] = {"encoder_load_ms": round((time.perf_counter() - start) * 1e3, 1)}
    scorers = minilm_scorers(["input_toxicity", "input_sexism", "prompt_injection", "input_tone"])
    for metric, scorer in scorers.items():
        out[metric] = {
            "latency_200_chars": latency(scorer, TEXT_200, repeat=100),
            "latency_2kb": latency(scorer, TEXT_2K, repeat=50),
        }
    return out


if __name__ == "__main__":
    print(json.dumps(report(), indent=2))

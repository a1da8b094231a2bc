"""Classifier benchmark: latency, load time, memory and held-out accuracy of the four trained scorers.

Run ``python benchmarks/_classifiers.py`` (prints JSON). Accuracy is measured with the shipped weights on
the held-out split that ``scripts/train_classifiers.py`` never trains on (1 in 5 near-duplicate groups of
``../shared/data/train``, chosen by a hash of the group key); the data are training/development data, so
these are held-out-split numbers, not an independent test set. Accuracy is skipped when the data are absent.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from stageguard.scorers import classifiers
from stageguard.scorers.base import TextScorer
from stageguard.scorers.classifiers import PromptInjectionScorer, SexismScorer, ToneScorer, ToxicityScorer

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data" / "train"

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


def _training_module() -> ModuleType:
    """``scripts/train_classifiers.py`` (for the split and metric helpers; it imports no scikit-learn)."""
    path = ROOT / "scripts" / "train_classifiers.py"
    spec = importlib.util.spec_from_file_location("train_classifiers", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_classifiers"] = module
    spec.loader.exec_module(module)
    return module


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


def binary_accuracy(tc: ModuleType, name: str, operator: str, threshold: float) -> dict[str, Any]:
    rows = [r for r in tc.load_rows(DATA_DIR / f"{name}.jsonl") if tc.is_heldout(r)]
    scorer = SCORERS[name][0]()
    values = np.array([float(scorer.score_text(r["text"]).value) for r in rows])  # type: ignore[arg-type]
    labels = np.array([int(r["label"]) for r in rows])
    result: dict[str, Any] = {"rows": len(rows), "positive_rate": round(float(labels.mean()), 4)}
    result["auroc"] = round(tc.auroc(values, labels), 4)
    metrics = tc.prf(tc.flags(values, threshold, operator), labels)
    result.update({f"{k}@{operator} {threshold:g}": round(v, 4) for k, v in metrics.items()})
    if name == "prompt_injection":
        kinds = np.array([r.get("kind", "") for r in rows])
        flagged = tc.flags(values, threshold, operator)
        hard = np.isin(kinds, ["hard_negative", "hard_negative_weak"])
        result["hard_negative_flag_rate"] = round(float(flagged[hard].mean()), 4)
    return result


def benign_prompt_flag_rate(tc: ModuleType, name: str, operator: str, threshold: float) -> float:
    """How often ordinary user prompts (held-out benign queries/prompts/chat turns) are flagged."""
    rows = [
        r
        for r in tc.load_rows(DATA_DIR / "prompt_injection.jsonl")
        if tc.is_heldout(r) and r.get("kind") in ("benign_query", "benign_prompt", "benign_chat")
    ]
    scorer = SCORERS[name][0]()
    values = np.array([float(scorer.score_text(r["text"]).value) for r in rows])  # type: ignore[arg-type]
    return round(float(tc.flags(values, threshold, operator).mean()), 4)


def tone_accuracy(tc: ModuleType) -> dict[str, Any]:
    rows = [r for r in tc.load_rows(DATA_DIR / "tone.jsonl") if tc.is_heldout(r)]
    scorer = ToneScorer()
    pred = [str(scorer.score_text(r["text"]).value) for r in rows]
    gold = [r["label"] for r in rows]
    macro, per_class = tc.macro_f1(pred, gold, tc.TONE_LABELS)
    accuracy = float(np.mean(np.asarray(pred) == np.asarray(gold)))
    return {
        "rows": len(rows),
        "macro_f1": round(macro, 4),
        "accuracy": round(accuracy, 4),
        "f1_per_class": {k: round(v, 4) for k, v in per_class.items()},
    }


def report(accuracy: bool = True) -> dict[str, Any]:
    """Per scorer: latency (200 chars / 2 KB), load time, memory, and held-out accuracy."""
    out: dict[str, Any] = {"all_models": all_load_cost(), "cold_start": cold_start()}
    weights = {p.name: p.stat().st_size for p in sorted(classifiers.WEIGHTS_DIR.glob("*.npz"))}
    out["weights_bytes"] = {**weights, "total": sum(weights.values())}
    tc = _training_module() if accuracy and DATA_DIR.exists() else None
    for name, (factory, operator, threshold) in SCORERS.items():
        entry: dict[str, Any] = load_cost(name)
        scorer = factory()
        entry["latency_200_chars"] = latency(scorer, TEXT_200)
        entry["latency_2kb"] = latency(scorer, TEXT_2K, repeat=200)
        if tc is not None:
            if name == "tone":
                entry["heldout"] = tone_accuracy(tc)
            else:
                entry["heldout"] = binary_accuracy(tc, name, operator, threshold)
                entry["heldout"]["benign_prompt_flag_rate"] = benign_prompt_flag_rate(
                    tc, name, operator, threshold
                )
        out[name] = entry
    return out


if __name__ == "__main__":
    print(json.dumps(report(accuracy="--no-accuracy" not in sys.argv), indent=2))

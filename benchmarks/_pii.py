"""PII scorer benchmark: latency, load time and accuracy on the development sets (Presidio beside it).

Run ``python benchmarks/_pii.py``. Accuracy is measured on ``../shared/data/train/pii_presidio_*_dev.jsonl``
(development data: the numbers are in-sample for tuning, not test results). Scoring rules:

- the row's gold categories are its ``label`` minus ``date_time`` (any date, not a date of birth);
- a predicted category is *ignored* (neither right nor wrong) where the row has a span of the same kind
  that the set does not count as a target: ``date_of_birth`` on rows with a ``date_time`` span, ``address``
  on rows with an ``other:ADDRESS`` span (the generated set leaves addresses out of its targets);
- "any PII" is row level: a row is positive when it has a gold category / a non-ignored prediction.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEV_DIR = ROOT.parent / "shared" / "data" / "train"
DEV_FILES = ("pii_presidio_synth_dev.jsonl", "pii_presidio_generated_dev.jsonl")
VALIDATED = ("credit_card_info", "email", "phone_number", "ssn", "network_info", "account_info")
IGNORED_WHEN = {"date_of_birth": "date_time", "address": "other:ADDRESS"}

TEXT_200 = (
    "Hi, this is Maria Gonzalez. Please update my card 4111 1111 1111 1111 and send the receipt to "
    "maria.g@example.com or call me at (415) 555-0142. I moved to 1200 Market Street, San Francisco."
)[:200]
TEXT_2K = (
    "Thanks for getting back to me so quickly. I have gone through the summary of the meeting and I think "
    "we agreed on most of the points, apart from the timeline for the second phase of the migration. "
) * 9 + TEXT_200


def load_dev_rows(files: Iterable[str] = DEV_FILES) -> list[dict[str, Any]]:
    """The rows of the development files that exist (empty if none does)."""
    rows: list[dict[str, Any]] = []
    for name in files:
        path = DEV_DIR / name
        if path.exists():
            with path.open(encoding="utf-8") as fh:
                rows.extend(json.loads(line) for line in fh if line.strip())
    return rows


def _gold_and_pred(row: dict[str, Any], predicted: set[str]) -> tuple[set[str], set[str]]:
    gold = set(row["label"]) - {"date_time"}
    span_types = {s["type"] for s in row["spans"]}
    pred = {c for c in predicted if c in gold or IGNORED_WHEN.get(c) not in span_types}
    return gold, pred


def evaluate(rows: list[dict[str, Any]], categorize: Callable[[str], Iterable[str]]) -> dict[str, Any]:
    """Row-level any-PII precision/recall/F1 and per-category recall/precision of ``categorize``."""
    tp = fp = fn = 0
    cat_tp: Counter[str] = Counter()
    cat_gold: Counter[str] = Counter()
    cat_pred: Counter[str] = Counter()
    for row in rows:
        gold, pred = _gold_and_pred(row, set(categorize(row["text"])))
        tp += bool(gold) and bool(pred)
        fp += not gold and bool(pred)
        fn += bool(gold) and not pred
        cat_gold.update(gold)
        cat_pred.update(pred)
        cat_tp.update(gold & pred)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    cats = sorted(set(cat_gold) | set(cat_pred))
    return {
        "rows": len(rows),
        "any_pii": {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        },
        "category_precision_overall": round(sum(cat_tp.values()) / max(1, sum(cat_pred.values())), 4),
        "per_category": {
            c: {
                "gold": cat_gold[c],
                "predicted": cat_pred[c],
                "recall": round(cat_tp[c] / cat_gold[c], 4) if cat_gold[c] else None,
                "precision": round(cat_tp[c] / cat_pred[c], 4) if cat_pred[c] else None,
            }
            for c in cats
        },
    }


def _latency(fn: Callable[[str], object], text: str, n: int = 2000) -> dict[str, float]:
    for _ in range(50):
        fn(text)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times) * 1e3, 4),
        "p99_ms": round(times[int(n * 0.99)] * 1e3, 4),
    }


def _categories(value: object) -> list[str]:
    """A PII scorer's value as a list of category names (it is always a list for these scorers)."""
    return [str(c) for c in value] if isinstance(value, list) else []


def _builtin() -> tuple[float, Callable[[str], list[str]]]:
    """The scorer and its load time (its own import, word lists, phonenumbers; not the stageguard package)."""
    import stageguard.scorers.base  # noqa: F401 - shared by every scorer, not part of the PII load time

    t0 = time.perf_counter()
    from stageguard.scorers.pii import PIIScorer

    scorer = PIIScorer("input")
    scorer.score_text("warm up: John Smith, 12 Oak St")  # loads the word lists
    load = time.perf_counter() - t0
    return load, lambda text: _categories(scorer.score_text(text).value)


def _presidio() -> tuple[float, Callable[[str], list[str]]] | None:
    try:
        import presidio_analyzer  # noqa: F401
    except ImportError:
        return None
    import stageguard.scorers.base  # noqa: F401

    t0 = time.perf_counter()
    from stageguard.scorers.presidio import PresidioPIIScorer

    scorer = PresidioPIIScorer("input")
    scorer.score_text("warm up: John Smith, 12 Oak St")
    load = time.perf_counter() - t0
    return load, lambda text: _categories(scorer.score_text(text).value)


def _report_one(
    load: float, categorize: Callable[[str], list[str]], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    result: dict[str, Any] = {"load_s": round(load, 4)}
    result["latency_200_chars"] = _latency(categorize, TEXT_200)
    result["latency_2k_chars"] = _latency(categorize, TEXT_2K, n=500)
    if rows:
        result["accuracy"] = evaluate(rows, categorize)
    return result


def report() -> dict[str, Any]:
    """Latency (p50/p99 on 200-char and 2 KB texts), load time and dev-set accuracy, per backend."""
    rows = load_dev_rows()
    out: dict[str, Any] = {"dev_rows": len(rows), "builtin": _report_one(*_builtin(), rows)}
    presidio = _presidio()
    out["presidio"] = _report_one(*presidio, rows) if presidio else "presidio_analyzer not installed"
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    print(json.dumps(report(), indent=2, ensure_ascii=False))

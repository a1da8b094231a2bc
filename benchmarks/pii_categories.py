"""PII category accuracy of the built-in scorer: per-category P/R/F1, category micro-F1 and any-PII F1.

Run ``python benchmarks/pii_categories.py``. Data sets:

- the two Presidio development files in ``../shared/data/train`` (skipped when absent). The scorer was tuned
  on them, so their figures are **in-sample**;
- ``tests/fixtures/pii_forms.jsonl``: short form-like texts and look-alike negatives, hand-written by the
  stageguard developers before the form-related changes. Closer to unseen data, but written by us.

Scoring is row level and per category (the rules of ``benchmarks/_pii.py``: gold = ``label`` minus
``date_time``, some predictions on spans the set does not target are ignored). For each row, a category is a
true positive when both gold and prediction have it, a false positive / negative when only one does;
category micro-F1 sums these over categories and rows. "Any PII" is positive when a row has any category.
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

sys.path.insert(0, str(Path(__file__).parent))

import _pii

DEV_DIR = _pii.DEV_DIR
DEV_FILES = _pii.DEV_FILES
FORMS = _pii.ROOT / "tests" / "fixtures" / "pii_forms.jsonl"

Categorize = Callable[[str], Iterable[str]]


def load_rows(path: Path) -> list[dict[str, Any]]:
    """JSON Lines rows of ``path`` (empty when the file does not exist)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def category_scores(rows: list[dict[str, Any]], categorize: Categorize) -> dict[str, Any]:
    """Per-category precision/recall/F1, category micro-F1 and row-level any-PII F1 of ``categorize``."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    any_tp = any_fp = any_fn = 0
    for row in rows:
        row = {"spans": [], **row}  # the forms fixture has no spans
        gold, pred = _pii._gold_and_pred(row, set(categorize(row["text"])))
        tp.update(gold & pred)
        fp.update(pred - gold)
        fn.update(gold - pred)
        any_tp += bool(gold) and bool(pred)
        any_fp += not gold and bool(pred)
        any_fn += bool(gold) and not pred
    per_category = {}
    for c in sorted(set(tp) | set(fp) | set(fn)):
        p = tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else 0.0
        r = tp[c] / (tp[c] + fn[c]) if tp[c] + fn[c] else 0.0
        per_category[c] = {"tp": tp[c], "fp": fp[c], "fn": fn[c], "precision": p, "recall": r}
        per_category[c]["f1"] = _f1(tp[c], fp[c], fn[c])
    total = (sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return {
        "rows": len(rows),
        "micro_f1": _f1(*total),
        "any_pii_f1": _f1(any_tp, any_fp, any_fn),
        "per_category": per_category,
    }


def _print_scores(title: str, scores: dict[str, Any]) -> None:
    print(f"\n== {title} ({scores['rows']} rows)")
    print(f"{'category':<18} {'tp':>5} {'fp':>4} {'fn':>4} {'P':>6} {'R':>6} {'F1':>6}")
    for c, s in scores["per_category"].items():
        print(
            f"{c:<18} {s['tp']:>5} {s['fp']:>4} {s['fn']:>4} "
            f"{s['precision']:>6.3f} {s['recall']:>6.3f} {s['f1']:>6.3f}"
        )
    print(f"category micro-F1 {scores['micro_f1']:.4f}   any-PII F1 {scores['any_pii_f1']:.4f}")


def _p50_ms(categorize: Categorize, text: str, n: int = 1000) -> float:
    for _ in range(50):
        categorize(text)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        categorize(text)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    from stageguard.scorers.pii import detect_pii

    def categorize(text: str) -> set[str]:
        return {s.label for s in detect_pii(text)}

    for name in DEV_FILES:
        rows = load_rows(DEV_DIR / name)
        if rows:
            _print_scores(f"{name} -- in-sample: tuned on", category_scores(rows, categorize))
        else:
            print(f"\n== {name}: not found under {DEV_DIR}")
    _print_scores(
        "tests/fixtures/pii_forms.jsonl -- hand-written by us, not tuned row by row",
        category_scores(load_rows(FORMS), categorize),
    )
    print(f"\np50 latency, {len(_pii.TEXT_200)}-char text: {_p50_ms(categorize, _pii.TEXT_200):.3f} ms")


if __name__ == "__main__":
    sys.path.insert(0, str(_pii.ROOT / "src"))
    main()

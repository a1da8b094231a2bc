"""``context_adherence`` on labelled pairs: ranking, the ``lt 0.1`` rule and the length baseline.

Run ``python benchmarks/groundedness.py [--split report|tune|all]``. Two sources:

- ``../shared/data/train/groundedness_halueval_qa_dev.jsonl`` (HaluEval QA, development data), split by
  a fixed rule fixed before any tuning: ``crc32(str(pair_id)) % 2 == 0`` is the *tuning* half (weights
  may be tuned on it), ``== 1`` the *report* half (never looked at while tuning). Default: report half.
- ``tests/fixtures/groundedness_contradictions.jsonl``: written by us (stageguard developers) by hand,
  before the contradiction checks were written: a grounded answer and a contradicting answer of similar
  length per item (numbers, dates, names, places, negation). Not independent data: treat as a sanity check.
- ``tests/fixtures/groundedness_paraphrases.jsonl``: written by us by hand, before looking at any score:
  80 *correct* answers in assistant style (paraphrased, longer, extra correct detail; 20 with synonyms or
  inflections the context lacks). HaluEval's correct answers are copied spans, so they cannot show how
  often real grounded answers get flagged; this fixture does (grounded only: a false-flag rate).

All figures are on the reported (calibrated) scale, ``ContextAdherenceScorer().score(...).value``; the
"operating point" section works on the raw scale (``operating_point=0.1`` is the identity remap) and shows
how ``ADHERENCE_OPERATING_POINT`` in ``stageguard.scorers.rag`` was chosen.

For each labelled source it prints pairwise accuracy (grounded answer scored above the other, ties
half) overall and on length-matched pairs (see :func:`length_matched`), AUROC, recall of ``lt 0.1`` on
the unsupported answers, its false-flag rate on the grounded ones, the same figures for the length
baseline ("shorter = grounded": on HaluEval, hallucinated answers are usually longer), and the threshold
trade-off table.
"""

from __future__ import annotations

import argparse
import json
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stageguard.payload import Payload
from stageguard.scorers.rag import ADHERENCE_OPERATING_POINT, ContextAdherenceScorer

ROOT = Path(__file__).resolve().parents[1]
HALUEVAL = ROOT.parent / "shared" / "data" / "train" / "groundedness_halueval_qa_dev.jsonl"
FIXTURE = ROOT / "tests" / "fixtures" / "groundedness_contradictions.jsonl"
PARAPHRASES = ROOT / "tests" / "fixtures" / "groundedness_paraphrases.jsonl"
THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
RULE = 0.1  # Galileo's seed rule: context_adherence lt 0.1
TUNING_FALSE_FLAGS = 0.01  # the operating point: largest raw cut flagging at most this share (tuning half)
RAW_CUTS = (0.017, 0.021, 0.051, 0.081, 0.1, 0.3, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class Pair:
    """One question answered twice against the same context: grounded and unsupported."""

    context: str
    question: str
    grounded: str
    unsupported: str
    category: str = ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def halves(pair_id: object) -> str:
    """The fixed split: "tune" or "report", from a CRC-32 of the pair id (stable across runs)."""
    return "tune" if zlib.crc32(str(pair_id).encode()) % 2 == 0 else "report"


def halueval_pairs(split: str) -> list[Pair]:
    by_pair: dict[object, dict[int, dict[str, Any]]] = {}
    for row in read_jsonl(HALUEVAL):
        by_pair.setdefault(row["pair_id"], {})[row["label"]] = row
    pairs = []
    for pair_id, rows in by_pair.items():
        if 0 not in rows or 1 not in rows or split not in ("all", halves(pair_id)):
            continue
        right, wrong = rows[1], rows[0]
        pairs.append(Pair(right["context"], right["question"], right["answer"], wrong["answer"]))
    return pairs


def fixture_pairs() -> list[Pair]:
    return [
        Pair(r["context"], r["question"], r["grounded"], r["contradicting"], r["category"])
        for r in read_jsonl(FIXTURE)
    ]


def paraphrase_rows() -> list[dict[str, Any]]:
    return read_jsonl(PARAPHRASES)


def adherence_fn(scorer: ContextAdherenceScorer) -> Callable[[str, str, str], float]:
    def adherence(context: str, question: str, answer: str) -> float:
        value = scorer.score(Payload(input=question, output=answer, context=[context])).value
        assert isinstance(value, float | int)
        return float(value)

    return adherence


def n_words(text: str) -> int:
    return len(text.split())


def length_matched(pair: Pair) -> bool:
    """Answers of similar length: their word counts differ by at most 2 words or 30% of the longer."""
    a, b = n_words(pair.grounded), n_words(pair.unsupported)
    return abs(a - b) <= max(2.0, 0.3 * max(a, b))


def pairwise(scored: Iterable[tuple[float, float]]) -> float:
    """Share of (grounded, unsupported) score pairs ranked right; ties count half."""
    results = [1.0 if g > u else 0.5 if g == u else 0.0 for g, u in scored]
    return sum(results) / len(results) if results else float("nan")


def margin_95(share: float, n: int) -> float:
    """Half-width of a normal-approximation 95% interval for a share measured on ``n`` pairs."""
    return 1.96 * math.sqrt(share * (1 - share) / n) if n else float("nan")


def auroc(positives: list[float], negatives: list[float]) -> float:
    """Probability that a grounded answer outranks an unsupported one (ties half), over all answers."""
    return pairwise((p, n) for p in positives for n in negatives)


@dataclass(frozen=True)
class Scored:
    pair: Pair
    grounded: float
    unsupported: float


def score_pairs(pairs: list[Pair], score: Callable[[str, str, str], float]) -> list[Scored]:
    return [
        Scored(p, score(p.context, p.question, p.grounded), score(p.context, p.question, p.unsupported))
        for p in pairs
    ]


def report(title: str, pairs: list[Pair]) -> dict[str, float]:
    """Print the figures for ``pairs`` and return the headline ones."""
    adherence = adherence_fn(ContextAdherenceScorer())

    def shorter(_context: str, _question: str, answer: str) -> float:
        return -float(n_words(answer))

    ours, base = score_pairs(pairs, adherence), score_pairs(pairs, shorter)
    matched = [i for i, p in enumerate(pairs) if length_matched(p)]
    grounded = [s.grounded for s in ours]
    unsupported = [s.unsupported for s in ours]
    figures = {
        "pairwise": pairwise((s.grounded, s.unsupported) for s in ours),
        "pairwise_matched": pairwise((ours[i].grounded, ours[i].unsupported) for i in matched),
        "auroc": auroc(grounded, unsupported),
        "recall": sum(v < RULE for v in unsupported) / len(unsupported),
        "false_flags": sum(v < RULE for v in grounded) / len(grounded),
    }
    print(f"== {title}: {len(pairs)} pairs, {len(matched)} length-matched")
    print(f"   {'':34}{'scorer':>8}{'(95% margin)':>14}{'length baseline':>18}")
    rows = [
        (
            "pairwise accuracy",
            figures["pairwise"],
            len(pairs),
            pairwise((s.grounded, s.unsupported) for s in base),
        ),
        (
            "pairwise, length-matched pairs",
            figures["pairwise_matched"],
            len(matched),
            pairwise((base[i].grounded, base[i].unsupported) for i in matched),
        ),
        (
            "AUROC",
            figures["auroc"],
            0,
            auroc([s.grounded for s in base], [s.unsupported for s in base]),
        ),
    ]
    for name, value, n, baseline in rows:
        margin = f"± {margin_95(value, n):.3f}" if n else ""
        print(f"   {name:<34}{value:>8.3f}{margin:>14}{baseline:>18.3f}")
    print(
        f"   rule lt {RULE}: recall on unsupported {figures['recall']:.3f}, false flags on grounded "
        f"{figures['false_flags']:.3f}"
    )
    print("   threshold (calibrated)   recall (unsupported < t)   false-flag rate (grounded < t)")
    for t in THRESHOLDS:
        recall = sum(v < t for v in unsupported) / len(unsupported)
        false = sum(v < t for v in grounded) / len(grounded)
        print(f"   {t:<25}{recall:>12.3f}{false:>28.3f}")
    categories = sorted({p.category for p in pairs if p.category})
    for category in categories:
        sub = [s for s in ours if s.pair.category == category]
        caught = sum(s.unsupported < RULE for s in sub)
        print(
            f"   {category:<10} pairwise {pairwise((s.grounded, s.unsupported) for s in sub):.3f}   "
            f"caught {caught}/{len(sub)}   grounded flagged {sum(s.grounded < RULE for s in sub)}"
        )
    return figures


def grounded_report(title: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Correct answers only: the share flagged by ``lt 0.1`` (and other thresholds), overall, by category."""
    adherence = adherence_fn(ContextAdherenceScorer())
    values = [(adherence(r["context"], r["question"], r["answer"]), r.get("category", "")) for r in rows]
    flagged = sum(v < RULE for v, _ in values)
    figures = {"false_flags": flagged / len(values)}
    print(f"== {title}: {len(values)} correct answers")
    print(f"   rule lt {RULE}: false flags {flagged}/{len(values)} = {figures['false_flags']:.3f}")
    print("   threshold (calibrated)   false-flag rate (grounded < t)")
    for t in THRESHOLDS:
        print(f"   {t:<25}{sum(v < t for v, _ in values) / len(values):>12.3f}")
    for category in sorted({c for _, c in values if c}):
        sub = [v for v, c in values if c == category]
        print(f"   {category:<12} flagged {sum(v < RULE for v in sub)}/{len(sub)}")
    return figures


def operating_point() -> float | None:
    """Print how the raw operating point ``c`` comes out: the tuning-half rule and its cost elsewhere."""
    if not HALUEVAL.exists():
        print("== operating point: skipped, HaluEval data not found")
        return None
    raw = adherence_fn(ContextAdherenceScorer(operating_point=RULE))  # the identity remap: raw values
    tune = score_pairs(halueval_pairs("tune"), raw)
    grounded = sorted(s.grounded for s in tune)
    allowed = math.floor(TUNING_FALSE_FLAGS * len(grounded))
    c = grounded[allowed]  # largest cut c with #(grounded < c) <= allowed
    paraphrases = [raw(r["context"], r["question"], r["answer"]) for r in paraphrase_rows()]
    contradictions = score_pairs(fixture_pairs(), raw)
    print(
        f"== operating point (raw scale): largest cut flagging <= {TUNING_FALSE_FLAGS:.0%} of grounded "
        f"answers on the tuning half: c = {c:.3f}; in use: ADHERENCE_OPERATING_POINT = "
        f"{ADHERENCE_OPERATING_POINT}"
    )
    print(
        f"   {'raw cut':<10}{'tune recall':>12}{'tune false flags':>18}{'paraphrases flagged':>21}"
        f"{'contradictions caught':>23}"
    )
    for cut in sorted({*RAW_CUTS, c}):
        print(
            f"   {cut:<10.3f}{sum(s.unsupported < cut for s in tune) / len(tune):>12.3f}"
            f"{sum(s.grounded < cut for s in tune) / len(tune):>18.3f}"
            f"{sum(v < cut for v in paraphrases) / len(paraphrases):>21.3f}"
            f"{sum(s.unsupported < cut for s in contradictions):>18}/{len(contradictions)}"
        )
    return c


SEMANTIC_GRID = (
    (0.4, 0.7),
    (0.45, 0.75),
    (0.5, 0.8),
    (0.55, 0.85),
    (0.6, 0.8),
    (0.6, 0.9),
    (0.65, 0.9),
    (0.7, 0.95),
    (2.0, 3.0),
)
SEMANTIC_CUTS = (0.1, 0.3, 0.5, 0.7)


def semantic_grid() -> None:
    """The semantic-support thresholds (``SEMANTIC_LOW``, ``SEMANTIC_HIGH``) on the *tuning* half only.

    HaluEval's right answers are copied spans, so semantic credit can only cost there (it lifts some
    hallucinated answers); the rule: the lowest ``SEMANTIC_LOW`` whose tuning-half recall at every raw cut
    of ``SEMANTIC_CUTS`` is at most one pair (1/215) below that without semantic credit (last row, 2.0 = off)
    and whose AUROC is not lower by more than 0.002."""
    from stageguard.scorers import rag

    saved = rag.SEMANTIC_LOW, rag.SEMANTIC_HIGH
    pairs = halueval_pairs("tune")
    print("== semantic support grid (HaluEval tuning half, raw scale)")
    print(
        f"   {'low':>5}{'high':>6}{'AUROC':>8}"
        + "".join(f"{'recall<' + str(c):>13}" for c in SEMANTIC_CUTS)
        + f"{'false<0.5':>11}"
    )
    try:
        for low, high in SEMANTIC_GRID:
            rag.SEMANTIC_LOW, rag.SEMANTIC_HIGH = low, high
            rag.index_context.cache_clear()
            tune = score_pairs(pairs, adherence_fn(ContextAdherenceScorer(operating_point=RULE)))
            grounded, unsupported = [s.grounded for s in tune], [s.unsupported for s in tune]
            recalls = "".join(f"{sum(v < c for v in unsupported) / len(tune):>13.3f}" for c in SEMANTIC_CUTS)
            print(
                f"   {low:>5.2f}{high:>6.2f}{auroc(grounded, unsupported):>8.3f}{recalls}"
                f"{sum(v < 0.5 for v in grounded) / len(tune):>11.3f}"
            )
    finally:
        rag.SEMANTIC_LOW, rag.SEMANTIC_HIGH = saved
        rag.index_context.cache_clear()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--split", choices=("report", "tune", "all"), default="report")
    parser.add_argument("--misses", action="store_true", help="list the pairs ranked wrong (tune split)")
    parser.add_argument(
        "--semantic-grid", action="store_true", help="only the semantic-support grid on the tuning half"
    )
    args = parser.parse_args(argv)
    if args.semantic_grid:
        semantic_grid()
        return
    if HALUEVAL.exists():
        pairs = halueval_pairs(args.split)
        report(
            f"HaluEval QA dev, {args.split} half(s) (development data, split by crc32(pair_id) % 2)", pairs
        )
        if args.misses and args.split == "tune":
            _print_misses(pairs)
    else:
        print(f"== HaluEval QA dev: skipped, {HALUEVAL} not found")
    report("tests/fixtures/groundedness_contradictions.jsonl (hand-written by us)", fixture_pairs())
    grounded_report("tests/fixtures/groundedness_paraphrases.jsonl (hand-written by us)", paraphrase_rows())
    operating_point()


def _print_misses(pairs: list[Pair]) -> None:
    scorer = ContextAdherenceScorer()
    for p in pairs:
        g = scorer.score(Payload(input=p.question, output=p.grounded, context=[p.context]))
        u = scorer.score(Payload(input=p.question, output=p.unsupported, context=[p.context]))
        assert isinstance(g.value, float | int) and isinstance(u.value, float | int)
        if g.value <= u.value or u.value >= RULE or g.value < RULE:
            print(f"-- Q: {p.question}\n   G {g.value:.3f} {p.grounded!r}: {g.explanation}")
            print(f"   U {u.value:.3f} {p.unsupported!r}: {u.explanation}")


if __name__ == "__main__":
    main()

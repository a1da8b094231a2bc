"""Decision quality of the built-in classifiers on sources they never saw.

Run ``python benchmarks/quality.py [--tasks prompt_injection toxicity sexism tone] [--json out.json]``
(needs ``../shared/data`` and the training extras: scikit-learn).

Every figure is **leave one source out**: for each source S (a repository of ``../shared/data/train``), the
whole training pipeline of ``scripts/train_classifiers.py`` (augmentation, mined hard negatives, n-gram
model, embedding head, fusion, calibration and operating point) is fitted without any row of S, then
scores S. Pooling those predictions gives, for every row, the score of a model that never saw its
source: that pool gives AUROC, precision/recall/FPR at the seed threshold, FPR on hard benign rows on
their own, calibration error and the trade-off curve. Small sources (< ``--min-rows`` rows) are left out
together as one unit. Figures measured on rows a model was tuned on are never printed.

``--shipped`` instead scores every row with the weights in the package (only honest for sources those
weights never saw, e.g. a ``*_extra.jsonl`` file added after they were trained).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data" / "train"
THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def training_module() -> ModuleType:
    path = ROOT / "scripts" / "train_classifiers.py"
    spec = importlib.util.spec_from_file_location("train_classifiers", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_classifiers"] = module
    spec.loader.exec_module(module)
    return module


tc = training_module()


def hard_group(task: str, row: dict[str, Any]) -> str | None:
    """Hard benign rows: injection look-alikes (trigger words, personas); for toxicity and sexism the
    HateCheck non-hateful cases (counter-speech, negation, reclaimed slurs) and, for toxicity, the
    implicit-hate corpus' not-hate tweets on the same political topics."""
    if int(row["label"]) != 0:
        return None
    if task == "prompt_injection":
        return tc.hard_benign_group(row)
    fam = tc.source_family(row)
    if fam == "paul-rottger/hatecheck-data":
        return "counter_speech_and_negation"
    if fam == "aspenywang/Implicit-Hate":
        return "same_topic_not_hate"
    return None


def units(rows: Sequence[dict[str, Any]], min_rows: int) -> dict[str, set[str]]:
    """Leave-out units: one per source with at least ``min_rows`` rows, the small ones together."""
    counts = Counter(tc.source_family(r) for r in rows)
    out = {fam: {fam} for fam, n in counts.items() if n >= min_rows}
    small = {fam for fam, n in counts.items() if n < min_rows}
    if small:
        out["(small sources: " + ", ".join(sorted(small)) + ")"] = small
    return out


class Embeddings:
    """Static sentence embeddings of every text, computed once (None: n-gram models only)."""

    def __init__(self, enabled: bool, tier: str = "static") -> None:
        self.fn = (tc.minilm_embed() if tier == "minilm" else tc.static_embed()) if enabled else None
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray | None:
        if self.fn is None:
            return None
        views = [tc.embed_view(t) for t in texts]
        missing = list(dict.fromkeys(v for v in views if v not in self.cache))
        if missing:
            self.cache.update(zip(missing, self.fn(missing), strict=True))
        return np.stack([self.cache[v] for v in views]) if views else np.zeros((0, 1))


def quiet(_: str) -> None:
    pass


# --- binary tasks -------------------------------------------------------------------------------------------


def loso_binary(
    task_name: str, rows: list[dict[str, Any]], embed: Embeddings, args: argparse.Namespace
) -> dict[str, Any]:
    task = tc.TASKS[task_name]
    scores = np.full(len(rows), np.nan)
    probs = np.full(len(rows), np.nan)
    fams = np.array([tc.source_family(r) for r in rows])
    per_unit: dict[str, Any] = {}
    for name, members in units(rows, args.min_rows).items():
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        test = np.isin(fams, list(members))
        train = [r for r, keep in zip(rows, ~test, strict=True) if keep]
        train += tc.augmentation(task_name) + tc.mined_negatives(task, train, DATA_DIR, exclude=members)
        pipeline, _ = tc.fit_pipeline(
            task, train, embed([r["text"] for r in train]), folds=args.folds, log=quiet
        )
        texts = [rows[i]["text"] for i in np.flatnonzero(test)]
        ngram, head = pipeline.components(texts, embed(texts))  # scanned once, fused here
        m = tc.fuse(pipeline.fusion, tc.fusion_columns(task, texts, ngram, head))
        scores[test] = [pipeline.calibration(float(v)) for v in m]
        cal = pipeline.calibration
        probs[test] = 1.0 / (1.0 + np.exp(-np.clip(cal.a * m + cal.b, -700, 700)))
        test_rows = [rows[i] for i in np.flatnonzero(test)]
        per_unit[name] = decision_figures(task, scores[test], test_rows)
        if "auroc" in per_unit[name]:  # which part carries to an unseen source
            y = np.array([int(r["label"]) for r in test_rows])
            per_unit[name]["auroc_ngram"] = round(tc.auroc(ngram, y), 4)
            if head is not None:
                per_unit[name]["auroc_embedding"] = round(tc.auroc(head, y), 4)
        print(f"  [{task_name}] without {name}: {per_unit[name]} ({time.time() - t0:.0f} s)", flush=True)
    done = np.flatnonzero(~np.isnan(scores))  # every row, unless --only
    pooled = pooled_figures(task_name, task, scores[done], probs[done], [rows[i] for i in done])
    return {"pooled": pooled, "by_source": per_unit}


def decision_figures(task: Any, scores: np.ndarray, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    y = np.array([int(r["label"]) for r in rows]).astype(bool)
    flagged = tc.flags(scores, task.threshold, task.operator)
    out: dict[str, Any] = {"rows": len(rows), "positives": int(y.sum())}
    if y.any() and (~y).any():
        out["auroc"] = round(tc.auroc(scores, y), 4)
    if y.any():
        out["recall"] = round(float(flagged[y].mean()), 4)
    if (~y).any():
        out["fpr"] = round(float(flagged[~y].mean()), 4)
    return out


def calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the Platt probability (10 equal-width bins)."""
    idx = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(float(probs[sel].mean()) - float(y[sel].mean()))
    return total


def pooled_figures(
    task_name: str, task: Any, scores: np.ndarray, probs: np.ndarray, rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    y = np.array([int(r["label"]) for r in rows]).astype(bool)
    groups = np.array([hard_group(task_name, r) or "" for r in rows])
    flagged = tc.flags(scores, task.threshold, task.operator)
    out: dict[str, Any] = {
        "rows": len(rows),
        "auroc": round(tc.auroc(scores, y), 4),
        "rule": f"{task.operator} {task.threshold:g}",
        **{k: round(v, 4) for k, v in tc.prf(flagged, y).items()},
        "ece_platt": round(calibration_error(probs, y), 4),
    }
    for g in sorted(set(groups) - {""}):
        out[f"fpr_hard_{g}"] = round(float(flagged[groups == g].mean()), 4)
    curve = []
    for t in THRESHOLDS:
        f = tc.flags(scores, t, task.operator)
        point = {"threshold": t, "recall": round(float(f[y].mean()), 4), "fpr": round(float(f[~y].mean()), 4)}
        for g in sorted(set(groups) - {""}):
            point[f"fpr_{g}"] = round(float(f[groups == g].mean()), 4)
        curve.append(point)
    out["curve"] = curve
    return out


# --- tone ---------------------------------------------------------------------------------------------------


def loso_tone(rows: list[dict[str, Any]], embed: Embeddings, args: argparse.Namespace) -> dict[str, Any]:
    fams = np.array([tc.source_family(r) for r in rows])
    pred = np.empty(len(rows), dtype=object)
    per: dict[str, Any] = {}
    for fam in sorted(set(fams)):
        if args.only and fam not in args.only:
            continue
        t0 = time.time()
        test = fams == fam
        train = [r for r, keep in zip(rows, ~test, strict=True) if keep]
        pipeline, _ = tc.fit_tone(train, embed([r["text"] for r in train]), folds=args.folds, log=quiet)
        texts = [rows[i]["text"] for i in np.flatnonzero(test)]
        pred[test] = pipeline.predict(texts, embed(texts))
        gold = [rows[i]["label"] for i in np.flatnonzero(test)]
        present = [label for label in tc.TONE_LABELS if label in set(gold)]
        macro, per_class = tc.macro_f1(list(pred[test]), gold, present)
        per[fam] = {
            "rows": int(test.sum()),
            "macro_f1_over_present_classes": round(macro, 4),
            "classes": len(present),
            "f1": {k: round(v, 3) for k, v in per_class.items()},
        }
        print(f"  [tone] without {fam}: {per[fam]} ({time.time() - t0:.0f} s)", flush=True)
    done = np.flatnonzero(pred != None)  # noqa: E711  (every row, unless --only)
    gold = [rows[i]["label"] for i in done]
    macro, per_class = tc.macro_f1(list(pred[done]), gold, tc.TONE_LABELS)
    pooled = {
        "rows": len(done),
        "macro_f1": round(macro, 4),
        "accuracy": round(float(np.mean(pred[done] == np.array(gold, dtype=object))), 4),
        "f1": {k: round(v, 3) for k, v in per_class.items()},
    }
    return {"pooled": pooled, "by_source": per}


# --- shipped weights ----------------------------------------------------------------------------------------


def shipped(task_name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from stageguard.scorers import classifiers as c

    factories = {
        "toxicity": c.ToxicityScorer,
        "sexism": c.SexismScorer,
        "prompt_injection": c.PromptInjectionScorer,
        "tone": c.ToneScorer,
    }
    scorer = factories[task_name]()
    values = [scorer.score_text(r["text"]).value for r in rows]
    fams = np.array([tc.source_family(r) for r in rows])
    out: dict[str, Any] = {}
    for fam in sorted(set(fams)):
        sel = np.flatnonzero(fams == fam)
        sub = [rows[i] for i in sel]
        if task_name == "tone":
            gold = [r["label"] for r in sub]
            present = [label for label in tc.TONE_LABELS if label in set(gold)]
            out[fam] = {"macro_f1": round(tc.macro_f1([values[i] for i in sel], gold, present)[0], 4)}
        else:
            out[fam] = decision_figures(tc.TASKS[task_name], np.array([float(values[i]) for i in sel]), sub)
    return out


# --- markdown ---------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(results: dict[str, Any]) -> str:
    """The figures as the Markdown tables quoted in docs/classifiers.md."""
    out: list[str] = []
    for task_name, result in results.items():
        pooled, by_source = result.get("pooled", {}), result.get("by_source", {})
        out.append(f"### {task_name}\n")
        if task_name == "tone":
            out.append(
                f"Pooled over every row: macro-F1 {_cell(pooled.get('macro_f1'))} over the 9 classes, "
                f"accuracy {_cell(pooled.get('accuracy'))}.\n"
            )
            out.append(
                "| source left out | rows | classes | macro-F1 (its classes) |\n| --- | --- | --- | --- |"
            )
            for fam, e in by_source.items():
                out.append(
                    f"| {fam} | {e['rows']} | {e['classes']} | {_cell(e['macro_f1_over_present_classes'])} |"
                )
            out.append("")
            continue
        hard = [k for k in pooled if k.startswith("fpr_hard_")]
        out.append("| pooled | AUROC | rule | precision | recall | FPR | " + " | ".join(hard) + " | ECE |")
        out.append("| --- " * (7 + len(hard)) + "|")
        head = [pooled["auroc"], f"`{pooled['rule']}`", pooled["precision"], pooled["recall"], pooled["fpr"]]
        out.append(
            f"| {pooled['rows']} rows | "
            + " | ".join(_cell(v) for v in head)
            + " | "
            + " | ".join(_cell(pooled[k]) for k in hard)
            + f" | {_cell(pooled['ece_platt'])} |\n"
        )
        out.append(
            "| source left out | rows (positives) | AUROC | n-gram AUROC | embedding AUROC | recall | FPR |"
        )
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for fam, e in by_source.items():
            keys = ("auroc", "auroc_ngram", "auroc_embedding", "recall", "fpr")
            cells = " | ".join(_cell(e.get(k)) for k in keys)
            out.append(f"| {fam} | {e['rows']} ({e['positives']}) | {cells} |")
        curve = pooled.get("curve", [])
        if curve:
            cols = [k for k in curve[0] if k != "threshold"]
            out.append("\n| threshold | " + " | ".join(cols) + " |")
            out.append("| --- " * (len(cols) + 1) + "|")
            for point in curve:
                out.append(f"| {point['threshold']:g} | " + " | ".join(_cell(point[c]) for c in cols) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="*", default=["prompt_injection", "toxicity", "sexism", "tone"])
    parser.add_argument("--folds", type=int, default=3, help="inner folds for fusion and calibration")
    parser.add_argument("--min-rows", type=int, default=150, help="smaller sources are left out together")
    parser.add_argument("--no-embedding", action="store_true", help="n-gram models only")
    parser.add_argument("--tier", choices=["static", "minilm"], default="static", help="which embedding")
    parser.add_argument("--only", nargs="*", help="leave out only these sources (per-source figures only)")
    parser.add_argument("--shipped", action="store_true", help="score with the shipped weights instead")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--markdown", type=Path, help="print the tables of a --json file and exit")
    parser.add_argument(
        "--source-folds", action="store_true", help="fusion/calibration on out-of-source folds"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text(encoding="utf-8"))))
        return
    if not DATA_DIR.exists():
        sys.exit(f"no training data at {DATA_DIR}")
    embed = Embeddings(enabled=not args.no_embedding and not args.shipped, tier=args.tier)
    results: dict[str, Any] = {}
    for task_name in args.tasks:
        rows = tc.load_task_rows(DATA_DIR, task_name)
        print(f"== {task_name}: {len(rows)} rows", flush=True)
        if args.shipped:
            results[task_name] = shipped(task_name, rows)
        elif task_name == "tone":
            results[task_name] = loso_tone(rows, embed, args)
        else:
            results[task_name] = loso_binary(task_name, rows, embed, args)
        print(json.dumps(results[task_name].get("pooled", results[task_name]), indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(markdown(results))


if __name__ == "__main__":
    main()

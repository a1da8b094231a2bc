"""Does the distilled static table keep MiniLM's semantic gain on unseen sources? (prints, no asserts)

    .venv/bin/python benchmarks/embeddings.py [--train N] [--test N]

A leave-one-source-out style proxy: a logistic regression is trained on one corpus and tested on a
different source it never saw.

* toxicity: train on toxicity.jsonl (Davidson, Civil Comments, HateCheck, ConvAbuse, Surge), test on
  toxicity_extra.jsonl (Implicit Hate); AUROC.
* tone: train on tone.jsonl (GoEmotions, 9 classes), test on tone_extra.jsonl (XED movie subtitles);
  the prediction is the argmax over XED's 6 classes; macro-F1 over those 6.

Features: (a) MiniLM sentence embeddings (int8 ONNX, cached in .cache/embeddings/), (b) static tables
distilled in memory at 128/256 dims with each weighting (int8, as shipped; one float32 row for
comparison), (c) word+char TF-IDF n-grams (the kind of features the hashed classifiers use) and the
n-gram model averaged with an embedding model. Then speed and load time. Needs the dev extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from _embed_cache import encode_cached  # noqa: E402
from distill_embeddings import pca, quantise, token_counts, token_vectors, token_weights  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import f1_score, roc_auc_score  # noqa: E402
from sklearn.pipeline import FeatureUnion, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from stageguard.scorers._embedding import TOKENIZER_PATH, StaticEmbedder, load_tokenizer  # noqa: E402
from stageguard.scorers.minilm import MiniLMEncoder  # noqa: E402

DATA = Path("/work/shared/data/train")
XED_CLASSES = ["anger", "fear", "joy", "neutral", "sadness", "surprise"]
F32 = NDArray[np.float32]


def rows(name: str, limit: int | None, seed: int = 0) -> tuple[list[str], list[Any]]:
    data = [json.loads(line) for line in (DATA / f"{name}.jsonl").open(encoding="utf-8")]
    if limit is not None and limit < len(data):
        pick = np.random.default_rng(seed).choice(len(data), size=limit, replace=False)
        data = [data[i] for i in sorted(pick)]
    return [r["text"] for r in data], [r["label"] for r in data]


def static_tables(dims: list[int], weightings: list[str]) -> dict[str, StaticEmbedder]:
    """The shipped recipe, in memory, for each configuration (plus one float32 reference)."""
    encoder = MiniLMEncoder.from_package(threads=2)
    vocab = json.loads(TOKENIZER_PATH.read_text(encoding="utf-8"))["model"]["vocab"]
    vectors = token_vectors(encoder, vocab)
    live = np.linalg.norm(vectors, axis=1) > 0
    counts = token_counts(vectors.shape[0])
    tokenizer = load_tokenizer()
    out: dict[str, StaticEmbedder] = {}
    for d in dims:
        table = pca(vectors, d)
        q, scale = quantise(table)
        dequantised = q.astype(np.float32) * scale[:, None]
        for w in weightings:
            weights = token_weights(w, live, counts)
            out[f"static {d} {w}"] = StaticEmbedder(dequantised, weights, {}, tokenizer)
        if d == max(dims):
            out[f"static {d} sif fp32"] = StaticEmbedder(
                table, token_weights("sif", live, counts), {}, tokenizer
            )
    out["static 384 sif (no PCA)"] = StaticEmbedder(
        vectors, token_weights("sif", live, counts), {}, tokenizer
    )
    return out


def ngram_model() -> Any:
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True, max_features=300_000
                ),
            ),
        ]
    )
    return make_pipeline(features, LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced"))


def dense_model() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000, class_weight="balanced"))


def run_task(
    title: str,
    train: tuple[list[str], list[Any]],
    test: tuple[list[str], list[Any]],
    featurisers: dict[str, Callable[[list[str]], F32]],
    score: Callable[[Any, list[Any], NDArray[np.float64]], float],
    metric: str,
) -> dict[str, float]:
    print(f"\n## {title}: train {len(train[0])}, test {len(test[0])} ({metric})")
    probs: dict[str, NDArray[np.float64]] = {}
    classes: Any = None
    results: dict[str, float] = {}
    for name, featurise in featurisers.items():
        started = time.perf_counter()
        model = dense_model().fit(featurise(train[0]), train[1])
        probs[name] = model.predict_proba(featurise(test[0]))
        classes = model.classes_
        results[name] = score(classes, test[1], probs[name])
        print(f"  {name:28s} {results[name]:.3f}   ({time.perf_counter() - started:.0f}s)", flush=True)
    model = ngram_model().fit(train[0], train[1])
    probs["ngrams"] = model.predict_proba(test[0])
    results["ngrams (tf-idf word+char)"] = score(model.classes_, test[1], probs["ngrams"])
    print(f"  {'ngrams (tf-idf word+char)':28s} {results['ngrams (tf-idf word+char)']:.3f}")
    for name in featurisers:
        if name in ("minilm", "static 128 zipf", "static 256 zipf"):  # the candidates
            label = f"ngrams + {name} (avg)"
            results[label] = score(classes, test[1], (probs["ngrams"] + probs[name]) / 2)
            print(f"  {label:28s} {results[label]:.3f}")
    return results


def auroc(classes: Any, y: list[Any], p: NDArray[np.float64]) -> float:
    return float(roc_auc_score(y, p[:, list(classes).index(1)]))


def xed_macro_f1(classes: Any, y: list[Any], p: NDArray[np.float64]) -> float:
    keep = [list(classes).index(c) for c in XED_CLASSES]
    pred = [XED_CLASSES[i] for i in p[:, keep].argmax(axis=1)]
    return float(f1_score(y, pred, labels=XED_CLASSES, average="macro"))


def speed(tables: dict[str, StaticEmbedder]) -> None:
    print("\n## speed (one core busy with other work may inflate these)")
    text = (
        "Honestly I think the new policy is a mess, but the team did their best with what they had and "
        "I appreciate the effort. Can we talk about the rollout plan next week before anyone decides?"
    )[:200]
    load_tokenizer.cache_clear()
    started = time.perf_counter()
    static = StaticEmbedder.load()
    print(f"  static load (tokenizer + npz):  {1000 * (time.perf_counter() - started):.0f} ms")
    for name, embedder in [
        ("static (shipped)", static),
        *[(k, v) for k, v in tables.items() if "128" in k][:1],
    ]:
        times = []
        for _ in range(500):
            t0 = time.perf_counter()
            embedder.embed(text)
            times.append(time.perf_counter() - t0)
        print(f"  {name:28s} p50 {1e6 * statistics.median(times):.0f} us per 200-char text")
    started = time.perf_counter()
    encoder = MiniLMEncoder.from_package(threads=1)
    print(f"  MiniLM load (onnxruntime session): {1000 * (time.perf_counter() - started):.0f} ms")
    times = []
    for _ in range(100):
        t0 = time.perf_counter()
        encoder.embed(text)
        times.append(time.perf_counter() - t0)
    print(f"  MiniLM (1 thread)            p50 {1e3 * statistics.median(times):.1f} ms per 200-char text")
    big = text * (1_000_000 // len(text))
    t0 = time.perf_counter()
    static.embed(big)
    print(f"  static, 1 MB text (cut to MAX_CHARS): {1000 * (time.perf_counter() - t0):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=12_000, help="toxicity training rows (sampled)")
    parser.add_argument("--test", type=int, default=8_000, help="toxicity_extra test rows (sampled)")
    args = parser.parse_args()

    tables = static_tables([128, 256], ["none", "zipf", "sif"])
    featurisers: dict[str, Callable[[list[str]], F32]] = {"minilm": lambda t: encode_cached(t)}
    for name, table in tables.items():
        featurisers[name] = table.embed_many

    tox = run_task(
        "toxicity -> Implicit Hate",
        rows("toxicity", args.train),
        rows("toxicity_extra", args.test),
        featurisers,
        auroc,
        "AUROC",
    )
    tone_test = rows("tone_extra", None)
    tone = run_task(
        "tone GoEmotions -> XED",
        rows("tone", None),
        tone_test,
        featurisers,
        xed_macro_f1,
        "macro-F1 over XED's 6 classes",
    )
    print("\n## summary")
    for name in tox:
        print(
            f"  {name:32s} toxicity AUROC {tox[name]:.3f}   tone macro-F1 {tone.get(name, float('nan')):.3f}"
        )
    speed(tables)


if __name__ == "__main__":
    main()

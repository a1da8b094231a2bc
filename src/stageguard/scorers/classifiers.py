"""Compact offline classifiers: toxicity, sexism, prompt injection and tone.

Each model is a linear function of hashed word and character n-grams (see :mod:`._hashing`), trained by
``scripts/train_classifiers.py`` and shipped as quantised weights in ``weights/``. Scoring needs numpy
only; the weights are memory-mapped on first use (:mod:`._npz`) and cached per process (shared by every
scorer instance), and only the weights of the features a text has are read and scaled.

Binary scores are the model's margin passed through a monotone calibration fitted on held-out folds
(:class:`Calibration`) so that the documented thresholds are the chosen operating points: toxicity
``> 0.1``, sexism ``> 0.95``, prompt injection ``>= 0.5``. Long texts are also scored chunk by chunk
(sentences merged up to a few hundred characters) and the maximum is kept, so one toxic sentence in a
long benign text is not diluted. Prompt injection is the maximum over de-obfuscated views of the input
(see :mod:`._textnorm`).
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from ..metrics import TONE_LABELS
from ._embedding import static_embedder
from ._hashing import Features, HashSpec, code_values, distinct, hash_block, iter_blocks, prepare
from ._intent import found, intent_features
from ._npz import load_npz
from ._text import sample_note, sample_windows
from ._textnorm import canonical_words, clean, views
from .base import ScoreResult, TextScorer

WEIGHTS_DIR = Path(__file__).parent / "weights"

F32 = NDArray[np.float32]
#: ``static``: the default tier (static token-embedding table, numpy only); ``minilm``: the accurate tier
#: (the all-MiniLM-L6-v2 encoder on onnxruntime, ``stageguard[onnx]``, see :mod:`.minilm`).
Tier = Literal["static", "minilm"]


@dataclass(frozen=True)
class Calibration:
    """Margin -> score in [0, 1], monotone.

    A Platt sigmoid ``p = sigmoid(a * margin + b)`` (fitted on out-of-fold margins) is remapped piecewise
    linearly so that the operating point's probability ``p_anchor`` lands exactly on ``threshold``:
    ``[0, p_anchor] -> [0, threshold]`` and ``[p_anchor, 1] -> [threshold, 1]``.
    """

    a: float
    b: float
    p_anchor: float
    threshold: float

    def __call__(self, margin: float) -> float:
        z = self.a * margin + self.b
        p = 1.0 / (1.0 + math.exp(-z)) if z >= -700 else 0.0
        if p <= self.p_anchor:
            return self.threshold * p / self.p_anchor
        return self.threshold + (1.0 - self.threshold) * (p - self.p_anchor) / (1.0 - self.p_anchor)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(float(data["a"]), float(data["b"]), float(data["p_anchor"]), float(data["threshold"]))


@dataclass(frozen=True)
class Fusion:
    """How the n-gram margin and the embedding head's margin combine (weights learned out of fold)."""

    ngram: float = 1.0
    embedding: float = 0.0
    bias: float = 0.0
    intent: tuple[float, ...] = ()  # prompt injection: one weight per :data:`._intent.NAMES`

    def __call__(self, ngram_margin: float, embedding_margin: float, intents: F32 | None = None) -> float:
        margin = self.ngram * ngram_margin + self.embedding * embedding_margin + self.bias
        if self.intent and intents is not None:
            margin += float(np.dot(self.intent, intents))
        return margin


_MEMO_CHARS = 8_192  # texts up to this length keep their vector for the next scorer of the same invoke


@functools.lru_cache(maxsize=256)
def _memo_vector(text: str, tier: Tier) -> F32:
    if tier == "minilm":
        from .minilm import minilm_encoder

        return minilm_encoder().embed(text)
    return static_embedder().embed(text)


def sentence_vector(text: str, tier: Tier = "static") -> F32:
    """The sentence embedding of ``text`` for ``tier``; short texts are memoised, because the toxicity,
    sexism, tone and injection scorers of one invoke all embed the same input."""
    if len(text) > _MEMO_CHARS:
        return _memo_vector.__wrapped__(text, tier)
    return _memo_vector(text, tier)


@dataclass
class Scan:
    """The strongest window of a text for a binary model."""

    margin: float
    start: int
    end: int
    chunks: int
    prepared: str


class LinearModel:
    """Weights ``(classes, 2**dim_bits)`` and biases over hashed features, plus scoring helpers.

    ``weights`` are float32, or int8 with a float32 ``scale`` per class (as shipped): the int8 rows stay
    as stored and :meth:`columns` scales only the columns a text uses, to the same float32 values as
    scaling the whole table up front (which cost more than the rest of loading a model).
    """

    def __init__(
        self,
        weights: F32,
        bias: F32,
        spec: HashSpec,
        *,
        labels: tuple[str, ...] = ("positive",),
        window: int = 256,
        min_chunk: int = 0,
        doc_window: int = 4096,
        window_penalty: float = 0.0,
        calibration: Calibration | None = None,
        head: F32 | None = None,
        fusion: Fusion | None = None,
        embedding: Tier = "static",
        scale: F32 | None = None,
    ) -> None:
        self.weights = weights if weights.ndim == 2 else weights[None, :]
        self.scale = None if scale is None else scale.astype(np.float32).reshape(-1, 1)
        self.bias = bias.astype(np.float32)
        self.spec = spec
        self.labels = labels
        self.window = window
        self.min_chunk = min_chunk or window // 4
        self.doc_window = doc_window
        self.window_penalty = window_penalty
        self.calibration = calibration
        # Embedding head over the static sentence embedding (:mod:`._embedding`): ``(classes, dim + 1)``,
        # the last column is the bias (binary: one row); None for n-gram-only models.
        self.head = None if head is None else np.atleast_2d(head).astype(np.float32)
        self.fusion = fusion or Fusion()
        self.embedding = embedding  # which sentence embedding the head reads
        self.code_values = code_values(spec)

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        """Read a ``.npz`` written by the training script (memory-mapped, no pickle)."""
        data = load_npz(path)
        meta: dict[str, Any] = json.loads(str(data["meta"]))
        scale = data.get("scale")
        weights = data["weights"] if scale is not None else data["weights"].astype(np.float32, copy=False)
        head = data.get("head")
        calibration = meta.get("calibration")
        fusion = meta.get("fusion")
        return cls(
            weights,
            data["bias"],
            HashSpec.from_dict(meta["spec"]),
            labels=tuple(meta.get("labels", ("positive",))),
            window=int(meta.get("window", 256)),
            min_chunk=int(meta.get("min_chunk", 0)),
            doc_window=int(meta.get("doc_window", 4096)),
            window_penalty=float(meta.get("window_penalty", 0.0)),
            calibration=Calibration.from_dict(calibration) if calibration else None,
            head=head,
            fusion=Fusion(**{**fusion, "intent": tuple(fusion.get("intent", ()))}) if fusion else None,
            embedding=meta.get("embedding") or "static",
            scale=scale,
        )

    def columns(self, buckets: NDArray[np.int64]) -> F32:
        """The float32 weights of feature ``buckets``, shape ``(classes, len(buckets))``."""
        columns = self.weights.take(buckets, axis=1)
        return columns if self.scale is None else columns.astype(np.float32) * self.scale

    def head_scores(self, text: str) -> F32:
        """The embedding head's margins of ``text`` (one per class; empty without a head)."""
        if self.head is None:
            return np.zeros(0, dtype=np.float32)
        vec = sentence_vector(text, self.embedding)
        return self.head[:, :-1] @ vec + self.head[:, -1]

    # -- binary -------------------------------------------------------------------------------------------

    def scan(self, text: str) -> Scan:
        """Max margin over the text's windows: up to ``doc_window`` chars (the whole text, when shorter)
        and chunks (sentences merged to ``min_chunk``..``window`` chars).

        Window vectors are additive, so one pass over the hashed features gives all of them (linear time,
        bounded memory through block hashing); features spanning two windows are left out of both. Very
        long texts are cut into ``doc_window`` pieces because the model's margin grows with length beyond
        what it saw in training. Margins of all but a lone whole-text window are lowered by
        ``window_penalty``: the max over many windows would otherwise flag long benign texts more often.
        """
        prepared = prepare(text)
        length = len(prepared)
        docs = self._segments(_grid_starts(length, self.doc_window))
        long_text = length > 2 * self.min_chunk
        chunks = self._segments(chunk_starts(prepared, self.window, self.min_chunk) if long_text else None)
        # A lone chunk is the lone whole-text window less the penalty: never the strongest, not worth scoring.
        lone_chunk = len(chunks.starts) == 1 and len(docs.starts) == 1 and self.window_penalty >= 0
        for block in iter_blocks(prepared, self.spec):
            docs.add(block)
            if not lone_chunk:
                chunks.add(block)
        bias = float(self.bias[0])
        best = Scan(-math.inf, 0, length, len(docs.starts) + len(chunks.starts), prepared)
        for segments in (docs, chunks):
            if not len(segments.starts) or (segments is chunks and lone_chunk):
                continue
            penalty = 0.0 if segments is docs and len(docs.starts) == 1 else self.window_penalty
            margins = segments.margins(self.spec.norm_power)[:, 0] + (bias - penalty)
            i = int(np.argmax(margins))
            if margins[i] > best.margin:
                best.margin = float(margins[i])
                best.start, best.end = segments.span(i, length)
        return best

    def _segments(self, starts: NDArray[np.int64] | None) -> _Segments:
        return _Segments(_NO_CHUNKS if starts is None else starts, self)

    def top_terms(self, scan: Scan, k: int = 3, row: int = 0) -> list[str]:
        """Words that pushed the strongest window towards the class the most (for explanations)."""
        features = hash_block(scan.prepared[scan.start : scan.end], self.spec)
        lo, hi = features.word_rows
        contrib = self.columns(features.buckets[lo:hi])[row] * features.sign[lo:hi]
        terms: list[str] = []
        for i in np.argsort(-contrib):
            if contrib[i] <= 0 or len(terms) >= k:
                break
            s, e = features.word_spans[i]
            word = features.text[s:e][:40]
            if word not in terms and word not in _STOP_WORDS and len(word) > 1:
                terms.append(word)
        return terms

    # -- multi-class -------------------------------------------------------------------------------------

    def logits(self, text: str) -> F32:
        """Class scores of the text: of the whole text, or the mean over ``doc_window`` pieces."""
        prepared = prepare(text)
        docs = self._segments(_grid_starts(len(prepared), self.doc_window))
        for block in iter_blocks(prepared, self.spec):
            docs.add(block)
        mean: NDArray[np.float64] = docs.margins(self.spec.norm_power).mean(axis=0)
        return (mean + self.bias).astype(np.float32)


class _Segments:
    """Per-window sums of the weights of each window's distinct features (``starts``: sorted offsets)."""

    def __init__(self, starts: NDArray[np.int64], model: LinearModel) -> None:
        self.starts = starts
        self.model = model
        self.sums = np.zeros((len(starts), model.weights.shape[0]))
        self.counts = np.zeros(len(starts))

    def add(self, block: Features, /) -> None:
        """Add a block's features; features spanning two windows are left out of both."""
        n = len(self.starts)
        if n == 0:
            return
        buckets, codes = block.buckets, block.code
        if n == 1:
            ids = np.zeros(len(buckets), dtype=np.int64)
        else:
            ids = np.searchsorted(self.starts, block.pos, side="right") - 1
            inside = ids == np.searchsorted(self.starts, block.end - 1, side="right") - 1
            ids, buckets, codes = ids[inside], buckets[inside], codes[inside]
        ids, buckets, codes = distinct(ids, buckets, codes, self.model.weights.shape[1])
        contrib = self.model.columns(buckets) * self.model.code_values[codes]
        self.counts += np.bincount(ids, minlength=n)
        classes = self.sums.shape[1]
        if classes > 1:  # one bincount for all classes: bin (window, class), each summed in feature order
            ids = (ids[:, None] * classes + np.arange(classes)).ravel()
        self.sums += np.bincount(ids, weights=contrib.T.ravel(), minlength=n * classes).reshape(n, classes)

    def margins(self, power: float) -> NDArray[np.float64]:
        return self.sums / np.maximum(self.counts, 1.0)[:, None] ** power

    def span(self, i: int, length: int) -> tuple[int, int]:
        end = int(self.starts[i + 1]) if i + 1 < len(self.starts) else length
        return int(self.starts[i]), end


def _grid_starts(length: int, size: int) -> NDArray[np.int64]:
    """Starts of ``size``-char windows covering ``length`` chars; the last one takes the remainder."""
    return np.arange(max(1, length // size), dtype=np.int64) * size


_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "in", "is", "it", "of", "on",
    "or", "so", "that", "the", "they", "this", "to", "was", "we",
})  # fmt: skip
_NO_CHUNKS: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
_SENTENCE_END = re.compile(r"[.!?;] ")  # one char + space: no backtracking over long runs


def chunk_starts(prepared: str, max_chars: int, min_chars: int) -> NDArray[np.int64]:
    """Start offsets of chunks: sentences merged until ``min_chars`` long, cut hard at ``max_chars``."""
    starts = [0]
    last = 0
    for match in _SENTENCE_END.finditer(prepared):
        end = match.end() - 1  # the next chunk starts at the space, like a padded stand-alone text
        while end - last > max_chars:
            last += max_chars
            starts.append(last)
        if end - last >= min_chars:
            starts.append(end)
            last = end
    while len(prepared) - last > max_chars:
        last += max_chars
        starts.append(last)
    if len(starts) > 1 and len(prepared) - starts[-1] < min_chars:
        starts.pop()  # a short tail joins the previous chunk
    return np.array(starts, dtype=np.int64)


# --- loading -------------------------------------------------------------------------------------------

_MODELS: dict[str, LinearModel] = {}
_LOCK = threading.Lock()


def load_model(name: str, tier: Tier = "static") -> LinearModel:
    """The shipped model ``name`` of ``tier``, loaded once per process."""
    key = name if tier == "static" else f"{tier}/{name}"
    model = _MODELS.get(key)
    if model is None:
        with _LOCK:
            model = _MODELS.get(key)
            if model is None:
                model = LinearModel.load(WEIGHTS_DIR / f"{key}.npz")
                _MODELS[key] = model
    return model


# --- margins shared with the training script ---------------------------------------------------------


def text_scan(model: LinearModel, text: str) -> tuple[Scan, str]:
    """Strongest window of the cleaned text (toxicity, sexism)."""
    return model.scan(clean(text)), "text"


def injection_views(text: str) -> list[tuple[str, str]]:
    """The de-obfuscated views of a text (:func:`._textnorm.views`), with injection cue words canonical."""
    return [(name, canonical_words(view)) for name, view in views(text)]


def injection_scan(
    model: LinearModel, text: str, canonical: list[tuple[str, str]] | None = None
) -> tuple[Scan, str]:
    """Strongest window over all de-obfuscated views of the text, and the view's name."""
    best: tuple[Scan, str] | None = None
    for name, view in canonical or injection_views(text):
        scan = model.scan(view)
        if best is None or scan.margin > best[0].margin:
            best = (scan, name)
    assert best is not None
    return best


def injection_intents(text: str, canonical: list[tuple[str, str]] | None = None) -> F32:
    """The :mod:`._intent` features of a text, over all its de-obfuscated views."""
    return intent_features([view.lower() for _, view in canonical or injection_views(text)])


# --- long texts -------------------------------------------------------------------------------------------


def within_budget(text: str) -> tuple[str, str | None]:
    """``text`` itself, or for a text over :data:`._text.SCAN_BUDGET` characters the shared sample
    (:func:`._text.sample_windows`: start, end and 16 windows between) joined by blank lines, and a note
    saying so. Keeps every scorer's time linear and bounded on megabyte inputs."""
    windows = sample_windows(text, snap=False)
    if len(windows) == 1:
        return text, None
    sample = "\n\n".join(text[start:end] for start, end in windows)
    return sample, sample_note("scored", len(sample), len(text))


# --- scorers -------------------------------------------------------------------------------------------


class _BinaryScorer(TextScorer):
    """Shared logic: scan, calibrate, explain."""

    model_name: ClassVar[str]
    metric: ClassVar[str]

    def __init__(self, field: Literal["input", "output"] = "input", tier: Tier = "static") -> None:
        super().__init__(field)
        self.name = self.metric
        self.tier: Tier = tier

    def _evidence(self, model: LinearModel, text: str) -> tuple[Scan, str, F32 | None]:
        """The strongest window, the view it was found in and (injection) the intent features."""
        scan, view = text_scan(model, text)
        return scan, view, None

    def score_text(self, text: str) -> ScoreResult:
        model = load_model(self.model_name, self.tier)
        text, note = within_budget(text)
        scan, view, intents = self._evidence(model, text)
        assert model.calibration is not None
        head = model.head_scores(clean(text))
        margin = model.fusion(scan.margin, float(head[0]) if len(head) else 0.0, intents)
        value = model.calibration(margin)
        explanation = self._explain(model, scan, view, value, intents)
        return ScoreResult(
            value=round(value, 6), explanation=f"{explanation} {note}" if note else explanation
        )

    def _explain(self, model: LinearModel, scan: Scan, view: str, value: float, intents: F32 | None) -> str:
        assert model.calibration is not None
        parts = [f"{self.metric} {value:.3f} (operating threshold {model.calibration.threshold:g})"]
        if scan.chunks > 1:
            parts.append(f"strongest of {scan.chunks} chunks (normalised chars {scan.start}-{scan.end})")
        if view != "text":
            parts.append(f"seen in view: {view}")
        if intents is not None and intents.any():
            parts.append("asks to: " + ", ".join(found(intents)).replace("_", " "))
        if value >= model.calibration.threshold:
            terms = model.top_terms(scan)
            if terms:
                parts.append("strongest terms: " + ", ".join(repr(t) for t in terms))
        return "; ".join(parts)


class ToxicityScorer(_BinaryScorer):
    """Toxic, abusive, hateful or offensive language. Suggested rule: ``gt 0.1``."""

    model_name = "toxicity"
    metric = "toxicity"


class SexismScorer(_BinaryScorer):
    """Sexist language. Suggested rule: ``gt 0.95``."""

    model_name = "sexism"
    metric = "sexism"


class PromptInjectionScorer(_BinaryScorer):
    """Prompt injection or jailbreak, robust to common obfuscations. Suggested rule: ``gte 0.5``."""

    model_name = "prompt_injection"
    metric = "prompt_injection"

    def _evidence(self, model: LinearModel, text: str) -> tuple[Scan, str, F32 | None]:
        canonical = injection_views(text)  # built once for both
        scan, view = injection_scan(model, text, canonical)
        return scan, view, injection_intents(text, canonical)


class ToneScorer(TextScorer):
    """Primary tone: one of :data:`stageguard.metrics.TONE_LABELS`."""

    def __init__(self, field: Literal["input", "output"] = "input", tier: Tier = "static") -> None:
        super().__init__(field)
        self.name = "tone"
        self.tier: Tier = tier

    def score_text(self, text: str) -> ScoreResult:
        model = load_model("tone", self.tier)
        text, note = within_budget(text)
        cleaned = clean(text)
        logits = model.logits(cleaned)
        if model.head is not None:
            logits = logits + model.head_scores(cleaned)
        order = np.argsort(-logits)
        label = model.labels[int(order[0])]
        assert label in TONE_LABELS
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        runner = model.labels[int(order[1])]
        explanation = f"tone {label} (p={probs[order[0]]:.2f}); runner-up {runner} (p={probs[order[1]]:.2f})"
        return ScoreResult(value=label, explanation=f"{explanation} {note}" if note else explanation)

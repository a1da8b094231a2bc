"""Static token embeddings: semantic sentence vectors with numpy and ``tokenizers`` only.

``weights/embedding.npz`` is a table with one row per BERT-uncased vocabulary token, distilled from
all-MiniLM-L6-v2 by ``scripts/distill_embeddings.py`` (model2vec style: each token is run through the
encoder on its own, the outputs are reduced with PCA, weighted down for frequent tokens and quantised to
int8). A text's vector is the weighted mean of its tokens' rows, L2-normalised: no attention, so it is a
bag of subwords, but the rows carry MiniLM's notion of meaning (``idiot`` is near ``moron``), which
hashed n-grams cannot give for words never seen in training. The file is stored uncompressed and
memory-mapped (:mod:`._npz`): loading it reads nothing but the rows a text uses.

The tokenizer is the all-MiniLM-L6-v2 (bert-base-uncased) ``tokenizer.json`` shipped next to the
table (Apache-2.0, see ``weights/EMBEDDING_NOTICE``). The cost is linear in the text length; texts
longer than :data:`MAX_CHARS` characters are cut first (see there).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

from ..payload import clean_text
from ._npz import load_npz

WEIGHTS_DIR = Path(__file__).parent / "weights"
TOKENIZER_PATH = WEIGHTS_DIR / "tokenizer.json"
EMBEDDING_PATH = WEIGHTS_DIR / "embedding.npz"

#: Texts are cut to this many characters before tokenising. The tokenizer is linear but slow on huge
#: inputs (~1.2 s per MB of prose on one core), so this bounds latency (~0.15-0.2 s for a 1 MB text);
#: 200 000 characters is roughly 45 000 tokens, far past the point where one more paragraph moves a
#: mean over tens of thousands of rows.
MAX_CHARS = 200_000

F32 = NDArray[np.float32]


@functools.cache
def load_tokenizer() -> Tokenizer:
    """The shipped BERT-uncased tokenizer, without the file's truncation and padding (cached)."""
    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _clean(text: str) -> str:
    """``text`` cut to :data:`MAX_CHARS`, lone surrogates (which cannot cross into Rust) -> U+FFFD."""
    return clean_text(text[:MAX_CHARS])


class StaticEmbedder:
    """Token id -> row lookup and a weighted mean; see the module docstring."""

    def __init__(
        self,
        table: NDArray[Any],
        weights: F32,
        meta: dict[str, Any],
        tokenizer: Tokenizer,
        *,
        scale: F32 | None = None,
    ) -> None:
        if table.ndim != 2 or weights.shape != (table.shape[0],):
            raise ValueError(f"table {table.shape} and weights {weights.shape} do not match")
        self._table = table
        # With ``scale`` the table holds quantised rows (int8) and each row is scaled when a text uses it:
        # dequantising all 30k rows up front cost more than the rest of loading the table together.
        self._scale = None if scale is None else (scale.reshape(-1, 1) if scale.ndim else scale)
        self._weights = weights
        self.meta = meta
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, path: str | Path = EMBEDDING_PATH, tokenizer: Tokenizer | None = None) -> StaticEmbedder:
        """Map an ``embedding.npz`` written by ``scripts/distill_embeddings.py`` (no pickle)."""
        data = load_npz(path)
        rows = data["table"]  # int8, times a per-row (n,) or global () scale
        scale = data["scale"].astype(np.float32, copy=False)
        weights = data["weights"].astype(np.float32, copy=False)
        meta = json.loads(str(data["meta"]))
        return cls(rows, weights, meta, tokenizer or load_tokenizer(), scale=scale)

    def _rows(self, idx: NDArray[np.int64]) -> F32:
        """The float32 rows of token ids ``idx`` (the same values as dequantising the whole table)."""
        rows = self._table[idx]
        if self._scale is None:
            return rows.astype(np.float32, copy=False)
        scale = self._scale[idx] if self._scale.ndim else self._scale
        return rows.astype(np.float32) * scale

    @property
    def dim(self) -> int:
        return int(self._table.shape[1])

    def _pool(self, ids: Sequence[int]) -> F32:
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        idx = np.asarray(ids, dtype=np.int64)
        w = self._weights[idx]
        total = float(w.sum())
        if total <= 0.0:
            return np.zeros(self.dim, dtype=np.float32)
        vec = (w @ self._rows(idx)) / total
        norm = float(np.linalg.norm(vec))
        return (vec / norm).astype(np.float32) if norm > 0.0 else np.zeros(self.dim, dtype=np.float32)

    def embed(self, text: str) -> F32:
        """The unit-length vector of ``text`` (zeros if it has no tokens), shape ``(dim,)``."""
        ids = self._tokenizer.encode(_clean(text), add_special_tokens=False).ids
        return self._pool(ids)

    def embed_many(self, texts: Sequence[str]) -> F32:
        """:meth:`embed` for each text, shape ``(len(texts), dim)``."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch([_clean(t) for t in texts], add_special_tokens=False)
        for i, enc in enumerate(encodings):
            out[i] = self._pool(enc.ids)
        return out


@functools.cache
def static_embedder() -> StaticEmbedder:
    """The shipped table (loaded once per process)."""
    return StaticEmbedder.load(EMBEDDING_PATH)

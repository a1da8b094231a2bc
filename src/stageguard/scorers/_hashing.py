"""Stable, vectorised feature hashing of text, shared by training and scoring.

Why not scikit-learn's ``HashingVectorizer``: the shipped weights must be usable with numpy only, and the
features must be bit-for-bit the same in ``scripts/train_classifiers.py`` and at run time. Python's own
``hash()`` is salted per process, so we use a polynomial hash modulo 2**32 computed from prefix sums
(every substring hash in O(1), all n-grams of a text in a handful of numpy calls) and a murmur3 finaliser
to spread the bits. Each feature gets a bucket in ``[0, 2**dim_bits)`` and a sign (signed hashing keeps
collisions unbiased). Features are binary: a text's (or window's) vector has ``+-1`` (``+-word_weight``
for word features) for each distinct (bucket, sign) it contains, divided by ``#distinct ** norm_power``,
so repeating a word or phrase cannot inflate a score.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]

_MASK = np.uint64(0xFFFFFFFF)
_P = 0x01000193  # odd multiplier (FNV prime): invertible modulo 2**32
_Q = pow(_P, -1, 1 << 32)
_SEED_CHAR = 0x3C6EF372
_SEED_WORD = 0x7F4A7C15
_SEED_BIGRAM = 0x2545F491
_BIGRAM_MUL = np.uint64(0x9E3779B1)

#: texts are hashed in blocks of this many characters so memory stays bounded for huge inputs
BLOCK = 1 << 16
_BLOCK_OVERLAP = 64


@dataclass(frozen=True)
class HashSpec:
    """What is hashed: character n-gram sizes, word unigrams/bigrams, and the number of buckets."""

    dim_bits: int = 18
    char_ngrams: tuple[int, ...] = (3, 4, 5)
    word_bigrams: bool = True
    word_weight: float = 2.0  # scale of word (unigram and bigram) features relative to character n-grams
    norm_power: float = 0.5  # a document's vector is divided by (#features) ** norm_power

    @property
    def dim(self) -> int:
        return 1 << self.dim_bits

    def to_dict(self) -> dict[str, object]:
        return {
            "dim_bits": self.dim_bits,
            "char_ngrams": list(self.char_ngrams),
            "word_bigrams": self.word_bigrams,
            "word_weight": self.word_weight,
            "norm_power": self.norm_power,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> HashSpec:
        ngrams = data.get("char_ngrams", (3, 4, 5))
        assert isinstance(ngrams, (list, tuple))
        return cls(
            dim_bits=int(str(data.get("dim_bits", 18))),
            char_ngrams=tuple(int(n) for n in ngrams),
            word_bigrams=bool(data.get("word_bigrams", True)),
            word_weight=float(str(data.get("word_weight", 2.0))),
            norm_power=float(str(data.get("norm_power", 0.5))),
        )

    def norm(self, count: float) -> float:
        """The divisor of a document (or window) with ``count`` features."""
        return float(max(count, 1.0) ** self.norm_power)


class Features(NamedTuple):
    """Hashed features of one block of prepared text.

    ``code`` is 2 * is_word + (sign > 0), an index into :func:`code_values`; ``pos``/``end`` are each
    feature's span in the prepared text (for chunking long texts); rows
    ``word_rows[0]:word_rows[1]`` are word unigrams whose character spans are ``word_spans``.
    """

    buckets: I64
    sign: NDArray[np.float32]
    code: I64
    pos: I64
    end: I64
    word_rows: tuple[int, int]
    word_spans: I64
    text: str
    offset: int


class _Powers:
    """Powers of P and Q modulo 2**32, grown on demand (thread-safe, shared by all models)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.p: U64 = np.ones(1, dtype=np.uint64)
        self.q: U64 = np.ones(1, dtype=np.uint64)

    def ensure(self, n: int) -> tuple[U64, U64]:
        p, q = self.p, self.q
        if len(p) >= n:
            return p, q
        with self._lock:
            size = max(n, 1024, 2 * len(self.p))
            self.p = _power_table(_P, size)
            self.q = _power_table(_Q, size)
            return self.p, self.q


def _power_table(base: int, size: int) -> U64:
    """``base**i mod 2**32`` for i < size; uint64 products wrap mod 2**64, which is exact mod 2**32."""
    table = np.full(size, base, dtype=np.uint64)
    table[0] = 1
    return np.cumprod(table, dtype=np.uint64) & _MASK


_POWERS = _Powers()

_ASCII_WORD = np.zeros(128, dtype=bool)
for _c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _ASCII_WORD[ord(_c)] = True


def prepare(text: str) -> str:
    """Lower-case, collapse whitespace runs, pad with one space each side (word-edge n-grams)."""
    return " " + " ".join(text.lower().split()) + " "


def codepoints(text: str) -> U64:
    """Code points of ``text`` as uint64; lone surrogates survive (``surrogatepass``), nothing raises."""
    raw = text.encode("utf-32-le", "surrogatepass")
    return np.frombuffer(raw, dtype=np.uint32).astype(np.uint64)


def fmix32(h: U64) -> U64:
    """murmur3's 32-bit finaliser, vectorised: every input bit affects every output bit."""
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & _MASK
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & _MASK
    return h ^ (h >> np.uint64(16))


def _is_word_char(cps: U64) -> NDArray[np.bool_]:
    """ASCII letters/digits/underscore, and non-ASCII code points except punctuation, symbols, emoji."""
    ascii_part = _ASCII_WORD[np.minimum(cps, np.uint64(127)).astype(np.intp)]
    non_word = (
        ((cps >= 0x2000) & (cps <= 0x206F))
        | ((cps >= 0x2190) & (cps <= 0x2BFF))
        | ((cps >= 0x3000) & (cps <= 0x303F))
        | ((cps >= 0xD800) & (cps <= 0xDFFF))
        | ((cps >= 0xFE00) & (cps <= 0xFE0F))
        | ((cps >= 0xFF00) & (cps <= 0xFF0F))
        | (cps >= 0x1F000)
        | ((cps >= 0x80) & (cps <= 0xBF))
    )
    return np.where(cps < 128, ascii_part, ~non_word)


def _substring_hashes(prefix: U64, ppow: U64, starts: I64, ends: I64) -> U64:
    """Position-independent polynomial hash of ``text[s:e]`` from prefix sums: O(1) per substring."""
    diff = (prefix[ends] - prefix[starts]) & _MASK
    return (diff * ppow[starts]) & _MASK


def _word_spans(cps: U64) -> tuple[I64, I64]:
    is_word = _is_word_char(cps).astype(np.int8)
    edges = np.diff(np.concatenate(([0], is_word, [0])).astype(np.int8))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def hash_block(text: str, spec: HashSpec, offset: int = 0, keep_before: int | None = None) -> Features:
    """Hash one block of prepared text (see :func:`prepare`); features starting at ``>= keep_before``
    are dropped (they belong to the next block)."""
    cps = codepoints(text)
    n = len(cps)
    ppow, qpow = _POWERS.ensure(n + 1)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum((cps * qpow[:n]) & _MASK, out=prefix[1:])
    limit = n if keep_before is None else min(n, keep_before)

    starts_list: list[I64] = []
    seeds_list: list[U64] = []
    lengths: list[I64] = []
    for size in spec.char_ngrams:
        count = min(n - size + 1, limit)
        if count <= 0:
            continue
        starts_list.append(np.arange(count, dtype=np.int64))
        lengths.append(np.full(count, size, dtype=np.int64))
        seeds_list.append(np.full(count, _SEED_CHAR + size, dtype=np.uint64))
    w_starts, w_ends = _word_spans(cps)
    keep = w_starts < limit
    w_starts, w_ends = w_starts[keep], w_ends[keep]
    n_char = int(sum(len(s) for s in starts_list))
    starts_list.append(w_starts)
    lengths.append(w_ends - w_starts)
    seeds_list.append(np.full(len(w_starts), _SEED_WORD, dtype=np.uint64))

    starts = np.concatenate(starts_list)
    ends = starts + np.concatenate(lengths)
    raw = _substring_hashes(prefix, ppow, starts, ends)
    hashes = fmix32(raw ^ np.concatenate(seeds_list))
    pos, end = starts, ends
    if spec.word_bigrams and len(w_starts) > 1:
        word_raw = raw[n_char:]
        bigram = (word_raw[:-1] * _BIGRAM_MUL + word_raw[1:]) & _MASK
        hashes = np.concatenate((hashes, fmix32(bigram ^ np.uint64(_SEED_BIGRAM))))
        pos = np.concatenate((pos, w_starts[:-1]))
        end = np.concatenate((end, w_ends[1:]))
    index = (hashes & np.uint64(spec.dim - 1)).astype(np.int64)
    code = (hashes >> np.uint64(31)).astype(np.int64)
    code[n_char:] += 2
    sign = code_values(spec)[code]
    spans = (
        np.stack((w_starts, w_ends), axis=1).astype(np.int64) if len(w_starts) else np.zeros((0, 2), np.int64)
    )
    word_rows = (n_char, n_char + len(w_starts))
    return Features(index, sign, code, pos + offset, end + offset, word_rows, spans, text, offset)


def iter_blocks(prepared: str, spec: HashSpec, block: int = BLOCK) -> Iterator[Features]:
    """Hash prepared text block by block (bounded memory, linear time); short texts are one block."""
    if len(prepared) <= block + _BLOCK_OVERLAP:
        yield hash_block(prepared, spec)
        return
    for start in range(0, len(prepared), block):
        chunk = prepared[start : start + block + _BLOCK_OVERLAP]
        yield hash_block(chunk, spec, offset=start, keep_before=block)


def code_values(spec: HashSpec) -> NDArray[np.float32]:
    """The value of each feature code: char -/+, word -/+."""
    return np.array([-1.0, 1.0, -spec.word_weight, spec.word_weight], dtype=np.float32)


def distinct(segments: I64, buckets: I64, codes: I64, dim: int) -> tuple[I64, I64, I64]:
    """Each (segment, bucket, code) once, sorted: the binary features of every segment."""
    keys = np.sort((segments * dim + buckets) * 4 + codes)  # sort + mask: ~4x faster than np.unique here
    if len(keys) > 1:
        keep = np.empty(len(keys), dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys // (4 * dim), (keys // 4) % dim, keys % 4


def document_vector(text: str, spec: HashSpec) -> tuple[I64, NDArray[np.float32]]:
    """Sparse vector of a whole text as used for training: sorted buckets and their values."""
    blocks = list(iter_blocks(prepare(text), spec))
    buckets = np.concatenate([b.buckets for b in blocks])
    codes = np.concatenate([b.code for b in blocks])
    _, buckets, codes = distinct(np.zeros_like(buckets), buckets, codes, spec.dim)
    unique, inverse = np.unique(buckets, return_inverse=True)
    values = np.bincount(inverse, weights=code_values(spec)[codes], minlength=len(unique))
    return unique, (values / spec.norm(len(codes))).astype(np.float32)

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

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

U32 = NDArray[np.uint32]
I64 = NDArray[np.int64]

# All hash arithmetic is on uint32 arrays, which wrap modulo 2**32 by themselves.
_P = 0x01000193  # odd multiplier (FNV prime): invertible modulo 2**32
_Q = pow(_P, -1, 1 << 32)
_SEED_CHAR = 0x3C6EF372
_SEED_WORD = np.uint32(0x7F4A7C15)
_SEED_BIGRAM = np.uint32(0x2545F491)
_BIGRAM_MUL = np.uint32(0x9E3779B1)
_FMIX_1, _FMIX_2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)

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
    """Powers of P and Q modulo 2**32 and the offsets 0, 1, 2, ..., grown on demand (thread-safe, shared
    by all models)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # one attribute, replaced whole: a reader without the lock never sees tables of different sizes
        self._tables: tuple[U32, U32, I64] = (
            np.ones(1, dtype=np.uint32),
            np.ones(1, dtype=np.uint32),
            np.zeros(1, dtype=np.int64),
        )

    def ensure(self, n: int) -> tuple[U32, U32, I64]:
        """``(P**i, Q**i, i)`` for ``i`` below at least ``n``."""
        tables = self._tables
        if len(tables[0]) >= n:
            return tables
        with self._lock:
            if len(self._tables[0]) < n:
                size = max(n, 1024, 2 * len(self._tables[0]))
                offsets = np.arange(size, dtype=np.int64)
                self._tables = (_power_table(_P, size), _power_table(_Q, size), offsets)
            return self._tables


def _power_table(base: int, size: int) -> U32:
    """``base**i mod 2**32`` for i < size."""
    table = np.full(size, base, dtype=np.uint32)
    table[0] = 1
    return np.cumprod(table, dtype=np.uint32)


_POWERS = _Powers()


def _word_char_table() -> NDArray[np.bool_]:
    """Whether each code point up to U+1F000 is a word character (any larger one is not): ASCII letters,
    digits and underscore, and non-ASCII code points except punctuation, symbols, emoji, surrogates,
    variation selectors and C1 controls/Latin-1 punctuation."""
    table = np.ones(0x1F001, dtype=bool)
    table[:128] = False
    for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
        table[ord(c)] = True
    for lo, hi in ((0x80, 0xBF), (0x2000, 0x206F), (0x2190, 0x2BFF), (0x3000, 0x303F), (0xD800, 0xDFFF),
                   (0xFE00, 0xFE0F), (0xFF00, 0xFF0F), (0x1F000, 0x1F000)):  # fmt: skip
        table[lo : hi + 1] = False
    return table


_WORD_CHAR = _word_char_table()
_LAST_CODE_POINT = np.uint32(len(_WORD_CHAR) - 1)


def prepare(text: str) -> str:
    """Lower-case, collapse whitespace runs, pad with one space each side (word-edge n-grams)."""
    return " " + " ".join(text.lower().split()) + " "


def codepoints(text: str) -> U32:
    """Code points of ``text`` as uint32; lone surrogates survive (``surrogatepass``), nothing raises."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def fmix32(h: U32) -> U32:
    """murmur3's 32-bit finaliser, vectorised: every input bit affects every output bit."""
    h = h ^ (h >> np.uint32(16))  # a new array: the caller's stays as it was
    h *= _FMIX_1
    h ^= h >> 13
    h *= _FMIX_2
    h ^= h >> 16
    return h


def _word_spans(cps: U32) -> tuple[I64, I64]:
    """Starts and ends of the runs of word characters."""
    is_word = np.zeros(len(cps) + 2, dtype=bool)  # padded: the edges alternate start, end, start, ...
    is_word[1:-1] = _WORD_CHAR[np.minimum(cps, _LAST_CODE_POINT)]
    edges = np.flatnonzero(is_word[1:] != is_word[:-1])
    return edges[0::2], edges[1::2]


def hash_block(text: str, spec: HashSpec, offset: int = 0, keep_before: int | None = None) -> Features:
    """Hash one block of prepared text (see :func:`prepare`); features starting at ``>= keep_before``
    are dropped (they belong to the next block).

    The hash of ``text[s:e]`` is ``sum(cp[i] * Q**i for s <= i < e) * P**s`` modulo 2**32 (Q is P's
    inverse), so it does not depend on where the substring is; prefix sums give each one in O(1).
    """
    if offset == 0 and keep_before is None and len(text) <= _MEMO_CHARS:
        hashed = _memo_hashes(text, spec.char_ngrams, spec.word_bigrams)
    else:
        hashed = _hashes(text, spec.char_ngrams, spec.word_bigrams, offset, keep_before)
    index = (hashed.hashes & np.uint32(spec.dim - 1)).astype(np.int64)
    sign = code_values(spec)[hashed.code]
    word_rows = (hashed.n_char, hashed.n_char + len(hashed.spans))
    return Features(index, sign, hashed.code, hashed.pos, hashed.end, word_rows, hashed.spans, text, offset)


class _Hashes(NamedTuple):
    """What :func:`hash_block` computes before a model's number of buckets and word weight apply."""

    hashes: U32
    code: I64
    n_char: int
    pos: I64
    end: I64
    spans: I64


def _hashes(
    text: str, char_ngrams: tuple[int, ...], word_bigrams: bool, offset: int, keep_before: int | None
) -> _Hashes:
    cps = codepoints(text)
    n = len(cps)
    ppow, qpow, offsets = _POWERS.ensure(n + 1)
    prefix = np.zeros(n + 1, dtype=np.uint32)
    np.cumsum(cps * qpow[:n], dtype=np.uint32, out=prefix[1:])
    limit = n if keep_before is None else min(n, keep_before)

    seeded: list[U32] = []  # raw hash ^ seed of every feature: char n-grams by size, words, bigrams
    starts: list[I64] = []
    ends: list[I64] = []
    for size in char_ngrams:
        count = min(n - size + 1, limit)
        if count <= 0:
            continue
        raw = (prefix[size : size + count] - prefix[:count]) * ppow[:count]
        seeded.append(raw ^ np.uint32(_SEED_CHAR + size))
        starts.append(offsets[:count])
        ends.append(offsets[size : size + count])
    n_char = sum(len(s) for s in starts)
    w_starts, w_ends = _word_spans(cps)
    keep = w_starts < limit
    w_starts, w_ends = w_starts[keep], w_ends[keep]
    word_raw = (prefix[w_ends] - prefix[w_starts]) * ppow[w_starts]
    seeded.append(word_raw ^ _SEED_WORD)
    starts.append(w_starts)
    ends.append(w_ends)
    if word_bigrams and len(w_starts) > 1:
        seeded.append((word_raw[:-1] * _BIGRAM_MUL + word_raw[1:]) ^ _SEED_BIGRAM)
        starts.append(w_starts[:-1])
        ends.append(w_ends[1:])
    hashes = fmix32(np.concatenate(seeded))
    code = (hashes >> 31).astype(np.int64)
    code[n_char:] += 2
    spans = np.empty((len(w_starts), 2), dtype=np.int64)
    spans[:, 0], spans[:, 1] = w_starts, w_ends
    pos, end = np.concatenate(starts), np.concatenate(ends)
    if offset:
        pos += offset
        end += offset
    return _Hashes(hashes, code, n_char, pos, end, spans)


# Toxicity, sexism and tone hash the same cleaned text with the same n-gram sizes (only their number of
# buckets differs), so the scorers of one invoke share a short text's hashes (16 texts of 4,096 characters
# at most: about 10 MB). The arrays are shared, so they are made read-only.
_MEMO_CHARS = 4_096


@functools.lru_cache(maxsize=16)
def _memo_hashes(text: str, char_ngrams: tuple[int, ...], word_bigrams: bool) -> _Hashes:
    hashed = _hashes(text, char_ngrams, word_bigrams, 0, None)
    for array in (hashed.hashes, hashed.code, hashed.pos, hashed.end, hashed.spans):
        array.flags.writeable = False
    return hashed


def iter_blocks(prepared: str, spec: HashSpec, block: int = BLOCK) -> Iterator[Features]:
    """Hash prepared text block by block (bounded memory, linear time); short texts are one block."""
    if len(prepared) <= block + _BLOCK_OVERLAP:
        yield hash_block(prepared, spec)
        return
    for start in range(0, len(prepared), block):
        chunk = prepared[start : start + block + _BLOCK_OVERLAP]
        yield hash_block(chunk, spec, offset=start, keep_before=block)


@functools.cache
def code_values(spec: HashSpec) -> NDArray[np.float32]:
    """The value of each feature code: char -/+, word -/+ (one read-only array per spec: every hashed
    block looks it up)."""
    values = np.array([-1.0, 1.0, -spec.word_weight, spec.word_weight], dtype=np.float32)
    values.flags.writeable = False
    return values


def distinct(segments: I64, buckets: I64, codes: I64, dim: int) -> tuple[I64, I64, I64]:
    """Each (segment, bucket, code) once, sorted: the binary features of every segment (``dim``, the
    number of buckets, is a power of two)."""
    bits = dim.bit_length() + 1  # a key is segment, bucket and the 2-bit code side by side
    keys = np.sort((segments << bits) | (buckets << 2) | codes)  # sort + mask: ~4x faster than np.unique
    if len(keys) > 1:
        keep = np.empty(len(keys), dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys >> bits, (keys >> 2) & (dim - 1), keys & 3


def document_vector(text: str, spec: HashSpec) -> tuple[I64, NDArray[np.float32]]:
    """Sparse vector of a whole text as used for training: sorted buckets and their values."""
    blocks = list(iter_blocks(prepare(text), spec))
    buckets = np.concatenate([b.buckets for b in blocks])
    codes = np.concatenate([b.code for b in blocks])
    _, buckets, codes = distinct(np.zeros_like(buckets), buckets, codes, spec.dim)
    unique, inverse = np.unique(buckets, return_inverse=True)
    values = np.bincount(inverse, weights=code_values(spec)[codes], minlength=len(unique))
    return unique, (values / spec.norm(len(codes))).astype(np.float32)

"""The vectorised feature hashing is exactly its plain definition (the shipped weights depend on every bit).

The reference below computes each feature one at a time with Python integers, straight from the
definitions in ``stageguard.scorers._hashing``'s docstrings; hypothesis compares it with ``hash_block``
over arbitrary text, lone surrogates and the edges of every word-character range included. The shared
tables of powers are checked under concurrent growth.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stageguard.scorers import _hashing
from stageguard.scorers._hashing import (
    HashSpec,
    _word_spans,
    code_values,
    codepoints,
    distinct,
    hash_block,
    prepare,
)

M = 1 << 32
P = 0x01000193
Q = pow(P, -1, M)
NON_WORD_RANGES = (
    (0x80, 0xBF), (0x2000, 0x206F), (0x2190, 0x2BFF), (0x3000, 0x303F), (0xD800, 0xDFFF), (0xFE00, 0xFE0F),
    (0xFF00, 0xFF0F), (0x1F000, 0x10FFFF),
)  # fmt: skip
SPECS = (
    HashSpec(),
    HashSpec(dim_bits=17),
    HashSpec(char_ngrams=(2, 3, 4, 5, 6)),
    HashSpec(dim_bits=4, char_ngrams=(1,), word_bigrams=False),
)


def fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % M
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % M
    return h ^ (h >> 16)


def poly(text: str) -> int:
    """The position-independent hash of a substring: sum of code point * Q**j over its positions j."""
    return sum(ord(c) * pow(Q, j, M) for j, c in enumerate(text)) % M


def is_word(c: str) -> bool:
    cp = ord(c)
    if cp < 128:
        return c.isascii() and (c.isalnum() or c == "_")
    return not any(lo <= cp <= hi for lo, hi in NON_WORD_RANGES)


def words(text: str) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, c in enumerate(text + " "):
        if is_word(c) if i < len(text) else False:
            start = i if start is None else start
        elif start is not None:
            spans.append((start, i))
            start = None
    return spans


def reference(text: str, spec: HashSpec, keep_before: int | None) -> list[tuple[int, int, int, int]]:
    """(bucket, code, start, end) of every feature, in hash_block's order."""
    limit = len(text) if keep_before is None else min(len(text), keep_before)
    raw: list[tuple[int, int, int, int]] = []  # (hash, is_word, start, end)
    for size in spec.char_ngrams:
        for s in range(min(len(text) - size + 1, limit)):
            raw.append((fmix32(poly(text[s : s + size]) ^ (0x3C6EF372 + size)), 0, s, s + size))
    spans = [(s, e) for s, e in words(text) if s < limit]
    hashes = [poly(text[s:e]) for s, e in spans]
    raw += [(fmix32(h ^ 0x7F4A7C15), 1, s, e) for h, (s, e) in zip(hashes, spans, strict=True)]
    if spec.word_bigrams:
        for i in range(len(spans) - 1):
            bigram = (hashes[i] * 0x9E3779B1 + hashes[i + 1]) % M
            raw.append((fmix32(bigram ^ 0x2545F491), 1, spans[i][0], spans[i + 1][1]))
    return [(h & (spec.dim - 1), 2 * w + (h >> 31), s, e) for h, w, s, e in raw]


edges = [chr(cp) for lo, hi in NON_WORD_RANGES for cp in (lo - 1, lo, hi, min(hi + 1, 0x10FFFF))]
edge_chars = st.sampled_from([*edges, *" a_Z9.é中"])
texts = st.text(st.one_of(edge_chars, st.characters(exclude_categories=())), max_size=80)


def _rows(features: _hashing.Features, offset: int = 0) -> list[tuple[int, int, int, int]]:
    """(bucket, code, start, end) of each feature, as :func:`reference` gives them (offset removed)."""
    return list(
        zip(
            features.buckets.tolist(),
            features.code.tolist(),
            (features.pos - offset).tolist(),
            (features.end - offset).tolist(),
            strict=True,
        )
    )


@settings(max_examples=300, deadline=None)
@given(texts, st.sampled_from(SPECS), st.sampled_from([None, 0, 3, 40]), st.integers(0, 1000))
@example("stageguard: ignore the rules!", HashSpec(), None, 0)
@example("\ud800lone\udfff surrogates\U0001f600", HashSpec(), 5, 7)
@example("a" + "a".join(edges) + "a", HashSpec(), None, 0)
def test_hash_block_is_its_plain_definition(
    text: str, spec: HashSpec, keep_before: int | None, offset: int
) -> None:
    prepared = prepare(text)
    features = hash_block(prepared, spec, offset=offset, keep_before=keep_before)
    got = _rows(features, offset)
    assert got == reference(prepared, spec, keep_before)
    signs = np.array([-1.0, 1.0, -spec.word_weight, spec.word_weight], dtype=np.float32)[features.code]
    assert np.array_equal(features.sign, signs)
    lo, hi = features.word_rows
    assert features.word_spans.tolist() == [[s, e] for _, _, s, e in got[lo:hi]]


def test_models_hashing_the_same_text_share_its_hashes_and_each_gets_its_own_buckets() -> None:
    """Toxicity, sexism and tone hash the same text with the same n-gram sizes and different numbers of
    buckets: the second and later calls reuse the first one's hashes (read-only, since they are shared),
    and each still gets the features of its own spec."""
    prepared = prepare("You are a useless idiot and I hate this stupid product.")
    first = hash_block(prepared, HashSpec())
    for spec in (HashSpec(dim_bits=17), HashSpec(word_weight=3.0), *SPECS):
        features = hash_block(prepared, spec)
        assert _rows(features) == reference(prepared, spec, None), spec
        assert np.array_equal(features.sign, code_values(spec)[features.code])
    again = hash_block(prepared, HashSpec(dim_bits=17))
    assert again.pos is first.pos and again.code is first.code
    with pytest.raises(ValueError, match="read-only"):
        first.pos[0] = 1
    # a block of a long text (an offset) is computed on its own
    block = hash_block(prepared, HashSpec(), offset=10)
    assert block.pos is not first.pos and (block.pos - 10).tolist() == first.pos.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 255), st.integers(0, 3)), max_size=60))
def test_distinct_keeps_each_feature_once_in_order(rows: list[tuple[int, int, int]]) -> None:
    segments, buckets, codes = (np.array([row[i] for row in rows], dtype=np.int64) for i in range(3))
    got = distinct(segments, buckets, codes, 256)
    assert list(zip(*(a.tolist() for a in got), strict=True)) == sorted(set(rows))


def test_every_code_point_is_a_word_character_or_not_as_defined() -> None:
    """All 1,114,112 code points, each followed by a space: the words found are the word characters."""
    text = "".join(chr(cp) + " " for cp in range(0x110000))
    starts, ends = _word_spans(codepoints(text))
    expected = [2 * cp for cp in range(0x110000) if is_word(chr(cp))]
    assert starts.tolist() == expected
    assert (ends - starts).tolist() == [1] * len(expected)


def test_power_tables_grow_whole_while_another_thread_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread hashing a longer text than any before grows the shared tables; a thread reading them
    meanwhile gets tables that are all long enough (it once could get a new P table beside an old Q)."""
    powers = _hashing._Powers()
    powers.ensure(10)
    real, calls = _hashing._power_table, []
    computing, resume = threading.Event(), threading.Event()

    def slow_table(base: int, size: int) -> np.ndarray:
        calls.append(base)
        if len(calls) == 2:  # between the two tables of one growth
            computing.set()
            resume.wait(5)
        return real(base, size)

    monkeypatch.setattr(_hashing, "_power_table", slow_table)
    grower = threading.Thread(target=powers.ensure, args=(5000,))
    grower.start()
    assert computing.wait(5)
    seen: list[tuple[np.ndarray, ...]] = []
    reader = threading.Thread(target=lambda: seen.append(powers.ensure(5000)))
    reader.start()
    reader.join(0.2)  # the reader waits for the growth rather than return half-grown tables
    resume.set()
    grower.join(5)
    reader.join(5)
    assert [len(table) >= 5000 for table in seen[0]] == [True, True, True]
    assert len(calls) == 2  # grown once: the reader did not grow the tables again

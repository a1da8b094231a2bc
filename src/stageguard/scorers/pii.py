"""The built-in offline PII scorer: validated patterns plus feature-scored names and addresses.

``PIIScorer`` gives the metric value of ``input_pii`` / ``output_pii``: the sorted list of PII categories
found in the text (see :data:`stageguard.metrics.PII_CATEGORIES`), with one span per finding so a rule can
redact them. Checksums and libphonenumber confirm what they can (cards, SSNs, IBANs, phones, IPs);
cue words confirm the rest (account numbers, dates of birth, passwords, usernames). See ``docs/pii.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from ..metrics import PII_CATEGORIES
from ._pii_address import find_addresses
from ._pii_lexicon import load_all
from ._pii_names import find_names
from ._pii_patterns import (
    Hit,
    _phonenumbers,
    find_accounts,
    find_cards,
    find_dates,
    find_emails,
    find_network,
    find_phones,
    find_secrets,
    find_ssns,
    is_birth_date,
)
from ._text import SCAN_BUDGET, sample_note, sample_windows
from .base import ScoreResult, Span, TextScorer, redact

__all__ = ["PII_CATEGORIES", "SCAN_BUDGET", "PIIScorer", "detect_pii", "redact", "scan_pii", "scan_windows"]

Detector = Callable[[str], Iterable[Hit]]


def _dates(text: str) -> Iterator[Hit]:
    """Dates of birth; other dates come out labelled ``date`` only to shield their digits from phones."""
    for hit in find_dates(text):
        yield Hit(hit.start, hit.end, "date_of_birth") if is_birth_date(text, hit) else hit


# Detectors in priority order: where two findings overlap, the earlier detector wins (an e-mail's
# domain is not also a URL; a card number is not also a phone number; a street is not a name).
DETECTORS: tuple[Detector, ...] = (
    find_emails,
    find_network,
    find_accounts,
    find_cards,
    find_ssns,
    _dates,
    find_phones,
    find_secrets,
    find_addresses,
    find_names,
)


def _resolve(hits_by_priority: Iterable[Iterable[Hit]]) -> list[Hit]:
    """Keep each finding unless it overlaps one of a higher-priority detector (or a longer one of its own)."""
    taken: list[Hit] = []
    for hits in hits_by_priority:
        new: list[Hit] = []
        for hit in sorted(hits, key=lambda h: (h.start, h.start - h.end)):
            if hit.end <= hit.start or (new and hit.start < new[-1].end) or _overlaps_any(hit, taken):
                continue
            new.append(hit)
        taken = sorted(taken + new)
    return taken


def _overlaps_any(hit: Hit, sorted_hits: list[Hit]) -> bool:
    """Binary search in the (start-sorted, non-overlapping) accepted findings."""
    lo, hi = 0, len(sorted_hits)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_hits[mid].end <= hit.start:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(sorted_hits) and sorted_hits[lo].start < hit.end


def scan_windows(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` stretches of ``text`` that :func:`detect_pii` scans, each on its own (the
    shared sampling policy, :func:`._text.sample_windows`, edges on whitespace)."""
    return sample_windows(text)


def _detect(text: str) -> list[Hit]:
    return _resolve(detector(text) for detector in DETECTORS)


def scan_pii(text: str) -> tuple[list[Span], str | None]:
    """:func:`detect_pii`, and a note saying what was scanned when ``text`` is over :data:`SCAN_BUDGET`."""
    if not text or not isinstance(text, str):
        return [], None
    windows = scan_windows(text)
    if len(windows) == 1:
        hits = _detect(text)
        note = None
    else:
        hits = [
            Hit(h.start + start, h.end + start, h.label)
            for start, end in windows
            for h in _detect(text[start:end])
        ]
        note = sample_note("scanned", sum(end - start for start, end in windows), len(text))
    spans = [
        Span.model_construct(start=h.start, end=h.end, label=h.label)
        for h in hits
        if h.label in PII_CATEGORIES
    ]
    return spans, note


def detect_pii(text: str) -> list[Span]:
    """Every PII finding in ``text``, sorted by position, labelled with a category of ``PII_CATEGORIES``.

    A text over :data:`SCAN_BUDGET` characters is scanned in windows (:func:`scan_windows`), so the time
    stays bounded; :func:`scan_pii` also says when that happened.
    """
    return scan_pii(text)[0]


_EXPLAIN_LIMIT = 5


class PIIScorer(TextScorer):
    """Offline PII detection for one payload field (``input`` or ``output``)."""

    name = "pii"

    def __init__(self, field: Literal["input", "output"] = "input") -> None:
        super().__init__(field)

    def load(self) -> PIIScorer:
        """Read the word lists in full and import phonenumbers now, instead of as texts need them."""
        load_all()
        _phonenumbers()
        return self

    def score_text(self, text: str) -> ScoreResult:
        spans, note = scan_pii(text)
        suffix = f" {note}" if note else ""
        categories = sorted({s.label for s in spans})
        if not categories:
            return ScoreResult(value=[], spans=[], explanation=f"no PII found{suffix}")
        counts = ", ".join(f"{c} x{sum(s.label == c for s in spans)}" for c in categories[:_EXPLAIN_LIMIT])
        more = "" if len(categories) <= _EXPLAIN_LIMIT else ", …"
        field = self.field
        spans = [s.model_copy(update={"field": field}) for s in spans] if field != "input" else spans
        return ScoreResult(value=categories, spans=spans, explanation=f"PII found: {counts}{more}{suffix}")

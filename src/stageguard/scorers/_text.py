"""Small, dependency-free text helpers shared by the offline scorers.

Everything here is deliberately simple (regexes, a light suffix stemmer, a fixed stop-word list) so that
scorers stay in the ~1 ms range and behave the same everywhere. Functions are pure; the hot ones are cached.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

# --- long texts: one sampling policy for every scorer that reads a whole text ------------------------------

#: Texts longer than this are read as a sample (:func:`sample_windows`), so megabyte inputs stay well under
#: a second per scorer.
SCAN_BUDGET = 192_000
_HEAD = _TAIL = 64_000
_MIDDLE_WINDOWS, _MIDDLE_WINDOW = 16, 4_000
_SNAP = 256  # how far an inner window edge may move to reach whitespace
_WHITESPACE = re.compile(r"\s")


def sample_windows(text: str, *, snap: bool = True) -> list[tuple[int, int]]:
    """The ``(start, end)`` stretches of ``text`` a scorer reads: all of it up to :data:`SCAN_BUDGET`
    characters; beyond, its first and last 64,000 characters and 16 evenly spaced 4,000-character windows
    of the middle. An attack, insult or PII at either end is always read; one buried in the middle only
    when a window falls on it.

    With ``snap``, inner window edges move to the nearest whitespace (within 256 characters), so that a
    window does not start or end inside a number, an address or a name.
    """
    size = len(text)
    if size <= SCAN_BUDGET:
        return [(0, size)]
    step = (size - _HEAD - _TAIL) // _MIDDLE_WINDOWS
    middle = [(_HEAD + i * step, _HEAD + i * step + _MIDDLE_WINDOW) for i in range(_MIDDLE_WINDOWS)]
    windows = []
    for start, end in [(0, _HEAD), *middle, (size - _TAIL, size)]:
        if snap and start > 0:
            cut = _WHITESPACE.search(text, start, min(end, start + _SNAP))
            start = cut.end() if cut else start
        if snap and end < size:
            cut_at = max(
                text.rfind(" ", max(start, end - _SNAP), end), text.rfind("\n", max(start, end - _SNAP), end)
            )
            end = cut_at if cut_at > start else end
        windows.append((start, end))
    return windows


def sample_note(verb: str, read: int, total: int) -> str:
    """The explanation's note when a text was read as a sample (``verb``: what the scorer did)."""
    return (
        f"[truncated: {verb} {read:,} of {total:,} characters: the first and last {_HEAD:,} "
        f"and {_MIDDLE_WINDOWS} windows of {_MIDDLE_WINDOW:,} between]"
    )


def word_list(spec: str) -> list[str]:
    """The whitespace-separated words of ``spec``, in order (word lists read better as one string)."""
    return spec.split()


def word_set(spec: str) -> frozenset[str]:
    """The whitespace-separated words of ``spec``."""
    return frozenset(spec.split())


STOPWORDS: frozenset[str] = word_set("""
    a about above after again against all almost along already also although always am among an and another
    any anyone anything are around as at be became because become been before being below between both but by
    can could did do does doing done down during each either else etc even ever every few for from further
    get gets got had has have having he her here hers herself him himself his how however i if in into is it
    its itself just least less let like made make many may me might more most much must my myself neither
    nor of off often on once one or other others otherwise our ours ourselves out over own per perhaps
    please quite rather really same she should since so some something such than that the their theirs them
    themselves then there therefore these they this those though through thus to too under until up upon us
    very via was we well were what whatever when whenever where whereas wherever whether which while who whom
    whose why will with within would yet you your yours yourself yourselves
    i'm i've i'd i'll you're you've it's that's there's let's here's what's who's
    """)
"""Function words: they carry no checkable content. Negations are kept out on purpose."""

NEGATIONS: frozenset[str] = word_set(
    "not no never none nobody nothing nowhere neither nor cannot without n't isn't wasn't aren't weren't "
    "doesn't don't didn't won't wouldn't can't couldn't shouldn't hasn't haven't hadn't"
)

_NUMBER_WORDS: dict[str, str] = {
    w: str(i)
    for i, w in enumerate(
        word_list(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty"
        )
    )
}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70"})
_NUMBER_WORDS.update({"eighty": "80", "ninety": "90", "hundred": "100", "dozen": "12"})
_ORDINAL_WORDS: dict[str, str] = {
    w: str(i + 1)
    for i, w in enumerate(
        word_list("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth")
    )
}
MONTHS: dict[str, str] = {
    m: str(i + 1)
    for i, m in enumerate(
        word_list("january february march april may june july august september october november december")
    )
}

_WORD_RE = re.compile(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th|s)?(?![^\W_])|[^\W_]+(?:['\u2019][^\W_]+)*")
_UNIT_RE = re.compile(r"(\d)(am|pm|km|kg|mg|ml|cm|mm|gb|mb|kb|h|min)\b", re.IGNORECASE)
_NUMBER_RE = re.compile(r"^\d+(?:[.,]\d+)*(?:st|nd|rd|th|s)?$")
_SENT_END_RE = re.compile(
    r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])|\n\s*\n|(?<=[a-z]{2}[.!?])(?=[A-Z][a-z])"
)
_ABBREV_RE = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|Ft|Gen|Gov|Sen|Rep|Col|Lt|Sgt|Capt|Inc|Ltd|Co|Corp|vs|etc|"
    r"approx|No|Vol|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|e\.g|i\.e)|\b[A-Z]|\b[A-Z]\.[A-Z])\.$"
)
_CLAUSE_RE = re.compile(r"\s*;\s*|,\s+(?=(?:and|but|while|whereas|although|though|which|who)\b)")
_CAP_WORD = r"(?:[A-Z][\w'\u2019.\-]*|[0-9]+(?:st|nd|rd|th)?)"
_ENTITY_RE = re.compile(
    rf"[A-Z][\w'\u2019.\-]*(?:\s+(?:(?:of|the|de|da|di|del|der|du|van|von|la|le|y|&)\s+)*{_CAP_WORD})*"
)
_NON_ALNUM_RE = re.compile(r"[^\w]+")
_POSSESSIVE_RE = re.compile(r"(?<=\w)'s?\b")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light suffix stripper (plural, -ing, -ed, -ly, ...) plus truncation to seven letters.

    Aggressive enough that "directed"/"director"/"direction" and "American"/"America" meet, cheap enough
    to run on every token; numbers pass through.
    """
    if not word.isalpha() or len(word) <= 3:
        return word
    for suffix, repl in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: len(word) - len(suffix)] + repl
            if suffix in _VERB_SUFFIXES and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # shipped -> ship, planning -> plan
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word[:7]


_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ies", "y"),
    ("sses", "ss"),
    ("ness", ""),
    ("ments", ""),
    ("ment", ""),
    ("ingly", ""),
    ("edly", ""),
    ("ings", ""),
    ("ing", ""),
    ("ied", "y"),
    ("ed", ""),
    ("ers", "er"),
    ("ly", ""),
    ("es", "e"),
    ("s", ""),
)


_VERB_SUFFIXES = frozenset({"ing", "ings", "ed", "edly", "ingly"})


@lru_cache(maxsize=65536)
def normalize_word(word: str) -> str:
    """Lower-case a raw token, drop a possessive and map number words and number formats to digits."""
    w = word.lower().replace("\u2019", "'")
    if w.endswith("'s"):
        w = w[:-2]
    elif w.endswith("'"):
        w = w[:-1]
    if w in _NUMBER_WORDS:
        return _NUMBER_WORDS[w]
    if w in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[w]
    if w[:1].isdigit() and _NUMBER_RE.match(w):
        return normalize_number(w)
    return w


def normalize_number(token: str) -> str:
    """'1,200' -> '1200', '19th' -> '19', '1990s' -> '1990', '3.50' -> '3.5'."""
    t = re.sub(r"(?:st|nd|rd|th|s)$", "", token.lower()).replace(",", "")
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    return t.lstrip("0") or "0"


def is_number(token: str) -> bool:
    return token[:1].isdigit()


def split_units(text: str) -> str:
    """Put a space between a number and a glued unit: "3pm" -> "3 pm", "10km" -> "10 km"."""
    return _UNIT_RE.sub(r"\1 \2", text)


def word_matches(text: str) -> Iterator[re.Match[str]]:
    """Regex matches of the word and number tokens of ``text`` (call :func:`split_units` first)."""
    return _WORD_RE.finditer(text)


def raw_words(text: str) -> list[str]:
    """Word and number tokens of ``text``, in order, as written ("3pm" gives "3", "pm")."""
    return _WORD_RE.findall(split_units(text))


def words(text: str) -> list[str]:
    """Normalised (lower-case, number-mapped) tokens of ``text``, stop words included."""
    return [normalize_word(w) for w in raw_words(text)]


def content_tokens(text: str) -> tuple[str, ...]:
    """Stemmed tokens that carry content: no stop words, no punctuation, hyphenated words split.

    Texts up to 2 KB are cached: the scorers of one payload (and the sentences of a reused context) ask
    for the same texts; longer ones are not, to bound the cache's memory.
    """
    return _cached_content_tokens(text) if len(text) <= 2048 else _content_tokens(text)


def _content_tokens(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for w in words(text.replace("-", " ").replace("\u2013", " ")):
        if w in STOPWORDS or w in NEGATIONS:
            continue
        if len(w) == 1 and not w.isdigit():
            continue
        out.append(stem(w))
    return tuple(out)


_cached_content_tokens = lru_cache(maxsize=8192)(_content_tokens)


def clear_text_cache() -> None:
    """Forget cached token lists (benchmarks use it to time cold texts; word-level caches stay)."""
    _cached_content_tokens.cache_clear()


def has_negation(text: str) -> bool:
    """Whether ``text`` contains a negation cue ("not", "never", "n't", ...)."""
    lowered = text.lower().replace("\u2019", "'")
    return any(w in NEGATIONS or w.endswith("n't") for w in _WORD_RE.findall(lowered))


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; abbreviations ("Dr.", "U.S.", initials) do not end a sentence."""
    parts: list[str] = []
    start = 0
    for match in _SENT_END_RE.finditer(text):
        piece = text[start : match.start()].rstrip()
        if _ABBREV_RE.search(piece):
            continue
        if piece.strip():
            parts.append(piece.strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def split_clauses(sentence: str, min_tokens: int = 2) -> list[str]:
    """Split a sentence at ";" and at ", and/but/which ..." when both sides still say something."""
    pieces = [p for p in _CLAUSE_RE.split(sentence) if p and p.strip()]
    merged: list[str] = []
    for piece in pieces:
        if merged and len(content_tokens(piece)) < min_tokens:
            merged[-1] = f"{merged[-1]}, {piece}"
        else:
            merged.append(piece)
    if len(merged) > 1 and len(content_tokens(merged[0])) < min_tokens:
        merged[1] = f"{merged[0]}, {merged[1]}"
        merged.pop(0)
    return merged or [sentence]


def entity_spans(text: str) -> list[str]:
    """Capitalised spans ("George Harrison", "U.S. Route 51") that look like names, not sentence starts.

    A single capitalised word at the start of a sentence counts only if it is not a common (stop) word
    and is not the only thing in the sentence, which is the usual short-answer case and still a name.
    """
    out: list[str] = []
    short: bool | None = None  # whether the text has at most 3 words; counted once, when first needed
    for match in _ENTITY_RE.finditer(text):
        span = match.group(0).rstrip(".,'\u2019-")
        tokens = span.split()
        while tokens and tokens[0].lower() in STOPWORDS:
            tokens.pop(0)
        if not tokens:
            continue
        span = " ".join(tokens)
        if len(tokens) == 1 and _sentence_initial(text, match.start()):
            if short is None:
                short = len(raw_words(text)) <= 3
            if not short:
                continue
        out.append(span)
    return out


def _sentence_initial(text: str, pos: int) -> bool:
    # walk back over spaces and opening quotes (no copy of text[:pos]: that made long texts quadratic)
    i = pos - 1
    while i >= 0 and text[i] in " \"'\u201c\u2018(":
        i -= 1
    return i < 0 or text[i] in ".!?:\n"


def phrase_key(text: str) -> str:
    """Lower-case, punctuation-free, single-spaced form used for phrase look-ups (padded with spaces)."""
    lowered = _POSSESSIVE_RE.sub("", text.lower().replace("\u2019", "'"))
    return f" {_NON_ALNUM_RE.sub(' ', lowered).strip()} "


def soft_min(values: list[float], sharpness: float = 10.0) -> float:
    """A smooth minimum in [0, 1]: the worst value dominates, each further low value lowers it a bit more."""
    if not values:
        return 1.0
    lowest = min(values)
    mean_exp = sum(math.exp(-sharpness * (v - lowest)) for v in values) / len(values)
    return max(0.0, min(1.0, lowest - math.log(mean_exp) / sharpness))


@dataclass(frozen=True)
class Overlap:
    """How many of ``wanted`` tokens appear in ``have``."""

    found: int
    total: int

    @property
    def ratio(self) -> float:
        return self.found / self.total if self.total else 0.0


def overlap(wanted: list[str] | set[str], have: set[str] | frozenset[str]) -> Overlap:
    unique = set(wanted)
    return Overlap(sum(1 for t in unique if t in have), len(unique))

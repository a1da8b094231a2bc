"""Person names: runs of capitalised tokens scored by features, not looked up in a closed list.

A candidate is a run of capitalised words (with name particles such as ``van``/``de`` and initials
allowed inside). Evidence for a person: a title before it (``Mr``, ``Dr``), a cue phrase (``my name is``,
``call me``, ``Dear``, ``said``, a chat speaker ``Lisa:``), a known given name or surname, and words that
are not English words (proper nouns). Evidence against: common English words, sentence-initial position
(capitalised anyway), a preceding preposition or article (``in Paris``, ``the Ruoho novel``), a known
place, an organisation word (``Inc``, ``Bank``, ``University``), months and weekdays. A candidate whose
score reaches :data:`THRESHOLD` is a name; names listed next to a name (``Ann, Bob and Carl``) get a
bonus in a second pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._lazy_re import LazyPattern
from ._pii_lexicon import WordList, first_names, is_word, known_names, places, surnames
from ._pii_patterns import Hit, before


def _words(spec: str) -> list[str]:
    """A word list written as one string (easier to read and edit than a list literal)."""
    return spec.split()


THRESHOLD = 2.0
_MAX_RUN = 8  # longer runs of capitalised words are titles or headings, not names

_TOKEN = re.compile(r"[^\W\d_]+(?:[-'\u2019][^\W\d_]+){0,3}")
_PARTICLES = frozenset(
    _words("van von der den de del della di da dos das du le la bin ibn al el ten ter y st")
)
_TITLES = frozenset(
    _words(
        "mr mrs ms miss mx dr prof professor sir dame lady lord madam madame mister rev reverend fr "
        "sra sr herr frau mme mlle monsieur señor señora senor senora sgt capt captain col gen lt "
        "officer detective judge president senator rep governor mayor uncle aunt auntie grandma "
        "grandpa"
    )
)
_MONTHS = frozenset(
    _words(
        "january february march april may june july august september october november december jan "
        "feb mar apr jun jul aug sep sept oct nov dec"
    )
)
_CALENDAR = _MONTHS | frozenset(
    _words(
        "monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri "
        "sat sun christmas easter halloween thanksgiving ramadan hanukkah diwali"
    )
)
_ORG_WORDS = frozenset(
    _words(
        "inc llc ltd ltda corp corporation co company companies group gmbh ag sa plc lp llp bv nv oy "
        "ab as bank banks university universität college school academy institute foundation "
        "association society hospital clinic church ministry department agency council committee club "
        "team fc united technologies technology tech solutions systems services labs lab media press "
        "news times journal airlines airways motors partners capital holdings international global "
        "research consulting studio studios records pictures productions entertainment software "
        "networks energy pharma pharmaceuticals investments insurance financial finance bancorp trust "
        "fund ventures enterprises industries international store stores restaurant cafe café hotel "
        "resort airport station center centre museum library park street road avenue boulevard lane "
        "drive court inc. llc. ltd. corp. co. census government administration office court republic "
        "kingdom state states city county province island islands river lake mountain valley beach "
        "bay coast"
    )
)
_PREPOSITIONS = frozenset(_words("in at from near into via across towards toward inside outside around"))
_ARTICLES = frozenset(_words("the a an this that these those its our their your his her"))


def _name_phrases() -> frozenset[str]:
    owners = _words("my his her their your the full first last maiden given")
    phrases = {f"{o} name{v}" for o in owners for v in ("", " is", " was", "'s", "\u2019s")}
    phrases |= {f"{w}name{v}" for w in ("sur", "nick", "user") for v in ("", " is", " was")}
    return frozenset(phrases)


# words just before a name (compared on the last one to four words, punctuation stripped)
_CUES = _name_phrases() | frozenset(
    """named|called|call me|i am|i'm|i\u2019m|im|this is|it's|it\u2019s|it is|here's|contact|contacted|
    ask for|
    speak to|speak with|talk to|talk with|spoke to|spoke with|met|meet|meeting with|dear|hi|hello|hey|thanks|
    thank you|regards|sincerely|cheers|signed|signed by|written by|authored by|under|attn|cc|patient|
    client|customer|employee|applicant|candidate|author|owner|holder|manager|director|ceo|founder|producer|
    commenter|actor|actress|singer|writer|wife|husband|son|daughter|brother|sister|mother|father|mom|mum|
    dad|friend|colleague|kid|child|baby|grandson|granddaughter|nephew|niece|fiance|fiancé|fiancee|fiancée|
    girlfriend|boyfriend|boss|partner|neighbor|neighbour|cousin|said|says|asked|told|vs|versus|starring|
    directed by|beneficiary|guardian|assistant to|married|marry""".replace("\n", "")
    .replace("|", "\n")
    .split("\n")
)
# cues that need a colon or similar after them ("Name: …", "From: …")
_COLON_CUES = frozenset(_words("name from to user customer client patient contact by"))
_CUE_PUNCT = ",:;-\u2013?!\"'“”"


def _has_cue_before(text: str, start: int) -> bool:
    """Whether one of :data:`_CUES` ends right before ``start`` (or a colon cue such as ``Name:``)."""
    window = text[max(0, start - 40) : start].lower().rstrip()
    colon = window.endswith((":", "?", "-", "\u2013"))
    words = window.rstrip(_CUE_PUNCT).split()[-4:]
    if not words:
        return False
    if colon and words[-1].strip(_CUE_PUNCT) in _COLON_CUES:
        return True
    for k in range(1, len(words) + 1):
        phrase = " ".join(words[-k:]).strip(_CUE_PUNCT)
        if phrase in _CUES:
            return True
    return False


_CUE_AFTER = re.compile(
    r"^(?:'s\b|\u2019s\b|\s(?:said|says|told|asked|wrote|replied|answered|explained|added|called|texted|"
    r"emailed|is (?:my|our|your|his|her|a|an|the)|was (?:born|a|an|the|my)|(?:\(|, )?born|, who|"
    r"who|and (?:his|her|their) |himself|herself|jr\b|sr\b|phd\b|md\b|esq\b)|\s?\((?:born|age|\d))"
)
_VOCATIVE_NEXT = LazyPattern(
    r",\s(?:can|could|would|will|please|i|you|we|thanks|thank|how|what|where|when|why|do|did|are|is|have)\b",
    re.IGNORECASE,
)
_SPEAKER = re.compile(r"^[ \t]?:")
_SENTENCE_END = '.!?\n\r\t"“”:;([{*•-\u2013—|>#'


class _Token:
    """One word: offsets, text, and its lower-case key without a possessive ending."""

    __slots__ = ("end", "key", "start", "text")

    def __init__(self, start: int, end: int, text: str) -> None:
        self.start, self.end, self.text = start, end, text
        low = text.lower()
        self.key = low[:-2] if low.endswith(("'s", "\u2019s")) else low


def _is_cap(tok: str) -> bool:
    return tok[0].isupper() and not (len(tok) > 1 and tok.isupper())


def _lower_candidate(tok: str) -> bool:
    """In all-lower-case text only known names that are not English words can start a candidate."""
    key = tok.lower()
    return len(key) > 1 and (key in first_names() or key in surnames()) and not is_word(key)


def _odd_camel(tok: str) -> bool:
    """Internal capitals (``GitHub``, ``iPhone``) mark products, except name prefixes (``McDonald``)."""
    inner = tok[1:]
    if not any(ch.isupper() for ch in inner) or "-" in tok:
        return False
    return not re.match(r"(?:Mc|Mac|De|Di|Da|La|Le|Van|Von|O['\u2019])[A-Z]", tok)


_STANDALONE_I = re.compile(r"\bI(?:['\u2019][a-z]{1,2})?\b")


def is_lower_text(text: str) -> bool:
    """Whether the text is written in lower case (apart from the pronoun ``I``): casing tells nothing."""
    sample = text[:4096]
    stripped = _STANDALONE_I.sub("", sample)
    return stripped == stripped.lower()


def _candidates(text: str, lower: bool) -> Iterator[list[_Token]]:
    """Runs of capitalised tokens separated by one space (or a particle, or an initial)."""
    run: list[_Token] = []
    prev_end = -1
    is_candidate = _lower_candidate if lower else _is_cap
    for m in _TOKEN.finditer(text):
        tok = _Token(m.start(), m.end(), m.group())
        gap = text[prev_end : tok.start] if run else ""
        joined = bool(run) and (gap == " " or (gap == ". " and len(run[-1].text) == 1))
        if is_candidate(tok.text) or (run and joined and tok.text.lower() in _PARTICLES):
            if run and not joined:
                yield run
                run = []
            run.append(tok)
        elif run:
            yield run
            run = []
        prev_end = tok.end
    if run:
        yield run


def _trim(run: list[_Token]) -> list[_Token]:
    """Drop particles and common words at the edges of a run, and everything after an org word."""
    for i, tok in enumerate(run):
        if tok.key in _ORG_WORDS:
            run = run[:i]
            break

    def weak(tok: _Token, known: WordList) -> bool:
        key = tok.key
        return key in _PARTICLES or key in _CALENDAR or len(key) == 1 or (is_word(key) and key not in known)

    # a run starts with a given name ("Will Smith", not "Call Smith"); it may end with a surname word
    while run and weak(run[0], first_names()) and run[0].key not in _TITLES:
        run = run[1:]
    while run and weak(run[-1], known_names()):
        run = run[:-1]
    return run


def _sentence_initial(text: str, start: int) -> bool:
    head = text[max(0, start - 4) : start].rstrip(" ")
    return not head or head[-1] in _SENTENCE_END or head.endswith("?") or start == 0


def _prev_word(text: str, start: int) -> str:
    words = before(text, start, 24).split()
    return words[-1].strip(",;") if words else ""


def _strong_first(tok: _Token) -> bool:
    """A known given name that is neither an English word nor a place."""
    key = tok.key
    return key in first_names() and not is_word(key) and key not in places()


def _near_digit(text: str, tok: _Token) -> bool:
    return any(ch.isdigit() for ch in text[max(0, tok.start - 6) : tok.end + 6])


def _token_score(text: str, tok: _Token, lower: bool) -> float:
    """Evidence from the token itself: known given name / surname, proper noun, or a plain word."""
    key = tok.key
    known_first = key in first_names()
    if key in _CALENDAR and (key not in _MONTHS or not known_first or _near_digit(text, tok)):
        return -3.0
    if key in places():
        return 0.0 if known_first else -3.0
    if tok.text.isupper() and len(tok.text) > 1:
        return 1.0 if known_first else -0.5
    if _odd_camel(tok.text):
        return -1.0
    word = is_word(key)
    if known_first:
        return 0.75 if word else 2.0
    if key in surnames():
        return 0.25 if word else 1.0
    if word:
        return -1.0
    return 0.25 if lower else 0.75


def _score(text: str, run: list[_Token], lower: bool) -> float:
    """The evidence that ``run`` names a person (see the module docstring)."""
    names = [t for t in run if t.key not in _PARTICLES]
    start, end = run[0].start, run[-1].end
    joined = " ".join(t.key for t in names)
    if joined in places():
        return -5.0
    score = sum(_token_score(text, t, lower) for t in names)
    if len(names) >= 2:
        score += 0.5
        first, last = names[0].key, names[-1].key
        if first in first_names() and last in surnames() and not is_word(first) and not is_word(last):
            score += 0.5
    prev = _prev_word(text, start).rstrip(".")
    if prev in _TITLES:
        score += 3.0
    elif _has_cue_before(text, start):
        score += 1.75
    elif prev in _ARTICLES or (prev in _PREPOSITIONS and not _strong_first(names[0])):
        score -= 1.0
    tail = text[end : end + 24]
    if (
        _CUE_AFTER.match(tail.lower())
        or run[-1].text.lower().endswith(("'s", "\u2019s"))
        or (_SPEAKER.match(tail) and _sentence_initial(text, start))
    ):
        score += 1.5
    elif tail.startswith(",") and _sentence_initial(text, start) and len(names) == 1:
        score += 2.0 if _VOCATIVE_NEXT.match(tail) else 1.0  # vocative: "Danial, can I …"
    if _is_org_next(text, end):
        score -= 4.0
    if _sentence_initial(text, start) and len(names) == 1 and names[0].key not in first_names():
        score -= 0.75
    return score


_STREETISH = frozenset({"street", "road", "avenue", "lane", "drive", "court"})


def _is_org_next(text: str, end: int) -> bool:
    nxt = text[end : end + 24].lstrip(" ,").split(" ", 1)[0].strip(".,;:")
    return nxt[:1].isupper() and nxt.lower() in _ORG_WORDS and nxt.lower() not in _STREETISH


def _is_list_neighbour(text: str, a_end: int, b_start: int) -> bool:
    gap = text[a_end:b_start].strip().lower()
    return gap in {",", "and", "or", "&", ", and", ",and", "to", "with", "y", "und", "et", "e"}


def find_names(text: str) -> Iterator[Hit]:
    """Person names (label ``name``)."""
    lower = is_lower_text(text)
    runs = [r for r in (_trim(run) for run in _candidates(text, lower) if len(run) <= _MAX_RUN) if r]
    scores = [_score(text, run, lower) for run in runs]
    accepted = [s >= THRESHOLD for s in scores]
    for i, run in enumerate(runs):  # second pass: lists of names
        if accepted[i] or scores[i] < THRESHOLD - 1.75:
            continue
        left = i > 0 and accepted[i - 1] and _is_list_neighbour(text, runs[i - 1][-1].end, run[0].start)
        right = (
            i + 1 < len(runs)
            and accepted[i + 1]
            and _is_list_neighbour(text, run[-1].end, runs[i + 1][0].start)
        )
        if left or right:
            accepted[i] = True
    for run, ok in zip(runs, accepted, strict=True):
        if ok:
            yield Hit(run[0].start, run[-1].end, "name")

"""Street addresses from their parts, not from a gazetteer.

Strong parts are enough on their own: a street line around a house number (``12 Oak St``,
``4589 40th Street``, ``Via Roma 12``, ``Strickstrasse 61``, ``Hegedûs Gyula utca 76``, ``ul. Słowicza 10``),
a PO box, a US military address (``Unit 7194 Box 5854``, ``APO AE 09012``), ``City, ST 12345`` and UK /
Canadian postcodes. Weak parts (``Apt. 12``, ``Suite 300``, a number + capitalised words, a postcode line)
count only next to another part or after an address cue (``my address is``, ``ship to``, ``live at``).
Adjacent parts are merged into one span, which then runs on over the city, region and postcode after it.

Street lines are found from their house number: a fast digit scan, then a look at the few words on either
side (set look-ups), so that the cost does not grow with the number of street types known.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._lazy_re import LazyPattern
from ._pii_patterns import Hit, before


def _words(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


# street types written after the street name ("Oak Street", "Hegedûs Gyula utca")
STREET_TYPES = _words(
    "street st avenue ave av road rd boulevard blvd lane ln drive dr way court ct place pl terrace ter "
    "circle cir parkway pkwy highway hwy square sq trail trl loop row crescent cres close grove gardens gdns "
    "mews walk hill heights alley plaza expressway freeway turnpike pike path run crossing xing point pt "
    "park ridge view cove glen hollow knoll landing meadow meadows green bypass quay wharf esplanade "
    "promenade parade broadway causeway center centre route rte spur union estate estates village station "
    "creek cliffs rapids isle island islands coves greens pass falls fork forks harbor harbour junction "
    "motorway mall manor mill mills orchard oval plains port ports prairie ranch shoal shores springs "
    "stravenue summit trace track tunnel vale valley ville vista "
    "utca u út körút rkp tér ulica ul strasse straße str gasse weg vej vei veien gate gata gatan laan straat "
    "terrasse allé allee vägen väg vegen platz plads torg tori katu tie tee"
)
# street words written before the name ("Via Roma 12", "Rue de la Paix 3", "ul. Słowicza 10")
STREET_PREFIXES = _words(
    "rue via viale piazza piazzale corso largo vicolo calle avenida avda av rua travessa praça praca carrer "
    "plaza paseo camino carretera boulevard bd chemin allée quai impasse ul ulica aleja al plac utca út "
    "straat laan weg platz rambla avinguda ruta strada contrada rruga sokak caddesi cadde odos leoforos"
)
# one-word streets with the type glued on ("Strickstrasse", "Björkvägen", "Sahankatu")
COMPOUND_SUFFIXES = tuple(
    [
        "straße",
        "strasse",
        "str.",
        "gasse",
        "weg",
        "vej",
        "vei",
        "veien",
        "vegen",
        "vägen",
        "gatan",
        "gata",
        "gade",
        "laan",
        "straat",
        "plein",
        "gracht",
        "kade",
        "katu",
        "tie",
        "utca",
        "allee",
        "platz",
        "damm",
        "steig",
        "ufer",
        "torget",
        "torv",
        "stræde",
        "stræti",
        "stien",
        "väg",
        "polku",
        "braut",
        "vegur",
        "gränd",
        "backe",
        "bakken",
        "stig",
        "útja",
        "utcája",
    ]
)
_LOWER_OK = (
    _words(
        "de del della di da dos das do du des la le les van von der den ter ten e y i og och und et al el "
        "of the on"
    )
    | STREET_TYPES
    | STREET_PREFIXES
)
_NOT_STREET = _words(
    "apt apartment suite ste unit flat fl floor room rm bldg building mr mrs ms dr miss prof "
    "box version chapter page section step level grade year years day days week weeks and or to at in"
)

_HOUSE_NUMBER = re.compile(r"\d{1,6}[A-Za-z]?(?:-\d{1,4})?")
_LINE_WORD = re.compile(r"[^\s,;:()\"]{1,40}")
_YEAR = re.compile(r"(?:1[89]|20)\d\d")
_MAX_NAME_WORDS = 6

_PO_BOX = re.compile(
    r"\b(?:[Pp]\.?[ ]?[Oo]\.?[ ]?[Bb][Oo][Xx]|[Pp]ost [Oo]ffice [Bb]ox|[Pp]ostfach|[Aa]partado(?: postal)?"
    r"|[Cc]aixa [Pp]ostal|[Pp]ostbox|BP)[ ]{0,2}#?\d{1,6}\b"
)
_MILITARY = re.compile(
    r"\b(?:(?:unit|psc|cmr)[ ]\d{1,5},?[ ]box[ ]\d{1,5}|(?:apo|fpo|dpo)[ ](?:aa|ae|ap)[ ]\d{5}|"
    r"(?:usns|uss|usnv|usnsv)[ ][A-Z][a-z]{1,20})\b",
    re.IGNORECASE,
)
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC"
    "|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR|GU|VI|AS|MP|AA|AE|AP"
    "|AB|BC|MB|NB|NL|NS|NT|NU|ON|PE|QC|SK|YT"
)
# "ST 12345" after a capitalised city and a comma or space; the city is checked in Python
_STATE_ZIP = re.compile(rf"\b(?:{_STATES})[ ]{{1,2}}(?:\d{{5}}(?:-\d{{4}})?|[A-Z]\d[A-Z][ ]?\d[A-Z]\d)\b")
_UK_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?[ ]\d[ABD-HJLNP-UW-Z]{2}\b")
_CA_POSTCODE = re.compile(r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ ]\d[ABCEGHJ-NPRSTV-Z]\d\b")
_UNIT = re.compile(
    r"\b(?:[Aa]pt|APT|[Aa]partment|[Ss]uite|SUITE|[Ss]te|[Uu]nit|[Ff]lat|[Ff]l|[Ff]loor|[Rr]oom|[Rr]m|[Bb]ldg"
    r"|[Bb]uilding)\.?[ ]{0,2}#?\d{1,5}[A-Za-z]?\b"
)
_ZIP_LINE = re.compile(
    r"(?m)^[ \t>]{0,8}(?:[^\W\d_][\w'\u2019 .-]{1,40}[ ,]{1,2})?\d{4,5}(?:-\d{3,4})?[ \t]{0,4}$"
)
_ADDRESS_CUE = LazyPattern(
    r"(?:\baddress(?:\s(?:is|to|at))?|\baddr|\blive at|\blives at|\bliving at|\blocated at|\bship(?:ped)? to"
    r"|\bdeliver(?:ed)? to|\bsend (?:it|them|this|the \w+) to|\bmail(?:ed)? to|\bmoved to|\breside at"
    r"|\bresides at|\bcorner of|\bmeet (?:me )?at|\bpick (?:me )?up at|\btaxi to|\bvisit us at"
    r"|\benter on|\bstay(?:ing)? at)[\s:,]{0,8}$",
    re.IGNORECASE,
)
_TAIL = LazyPattern(
    r"[ \t]{0,4}(?:,[ \t]{0,4})?(?:\n[ \t>]{0,4})?(?:,[ \t]{0,4})?"
    r"(?:[^\W\d_][\w'\u2019.-]{0,30}|\d{3,6}(?:-\d{3,4})?|[A-Z]\d[A-Z][ ]?\d[A-Z]\d)"
)
_TAIL_STEPS = 8
_STOP_WORDS = _words("and or for in to the a is was it i please i'm we he she they this that last since")


def _key(word: str) -> str:
    return word.lower().rstrip(".,")


def _capitalised(words: list[str], lower_text: bool) -> bool:
    """Street names are capitalised, bar particles and street words (unless all the text is lower case)."""
    if not words:
        return False
    if lower_text:
        return True
    first = words[0]
    return (first[0].isupper() or first[0].isdigit()) and all(
        w[0].isupper() or w[0].isdigit() or _key(w) in _LOWER_OK for w in words[1:]
    )


def _line_words(text: str, lo: int, hi: int, *, last_line: bool = True) -> list[tuple[int, str]]:
    """Words (with offsets) of ``text[lo:hi]``, restricted to its last (or first) line."""
    if last_line:
        cut = text.rfind("\n", lo, hi)
        lo = cut + 1 if cut >= 0 else lo
    else:
        cut = text.find("\n", lo, hi)
        hi = cut if cut >= 0 else hi
    return [(m.start(), m.group()) for m in _LINE_WORD.finditer(text, lo, hi)]


def _street_before(text: str, num_start: int, lower_text: bool) -> int | None:
    """Start of a street name written before the house number, or ``None``."""
    lo = max(0, num_start - 80)
    cut = text.rfind("\n", lo, num_start)
    quick = text[cut + 1 if cut >= 0 else lo : num_start].split()[-(_MAX_NAME_WORDS + 1) :]
    if not quick or not (
        quick[-1].lower().endswith(COMPOUND_SUFFIXES)
        or any(_key(w) in STREET_TYPES or _key(w) in STREET_PREFIXES for w in quick)
    ):
        return None
    left = _line_words(text, lo, num_start)[-(_MAX_NAME_WORDS + 1) :]
    if not left or not left[-1][1][0].isalpha():
        return None
    last = left[-1][1]
    if (lower_text or last[0].isupper()) and last.lower().endswith(COMPOUND_SUFFIXES) and len(last) > 4:
        return left[-1][0]
    keys = [_key(w) for _, w in left]
    if keys[-1] in STREET_TYPES and len(left) >= 2:  # "Hegedûs Gyula utca 76", "Oak Street 12"
        names = [w for _, w in left[:-1]]
        start = len(names)
        while start > 0 and len(names) - start < 4 and _capitalised([names[start - 1]], lower_text):
            start -= 1
        if start < len(names) and _key(names[start]) not in _NOT_STREET:
            return left[start][0]
    for i in range(len(left) - 1, -1, -1):  # "Via Raffaele Conforti 74", "rue de la Paix 3"
        if keys[i] in STREET_PREFIXES and i < len(left) - 1:
            names = [w for _, w in left[i + 1 :]]
            prefix = left[i][1]
            preceded_by_number = i > 0 and left[i - 1][1][0].isdigit()
            ok_prefix = lower_text or prefix[0].isupper() or preceded_by_number or prefix == "ul."
            if ok_prefix and _capitalised(names, lower_text) and not set(map(_key, names)) & _NOT_STREET:
                return left[i][0]
            return None
    return None


def _street_after(text: str, num_end: int, lower_text: bool) -> int | None:
    """End of a street name + type written after the house number (``12 Oak St``), or ``None``."""
    right = _line_words(text, num_end, min(len(text), num_end + 100), last_line=False)
    names: list[str] = []
    for pos, word in right[: _MAX_NAME_WORDS + 1]:
        key = _key(word)
        if key in STREET_TYPES and names and _capitalised(names, lower_text):
            return pos + len(word)  # (names holds no _NOT_STREET word: the loop stops at one)
        if key in _NOT_STREET or not (word[0].isalpha() or word[0].isdigit()):
            return None
        names.append(word)
    return None


_WORD_AFTER = re.compile(r"[ ]{1,2}(?:\d{1,6}[ ]{1,2})?[^\W\d_]")
_WORD_BEFORE_END = re.compile(r"[^\W\d_]\.?[ ]{1,2}$")


def _street_lines(text: str, lower_text: bool) -> Iterator[tuple[int, int]]:
    """Street lines found from their house number (cheap checks first: most numbers are not one)."""
    for m in _HOUSE_NUMBER.finditer(text):
        start, end = m.span()
        if start and (text[start - 1].isalnum() or text[start - 1] in "-/.,+$€£#"):
            continue
        if end < len(text) and (text[end].isalnum() or text[end] in "-/%"):
            continue
        if _WORD_BEFORE_END.search(text, max(0, start - 4), start) and not _YEAR.fullmatch(m.group()):
            begin = _street_before(text, start, lower_text)
            if begin is not None:
                yield begin, end
                continue
        if _WORD_AFTER.match(text, end):
            stop = _street_after(text, end, lower_text)
            if stop is not None:
                yield start, stop


def _city_state_zip(text: str) -> Iterator[tuple[int, int]]:
    for m in _STATE_ZIP.finditer(text):
        words = _line_words(text, max(0, m.start() - 40), m.start())
        if words and words[-1][1][0].isupper():
            yield words[-1][0], m.end()


def _strong_parts(text: str, lower_text: bool) -> Iterator[tuple[int, int]]:
    yield from _street_lines(text, lower_text)
    yield from _city_state_zip(text)
    for pattern in (_PO_BOX, _MILITARY, _UK_POSTCODE, _CA_POSTCODE):
        for m in pattern.finditer(text):
            yield m.span()


_NUMBERED_NAME = re.compile(
    r"\d{1,5}[A-Za-z]?[ ]{1,2}[^\W\d_][\w'\u2019.-]{1,30}(?:[ ]{1,2}[^\W\d_][\w'\u2019.-]{1,30}){0,3}"
    r"(?:[ ]{1,2}\d{1,5}[A-Za-z]?\.?)?(?![\w])"
)


def _weak_parts(text: str, lower_text: bool) -> Iterator[tuple[int, int]]:
    for m in _UNIT.finditer(text):
        yield m.span()
    for m in _NUMBERED_NAME.finditer(text):  # "4923 Parmova 109": a number and capitalised words
        if m.start() and (text[m.start() - 1].isalnum() or text[m.start() - 1] in ".,/-"):
            continue
        number, *words = m.group().split()
        plausible = _capitalised(words, lower_text) and not set(map(_key, words)) & _NOT_STREET
        if plausible and not _YEAR.fullmatch(number):
            yield m.span()
    for m in _ZIP_LINE.finditer(text):
        yield m.start() + len(m.group()) - len(m.group().lstrip(" \t>")), m.end()


def _near(a: tuple[int, int], b: tuple[int, int], text: str) -> bool:
    """Two parts belong together: they touch, or only spaces, commas and line breaks separate them."""
    lo, hi = (a, b) if a[0] <= b[0] else (b, a)
    if hi[0] <= lo[1]:
        return True
    gap = text[lo[1] : hi[0]]
    return len(gap) <= 12 and gap.count("\n") <= 2 and not gap.strip(" \t\n,;.?>\u00a0")


def _clusters(parts: list[tuple[int, int, bool]], text: str) -> Iterator[list[tuple[int, int, bool]]]:
    """Group parts (sorted by start) whose neighbours are near each other into address blocks."""
    block: list[tuple[int, int, bool]] = []
    end = -1
    for part in sorted(parts):
        if block and _near((block[0][0], end), part[:2], text):
            block.append(part)
            end = max(end, part[1])
            continue
        if block:
            yield block
        block, end = [part], part[1]
    if block:
        yield block


def _accept(block: list[tuple[int, int, bool]], text: str) -> bool:
    """A block is an address if it has a strong part, follows an address cue, or is a unit + another part."""
    if any(strong for _, _, strong in block):
        return True
    if _ADDRESS_CUE.search(before(text, block[0][0], 40)):
        return True
    has_unit = any(_UNIT.fullmatch(text, s, e) for s, e, _ in block)
    return has_unit and len(block) >= 2


def _extend(text: str, end: int, lower_text: bool) -> int:
    """Carry an address on over the city, region, country and postcode that follow it."""
    for _ in range(_TAIL_STEPS):
        m = _TAIL.match(text, end)
        if m is None:
            break
        word = m.group().strip(" \t\n,>")
        key = _key(word)
        if key in _STOP_WORDS:
            break
        if not (word[0].isdigit() or word[0].isupper() or lower_text or key in _LOWER_OK):
            break
        end = m.end()
    return end


def find_addresses(text: str) -> Iterator[Hit]:
    """Street addresses (label ``address``)."""
    lower_text = not any(ch.isupper() for ch in text[:4096])
    parts = [(s, e, True) for s, e in _strong_parts(text, lower_text)]
    parts += [(s, e, False) for s, e in _weak_parts(text, lower_text)]
    for block in _clusters(parts, text):
        if _accept(block, text):
            yield Hit(block[0][0], _extend(text, max(e for _, e, _ in block), lower_text), "address")

# ruff: noqa: RUF001  (the homoglyph table is made of deliberately confusable characters)
"""Text normalisation and de-obfuscation "views" for the classifiers.

:func:`clean` is applied to every text before hashing (training and scoring alike): it drops invisible
and control characters, lone surrogates and Latin diacritics, and folds compatibility forms (full-width,
mathematical alphanumerics, ligatures) with NFKD. :func:`views` adds extra readings of a text that undo
common prompt-injection obfuscations (homoglyphs, leetspeak, spaced-out letters, words split across lines,
instructions hidden in HTML/markdown comments, base64/hex payloads, rot13, reversed text). The injection
score is the maximum over views, so an extra view can only raise a score when the decoded text itself
looks like an attack; views are added only when their trigger is present, to keep short texts fast.

Everything here is linear in the input length: no regular expression with nested quantifiers, comment
markers are found with ``str.find``, and decoding work is capped.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

_SCAN_CHARS = 20_000  # heuristics that only decide whether to build a view look at this prefix

# --- invisible characters ------------------------------------------------------------------------------

_INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00, 0x08),
    (0x0B, 0x0C),
    (0x0E, 0x1F),
    (0x7F, 0x9F),
    (0xAD, 0xAD),  # soft hyphen
    (0x34F, 0x34F),  # combining grapheme joiner
    (0x61C, 0x61C),
    (0x115F, 0x1160),  # Hangul fillers
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),  # zero-width space/joiners, LRM/RLM
    (0x202A, 0x202E),  # bidi embeddings/overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates
    (0x3164, 0x3164),
    (0xD800, 0xDFFF),  # lone surrogates (only reachable through surrogateescape/pass strings)
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # BOM / zero-width no-break space
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE007F),  # tag characters ("ASCII smuggling")
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
_INVISIBLE: dict[int, None] = {cp: None for lo, hi in _INVISIBLE_RANGES for cp in range(lo, hi + 1)}
_ASCII_CONTROLS: dict[int, None] = {
    cp: None for cp in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)
}

_COMBINING_RANGES = ((0x300, 0x36F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))
_COMBINING: dict[int, None] = {cp: None for lo, hi in _COMBINING_RANGES for cp in range(lo, hi + 1)}


def clean(text: str) -> str:
    """Canonical form used for hashing: no invisible/control characters, NFKD-folded, no diacritics.

    Hangul and other canonical compositions are restored with NFC so non-Latin scripts stay compact.
    """
    if text.isascii():
        return text.translate(_ASCII_CONTROLS)
    text = text.translate(_INVISIBLE)
    text = unicodedata.normalize("NFKD", text).translate(_COMBINING)
    return unicodedata.normalize("NFC", text)


# --- homoglyphs and leetspeak --------------------------------------------------------------------------

_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "з": "3", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ь": "b", "ү": "y", "ɡ": "g", "г": "r",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "З": "3", "І": "I", "Ї": "I", "Ј": "J", "К": "K", "М": "M",
    "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "Ԛ": "Q", "Ԝ": "W",
    "Һ": "H", "Ӏ": "I", "Ү": "Y",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "c",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Armenian, Latin variants and letter-like symbols
    "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n", "ı": "i", "ȷ": "j", "ℓ": "l", "ǀ": "l",
}  # fmt: skip
_HOMOGLYPH_TABLE = str.maketrans(_HOMOGLYPHS)

_LEET_TABLE = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "|": "l", "!": "i", "€": "e", "+": "t"}
)  # fmt: skip
_LEET_HINT = re.compile(r"[a-z][0-9@$|!€+]|[0-9@$|!€][a-z]", re.IGNORECASE)


def fold_homoglyphs(text: str) -> str:
    """Map Cyrillic/Greek/Armenian look-alikes to the Latin letters they imitate."""
    return text.translate(_HOMOGLYPH_TABLE)


def unleet(text: str) -> str:
    """Read digits and symbols as the letters they stand for (``1gn0r3`` -> ``ignore``)."""
    return text.translate(_LEET_TABLE)


# --- spaced-out letters and words split over lines -----------------------------------------------------

_SPLIT_WS = re.compile(r"(\s+)")
_LETTER_SEPARATORS = frozenset(".-_*·•/|,+~")
# cheap pre-check (fixed-width, no backtracking): three single characters in a row, or a dotted run
_SPACED_HINT = re.compile(r"(?<!\S)\w\s\w\s\w(?!\S)|\w[.\-_*·•/|,+~]\w[.\-_*·•/|,+~]\w")


def _is_dotted(token: str) -> bool:
    """``i.g.n.o.r.e``-style tokens: single characters joined by one separator character."""
    return (
        len(token) >= 5
        and len(token) % 2 == 1
        and token[::2].isalnum()
        and set(token[1::2]) <= _LETTER_SEPARATORS
    )


def join_spaced(text: str) -> str:
    """Join runs of 3+ single characters (``i g n o r e``, one per line, or ``i.g.n.o.r.e``).

    A single whitespace character continues a run; longer whitespace ends a word. Returns ``text``
    itself when there is nothing to join.
    """
    if not _SPACED_HINT.search(text):
        return text
    parts = _SPLIT_WS.split(text)
    out: list[str] = []
    run: list[str] = []
    changed = False

    def flush() -> None:
        nonlocal changed
        changed = changed or len(run) >= 3
        out.append("".join(run) if len(run) >= 3 else " ".join(run))
        run.clear()

    for i in range(0, len(parts), 2):
        token = parts[i]
        sep = parts[i + 1] if i + 1 < len(parts) else ""
        if _is_dotted(token):
            token, changed = token[::2], True
        if len(token) == 1 and token.isalnum():
            run.append(token)
            if len(sep) <= 1:
                continue
            flush()
            out.append(" ")
            continue
        if run:
            flush()
            out.append(" ")
        out.append(token)
        out.append(" " if sep else "")
    if run:
        flush()
    return "".join(out) if changed else text


def join_lines(text: str) -> str:
    """Remove line breaks so a word or instruction broken over lines reads as one."""
    return text.replace("-\n", "").replace("\r", "").replace("\n", "")


def has_broken_lines(text: str) -> bool:
    """Many short lines, or a line ending in a hyphen: the pattern of text chopped up to hide words."""
    if "-\n" in text:
        return True
    lines = [line for line in text[:_SCAN_CHARS].splitlines() if line.strip()]
    if len(lines) < 3:
        return False
    lengths = sorted(len(line.strip()) for line in lines)
    return lengths[len(lengths) // 2] <= 12


# --- hidden markup ---------------------------------------------------------------------------------------

_MAX_HIDDEN = 64


def hidden_segments(text: str) -> list[str]:
    """Contents of HTML comments (``<!-- ... -->``) and markdown link-reference comments (``[//]: # (...)``).

    Found with ``str.find`` (linear); an unterminated comment runs to the end of the text.
    """
    found: list[str] = []
    start = text.find("<!--")
    while start != -1 and len(found) < _MAX_HIDDEN:
        end = text.find("-->", start + 4)
        found.append(text[start + 4 : end if end != -1 else len(text)])
        if end == -1:
            break
        start = text.find("<!--", end + 3)
    if "]:" in text:
        for line in text.splitlines():
            stripped = line.lstrip()
            if not stripped.startswith("[") or len(found) >= _MAX_HIDDEN:
                continue
            for marker in ("]: #", "]: <>", "]:#"):
                at = stripped.find(marker)
                if at != -1:
                    found.append(stripped[at + len(marker) :].strip(" ()\"'"))
                    break
    return [s for s in found if s.strip()]


# --- encoded payloads ---------------------------------------------------------------------------------

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_RUN = re.compile(r"(?:0x)?[0-9a-fA-F]{16,}")
_MAX_PAYLOADS = 32
_MAX_PAYLOAD_CHARS = 1 << 16


def _readable(data: bytes) -> str | None:
    """Decoded bytes as text if they look like natural language (mostly printable, has letters)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 6:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text)
    letters = sum(ch.isalpha() for ch in text)
    if printable < 0.95 * len(text) or letters < 0.5 * len(text):
        return None
    return text


def _decode_base64(run: str) -> str | None:
    body = run.rstrip("=").replace("-", "+").replace("_", "/")
    body += "=" * (-len(body) % 4)
    try:
        return _readable(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError):
        return None


def _decode_hex(run: str) -> str | None:
    body = run[2:] if run[:2].lower() == "0x" else run
    if len(body) % 2:
        return None
    try:
        return _readable(bytes.fromhex(body))
    except ValueError:
        return None


def decoded_payloads(text: str, depth: int = 2) -> list[str]:
    """Readable texts hidden as base64 or hex runs (nested encodings up to ``depth`` levels)."""
    found: list[str] = []
    for pattern, decode in ((_BASE64_RUN, _decode_base64), (_HEX_RUN, _decode_hex)):
        for count, match in enumerate(pattern.finditer(text)):
            if count >= _MAX_PAYLOADS:
                break
            run = match.group()
            if len(run) > _MAX_PAYLOAD_CHARS:
                continue
            decoded = decode(run)
            if decoded is None:
                continue
            found.append(decoded)
            if depth > 1:
                found.extend(decoded_payloads(decoded, depth - 1))
    return found


# --- rot13 and reversed text -------------------------------------------------------------------------

_COMMON_TEXT = """the and you your are for not all any now from with this that what have will can must only
    ignore disregard forget previous prior above below instructions instruction rules prompt system
    print reveal show tell output password secret hidden pretend act role mode developer admin
    repeat everything anything say write answer respond response user assistant model text
    following new task tasks again never always instead without restrictions filter guidelines"""
_COMMON_WORDS = frozenset(_COMMON_TEXT.split())
_WORD = re.compile(r"[a-z]{3,}")


_ROT13 = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM",
)


def rot13(text: str) -> str:
    """Caesar-shift ASCII letters by 13."""
    return text.translate(_ROT13)


def _decoded_hits(text: str) -> tuple[int, int]:
    """How many words mean nothing as written but are common words once rot13'd / reversed."""
    sample = text[:_SCAN_CHARS].lower()
    words = _WORD.findall(sample)
    rotated = _WORD.findall(rot13(sample))
    rot_hits = sum(
        w not in _COMMON_WORDS and r in _COMMON_WORDS for w, r in zip(words, rotated, strict=False)
    )
    rev_hits = sum(w not in _COMMON_WORDS and w[::-1] in _COMMON_WORDS for w in words)
    return rot_hits, rev_hits


# --- all views -------------------------------------------------------------------------------------------


def views(text: str) -> list[tuple[str, str]]:
    """``(name, text)`` readings of ``text`` for injection scoring; the first is ``clean(text)``.

    Views are deduplicated and only built when their trigger is present.
    """
    base = clean(text)
    out: list[tuple[str, str]] = [("text", base)]
    seen = {base}

    def add(name: str, view: str) -> None:
        if view and view not in seen:
            seen.add(view)
            out.append((name, view))

    folded = fold_homoglyphs(base) if not base.isascii() else base
    add("homoglyphs", folded)
    spaced = join_spaced(folded)
    add("spaced letters", spaced)
    if _LEET_HINT.search(spaced):
        add("leetspeak", unleet(spaced))
    if "\n" in folded and has_broken_lines(folded):
        add("joined lines", join_lines(folded))
    hidden = hidden_segments(folded)
    if hidden:
        add("hidden comment", "\n".join(hidden))
    payloads = decoded_payloads(folded)
    if payloads:
        add("decoded payload", clean("\n".join(payloads)))
    rot_hits, rev_hits = _decoded_hits(folded)
    if rot_hits >= 3:
        add("rot13", rot13(folded))
    if rev_hits >= 3:
        add("reversed", folded[::-1])
    return out


# --- canonical words for injection cues ----------------------------------------------------------------
# Synonyms and common translations of the words instruction-override attacks are built from, mapped to
# one English word each, so the injection model generalises from "ignore previous instructions" to
# "disregard prior directives" or "ignoriere die vorherigen Anweisungen" without seeing every variant.

_CANONICAL_GROUPS: dict[str, str] = {
    "ignore": "disregard disregarding ignoring ignoriere ignorieren ignoriert ignora ignorar ignorez ignorer "
    "ignorate negeer zignoruj overlook",
    "forget": "vergiss vergessen vergesst olvida olvidar olvídate olvidate oublie oubliez oublier dimentica "
    "dimenticate esqueça esqueca zapomnij",
    "instructions": "directives directive guidance guidelines anweisungen anweisung instruktionen "
    "instrucciones instrucción instruccion consignes istruzioni instruções instrucoes instructies instrukcje",
    "previous": "prior preceding foregoing earlier vorherigen vorherige vorigen obigen vorangegangenen "
    "anteriores anterior précédentes precedentes précédents precedenti precedente vorige poprzednie",
    "password": "passwort passcode passphrase contraseña contrasena wachtwoord hasło haslo",
    "secret": "geheimnis secreto segreto",
    "reveal": "disclose divulge leak verrate verrat revela revelar révèle revele rivela",
    "everything": "alles todo tout tutto",
    "rules": "regeln reglas règles regles regole regels regras",
}
_CANONICAL: dict[str, str] = {
    word: canon for canon, words in _CANONICAL_GROUPS.items() for word in words.split()
} | {"systemprompt": "system prompt", "sysprompt": "system prompt"}
_ALPHA_WORD = re.compile(r"[^\W\d_]+")


def canonical_words(text: str) -> str:
    """Replace synonyms/translations of injection cue words by one canonical English word each."""
    if _CANONICAL.keys().isdisjoint(_ALPHA_WORD.findall(text.lower())):
        return text
    return _ALPHA_WORD.sub(lambda m: _CANONICAL.get(m.group().lower(), m.group()), text)

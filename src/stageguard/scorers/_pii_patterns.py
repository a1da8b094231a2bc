"""Validated PII detectors: a bounded regex finds candidates, a checksum or a context cue confirms them.

Every pattern here is linear-time on any input: quantifiers are bounded or apply to one character
class, repeated groups start with a delimiter that their body cannot match, and most patterns are
anchored by a look-behind so that they can only start at a token boundary (so a megabyte without
delimiters is scanned once, not once per position).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator
from types import ModuleType
from typing import NamedTuple

from ._lazy_re import LazyPattern


class Hit(NamedTuple):
    """A detected stretch of text: ``text[start:end]`` is PII of category ``label``."""

    start: int
    end: int
    label: str


def _split(spec: str) -> list[str]:
    """A word list written as one string (easier to read and edit than a list literal)."""
    return spec.split()


CUE_WINDOW = 48  # characters of context searched for a cue word before a candidate


def before(text: str, start: int, size: int = CUE_WINDOW) -> str:
    """The lower-cased context just before ``start`` (bounded, so cue checks stay linear)."""
    return text[max(0, start - size) : start].lower()


def after(text: str, end: int, size: int = CUE_WINDOW) -> str:
    """The lower-cased context just after ``end``."""
    return text[end : end + size].lower()


# A reference number's own label right before a number (``Order #``, ``Case number``, ``Part no.``,
# ``Invoice ID is``): such a number is not an SSN, phone or account even when it has their shape.
_ID_CUE = LazyPattern(
    r"\b(?:order|invoice|inv|case|ticket|ref|reference|serial|s/n|part|sku|item|tracking|confirmation"
    r"|transaction|txn|receipt|batch|lot|model|isbn|issn|upc|ean|imei|meeting|booking|reservation|claim"
    r"|policy|po|build|version|patch|release|bug|issue|job|report|ein|product|catalog|catalogue|sample"
    r"|licen[cs]e|passport|permit|member|membership|customer|employee|student|vin|plate)"
    r"(?:[ ]?(?:number|num|no|nr|id|code|#))?[\s:#=.\-]{0,4}(?:(?:is|was)[ ])?$"
)


def id_cue_before(text: str, start: int) -> bool:
    """Whether the number at ``start`` is labelled as an order, invoice, case, part, … number."""
    return bool(_ID_CUE.search(before(text, start, 28)))


# --- email -------------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+%'-])[\w.+%'-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}(?![\w@-])"
)


def find_emails(text: str) -> Iterator[Hit]:
    """Address-shaped strings whose top-level domain is alphabetic."""
    for m in _EMAIL.finditer(text):
        local, _, domain = m.group().partition("@")
        tld = domain.rsplit(".", 1)[-1]
        if local.startswith(".") or local.endswith(".") or not tld.isalpha() or len(tld) < 2:
            continue
        yield Hit(m.start(), m.end(), "email")


# --- network: URL, domain, IP, MAC --------------------------------------------------------------------

_URL_CHARS = r"[^\s<>\"'`\x00-\x1f\x7f]"
_URL = re.compile(
    rf"\b(?:https?|ftp)://{_URL_CHARS}{{1,2048}}"
    rf"|\bwww\.[A-Za-z0-9-]{{1,63}}(?:\.[A-Za-z0-9-]{{1,63}}){{1,8}}(?:[/?#]{_URL_CHARS}{{0,2048}})?",
    re.IGNORECASE,
)
_TLDS = (
    "com|net|org|edu|gov|mil|int|info|biz|io|co|ai|app|dev|me|tv|us|uk|de|fr|es|it|nl|be|ch|at|se|no|dk"
    "|fi|is|pl|cz|sk|hu|ro|bg|gr|pt|ie|lu|ee|lv|lt|si|hr|rs|ru|ua|tr|il|ae|sa|in|cn|jp|kr|tw|hk|sg|my|th"
    "|vn|id|ph|au|nz|ca|mx|br|ar|cl|pe|uy|za|ng|ke|eg|ma|eu|asia|online|site|shop|xyz|cloud|tech"
)
_DOMAIN = re.compile(
    rf"(?<![\w.@/-])(?:[A-Za-z0-9-]{{1,63}}\.){{1,8}}(?:{_TLDS})(?![\w-]|\.\w|@)(?:/[^\s<>\"']{{0,2048}})?"
)
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]{3,45}(?![\w:])")
_MAC = re.compile(
    r"(?<![\w:.-])(?:[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}"
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})(?![\w:.-])"
)
_VERSION_CUE = LazyPattern(r"(?:\bv|version|release|build)\s?$")
_TRAILING = ".,;:!?)]}'\""


def _trim_url(text: str, start: int, end: int) -> int:
    """Drop sentence punctuation glued to the end of a URL (keep a ``)`` that closes a ``(`` inside)."""
    while end > start and text[end - 1] in _TRAILING:
        if text[end - 1] == ")" and text.count("(", start, end) >= text.count(")", start, end):
            break
        end -= 1
    return end


def find_network(text: str) -> Iterator[Hit]:
    """URLs, domain names with a common top-level domain, IPv4/IPv6 and MAC addresses."""
    for m in _URL.finditer(text):
        yield Hit(m.start(), _trim_url(text, m.start(), m.end()), "network_info")
    for m in _DOMAIN.finditer(text):
        labels = m.group().split("/", 1)[0].split(".")
        well_formed = all(lab and not lab.startswith("-") and not lab.endswith("-") for lab in labels)
        if well_formed and any(c.isalpha() for c in labels[0]):
            yield Hit(m.start(), _trim_url(text, m.start(), m.end()), "network_info")
    for m in _IPV4.finditer(text):
        if _VERSION_CUE.search(before(text, m.start(), 12)):
            continue
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield Hit(m.start(), m.end(), "network_info")
    for m in _IPV6.finditer(text):
        if _is_ipv6(m.group()):
            yield Hit(m.start(), m.end(), "network_info")
    for m in _MAC.finditer(text):
        yield Hit(m.start(), m.end(), "network_info")


def _is_ipv6(candidate: str) -> bool:
    groups = [g for g in candidate.split(":") if g]
    if candidate.count(":") < 2 or len(groups) < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


# --- credit cards ------------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])")
_CARD_CUE = LazyPattern(
    r"\b(?:card|cc|ccn|credit|debit|visa|master ?card|amex|american express|discover|maestro|jcb|diners"
    r"|pan)\b"
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _continues(text: str, start: int, end: int) -> bool:
    """Whether a digit group is only part of a longer separated number (``1234 5678 …``)."""
    tail = text[end : end + 2]
    head = text[max(0, start - 2) : start]
    sep = " -"
    return (len(tail) == 2 and tail[0] in sep and tail[1].isdigit()) or (
        len(head) == 2 and head[1] in sep and head[0].isdigit()
    )


def find_cards(text: str) -> Iterator[Hit]:
    """Luhn-valid 12-19 digit numbers with an issuer prefix (2-6) or a card cue nearby."""
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if not luhn_ok(digits) or _continues(text, m.start(), m.end()) or len(set(digits)) == 1:
            continue
        issuer_like = digits[0] in "23456" and len(digits) >= 13
        if issuer_like or _CARD_CUE.search(before(text, m.start())):
            yield Hit(m.start(), m.end(), "credit_card_info")


# --- SSN ---------------------------------------------------------------------------------------------

_SSN_DASHED = re.compile(r"(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])")
# Spaces or dots, the same separator twice (``123 45 6789``, ``123.45.6789``); not inside a longer number.
_SSN_SPACED = re.compile(r"(?<![\w.-])(\d{3})([ .])(\d{2})\2(\d{4})(?![\w-]|[ .]\d)")
_SSN_PLAIN = re.compile(r"(?<![\w-])(\d{3})(\d{2})(\d{4})(?![\w-])")
_SSN_CUE = LazyPattern(
    r"\b(?:ssn|ss#|ss ?no|ss number|social security|social sec|soc\.? ?sec|ssa|itin|taxpayer|tax id"
    r"|tax identification|tin)"
)
_SSN_CUE_AFTER = LazyPattern(
    r"^[\s,)]{0,3}(?:is|was|-|=)?[ ]?(?:my|his|her|their|the)?[ ]?(?:ssn|social sec)"
)
_ITIN_CUE = LazyPattern(r"\b(?:itin|taxpayer|tax id|tax identification|tin)\b")


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """The SSA's structural rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def itin_ok(area: str, group: str, serial: str) -> bool:
    """IRS taxpayer numbers: area 9xx, group 50-65, 70-88, 90-92 or 94-99."""
    g = int(group)
    return (
        area[0] == "9" and (50 <= g <= 65 or 70 <= g <= 88 or 90 <= g <= 92 or g >= 94) and serial != "0000"
    )


def _ssn_valid(text: str, start: int, parts: tuple[str, str, str]) -> bool:
    """SSA rules, or the ITIN ranges when an ITIN / taxpayer cue is near."""
    return ssn_ok(*parts) or (itin_ok(*parts) and bool(_ITIN_CUE.search(before(text, start))))


def find_ssns(text: str) -> Iterator[Hit]:
    """SSNs: dashed or dotted unless labelled as another number; spaced or undashed after an SSN cue.

    A spaced 3-2-4 group without a cue is too often a house number or part of a phone number; a dotted one
    is declined next to a phone or version cue.
    """
    for m in _SSN_DASHED.finditer(text):
        if _ssn_valid(text, m.start(), (m[1], m[2], m[3])) and (
            _SSN_CUE.search(before(text, m.start())) or not id_cue_before(text, m.start())
        ):
            yield Hit(m.start(), m.end(), "ssn")
    for m in _SSN_SPACED.finditer(text):
        if not _ssn_valid(text, m.start(), (m[1], m[3], m[4])) or _continues(text, m.start(), m.end()):
            continue
        context = before(text, m.start())
        cued = _SSN_CUE.search(context) or _SSN_CUE_AFTER.search(after(text, m.end(), 32))
        other_number = (
            _PHONE_CUE.search(context[-32:])
            or _VERSION_CUE.search(context[-12:])
            or id_cue_before(text, m.start())
        )
        if cued or (m[2] == "." and not other_number):
            yield Hit(m.start(), m.end(), "ssn")
    for m in _SSN_PLAIN.finditer(text):
        cued = _SSN_CUE.search(before(text, m.start())) or _SSN_CUE_AFTER.search(after(text, m.end(), 32))
        if cued and _ssn_valid(text, m.start(), (m[1], m[2], m[3])):
            yield Hit(m.start(), m.end(), "ssn")


# --- bank accounts -----------------------------------------------------------------------------------

_IBAN_LENGTHS = dict(
    (code, int(n))
    for code, n in (
        item.split(":")
        for item in _split(
            "AD:24 AE:23 AL:28 AT:20 AZ:28 BA:20 BE:16 BG:22 BH:22 BR:29 BY:28 CH:21 CR:22 CY:28 "
            "CZ:24 DE:22 DK:18 DO:28 EE:20 EG:29 ES:24 FI:18 FO:18 FR:27 GB:22 GE:22 GI:23 GL:18 "
            "GR:27 GT:28 HR:21 HU:28 IE:22 IL:23 IQ:23 IS:26 IT:27 JO:30 KW:30 KZ:20 LB:28 LC:32 "
            "LI:21 LT:20 LU:20 LV:21 MC:27 MD:24 ME:22 MK:19 MR:27 MT:31 MU:30 NL:18 NO:15 PK:24 "
            "PL:28 PS:29 PT:25 QA:29 RO:24 RS:22 SA:24 SC:31 SE:24 SI:19 SK:24 SM:27 ST:25 SV:28 "
            "TL:23 TN:24 TR:26 UA:29 VA:22 VG:24 XK:20"
        )
    )
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){10,30}")
# Bank cues; the nearest one before a number decides how it is checked (routing numbers by the ABA
# checksum, sort codes and BSBs by their shape, account numbers by their length).
_ACCOUNT_CUE = LazyPattern(
    r"\b(?:(?P<routing>routing|aba|rtn|transit)|(?P<sort>sort code|sort|bsb)"
    r"|account|acct|acc|a/c|iban|swift|bic|bank details|bank no|konto|kontonummer|rekening|compte)\b"
)
# Words between the cue and the number that make it something else (``account balance: 1 250 000``).
_NOT_ACCOUNT = LazyPattern(
    r"\b(?:phone|call|tel|fax|mobile|order|invoice|ticket|case|ref|reference|balance|total|limit|fee|fees"
    r"|amount|opened|created|since|closed|charged|credit|credits|points|card|ssn|social|age|years?|days?"
    r"|months?)\b"
)
_ABBREVIATION_DOT = LazyPattern(r"\b(acct|acc|no|nr|num|a/c)\.")
# Digit groups split by single spaces or dashes (``4402 1188 23``, ``12-3456-7890123-00``), maybe after ``#``.
_ACCOUNT_NUMBER = re.compile(r"(?<![\w-])#?\d{2,20}(?:[ -]\d{2,12}){0,4}(?![\w-]|[ -]\d)")
_SORT_CODE = re.compile(r"\d\d([- ]?)\d\d\1\d\d|\d{3}-?\d{3}")
_DATE_SHAPE = re.compile(r"\d{4}-\d\d-\d\d|\d\d-\d\d-\d{4}")
_BIC = re.compile(r"(?<![A-Za-z0-9])[A-Z]{4}[A-Z]{2}[A-Z2-9][A-NP-Z0-9](?:[A-Z0-9]{3})?(?![A-Za-z0-9])")
_BIC_CUE = LazyPattern(r"\b(?:bic|swift)\b")


def aba_ok(digits: str) -> bool:
    """The ABA routing-number checksum: 3-7-1 weights over the nine digits sum to a multiple of 10."""
    if len(digits) != 9 or not digits.isdigit() or digits == "000000000":
        return False
    return sum(int(d) * w for d, w in zip(digits, (3, 7, 1) * 3, strict=True)) % 10 == 0


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: known country length and the mod-97 remainder of the rearranged digits is 1."""
    compact = compact.upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _iban_end(text: str, start: int, end: int) -> int | None:
    """The end of the valid IBAN starting at ``start`` within a greedy candidate, or ``None``."""
    length = _IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return None
    seen = 0
    for pos in range(start, end):
        if text[pos].isalnum():
            seen += 1
            if seen == length:
                stop = pos + 1
                if stop < len(text) and text[stop].isalnum():
                    return None
                compact = re.sub(r"[^A-Za-z0-9]", "", text[start:stop])
                return stop if iban_ok(compact) else None
    return None


def _is_bank_number(text: str, start: int, number: str) -> bool:
    """Whether ``number`` fits the nearest bank cue before it (within 24 characters, same sentence)."""
    context = _ABBREVIATION_DOT.sub(r"\1 ", before(text, start, 40))
    cues = list(_ACCOUNT_CUE.finditer(context))
    if not cues:
        return False
    cue = cues[-1]
    gap = context[cue.end() :]
    if len(gap) > 24 or "." in gap or "\n" in gap or _NOT_ACCOUNT.search(gap):
        return False
    digits = number.replace(" ", "").replace("-", "")
    if cue["routing"]:  # nine digits, written unbroken
        return aba_ok(digits) and len(digits) == len(number)
    if cue["sort"]:
        return bool(_SORT_CODE.fullmatch(number))
    return 6 <= len(digits) <= 20 and not _DATE_SHAPE.fullmatch(number)


def find_accounts(text: str) -> Iterator[Hit]:
    """IBANs (checksum-validated) anywhere; account, routing and sort-code numbers and BICs after a cue."""
    for m in _IBAN.finditer(text):
        stop = _iban_end(text, m.start(), m.end())
        if stop is not None:
            yield Hit(m.start(), stop, "account_info")
    for m in _ACCOUNT_NUMBER.finditer(text):
        if _is_bank_number(text, m.start(), m.group().lstrip("#")):
            yield Hit(m.start(), m.end(), "account_info")
    for m in _BIC.finditer(text):
        if _BIC_CUE.search(before(text, m.start(), 24)):
            yield Hit(m.start(), m.end(), "account_info")


# --- phone numbers -----------------------------------------------------------------------------------

_GROUP = r"(?:\(\d{1,5}\)[ ]?)?\d{1,12}"
_PHONE = re.compile(
    rf"(?<![\w+@/.-])(?:\+[ ]?|\b)?{_GROUP}(?:(?:[ .\-/]|[ ]?-[ ]?){_GROUP}){{0,6}}"
    r"(?:[ ]?(?:x|ext\.?|extension)[ ]?\d{1,6})?(?![\w@]|[.\-/]\d)"
)
_PHONE_CUE = LazyPattern(
    r"\b(?:phone|tel|telephone|mobile|mob|cell|cellphone|fax|call|calling|text|sms|whatsapp|dial|reach|"
    r"contact|number|office|direct|hotline|landline|ring|desk|helpline|answering|answer|message|messages|"
    r"registered|voicemail|pager|reachable|phoned|texted|called|ph|tél|telefon|telefono|teléfono|téléphone|"
    r"handy|mobil|móvil|movil|cel|celular|portable|natel|telefoonnummer|contact no)\b"
)
_PHONE_CUE_AFTER = LazyPattern(
    r"^[\s:,\\-]{0,3}(?:office|fax|mobile|mobil|cell|home|work|phone|tel|direct)\b"
)
_THOUSANDS = re.compile(r"\d{1,3}(?:[.,]\d{3})+")
_YEAR_RANGE = re.compile(r"(?:1[89]|20)\d\d ?[-/] ?(?:1[89]|20)\d\d")


@functools.cache
def _phonenumbers() -> ModuleType:
    """libphonenumber, imported when the first phone-like candidate is checked (its import alone costs
    more than the rest of the PII scorer's start-up, and most texts have no such candidate)."""
    import phonenumbers

    return phonenumbers


def _phone_valid(candidate: str) -> bool:
    """Valid by libphonenumber's metadata: as a US number, or as an international one (+xx / 00xx)."""
    phonenumbers = _phonenumbers()
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        number = phonenumbers.parse(candidate, "US")
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


def _phone_possible(candidate: str) -> bool:
    """Possible length for its country (looser: many real but unassigned ranges fail validation)."""
    phonenumbers = _phonenumbers()
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        number = phonenumbers.parse(candidate, "US")
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_possible_number(number))


# Regions tried for a number written in national format (trunk prefix 0, no country code).
_NATIONAL_REGIONS = tuple(_split("GB DE FR IT ES NL BE CH AT IE AU IN BR MX CN JP"))


def _phone_valid_national(candidate: str) -> bool:
    """Valid in one of the common regions above (only tried for candidates that passed the cheap checks)."""
    phonenumbers = _phonenumbers()
    for region in _NATIONAL_REGIONS:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            return False
        if phonenumbers.is_valid_number(number):
            return True
    return False


def _isbn_like(candidate: str) -> bool:
    """A hyphenated ISBN-10 or ISBN-13 with a valid check digit (``0-306-40615-2``, ``978-0-306-40615-7``)."""
    hyphens = candidate.count("-")
    chars = candidate.replace("-", "").upper()
    if hyphens != {10: 3, 13: 4}.get(len(chars)):
        return False
    if len(chars) == 10 and chars[:9].isdigit() and (chars[9].isdigit() or chars[9] == "X"):
        values = [int(c) for c in chars[:9]] + [10 if chars[9] == "X" else int(chars[9])]
        return sum((10 - i) * v for i, v in enumerate(values)) % 11 == 0
    if len(chars) == 13 and chars.isdigit() and chars.startswith(("978", "979")):
        return sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(chars)) % 10 == 0
    return False


def _phone_shaped(candidate: str) -> bool:
    """Digits split the way people write phone numbers (not one long run, not thousands separators)."""
    core = candidate.split("x")[0].split("ext")[0].strip()
    if _THOUSANDS.fullmatch(core) or _YEAR_RANGE.fullmatch(core):
        return False
    groups = re.findall(r"\d+", core)
    return len(groups) >= 2 or core.startswith("+") or core.startswith("(")


def find_phones(text: str) -> Iterator[Hit]:
    """Phone numbers: valid per libphonenumber, or phone-shaped and possible near a phone cue.

    A number labelled as another kind of number (``Invoice No. 2023-004812``) or shaped like an ISBN is
    skipped. A number in national format (``0161 496 0123``, 10+ digits) is validated against a few common
    regions; so is one long digit run next to a phone cue.
    """
    for m in _PHONE.finditer(text):
        candidate = m.group()
        digits = sum(ch.isdigit() for ch in candidate.split("x")[0])
        if not 7 <= digits <= 16 or id_cue_before(text, m.start()) or _isbn_like(candidate):
            continue
        shaped = _phone_shaped(candidate)
        cue = bool(_PHONE_CUE.search(before(text, m.start(), 32))) or bool(
            _PHONE_CUE_AFTER.search(after(text, m.end(), 16))
        )
        national = candidate.startswith(("0", "(0")) and not candidate.startswith("00")
        if (
            (cue and shaped)
            or ((shaped or cue) and _phone_valid(candidate))
            or (candidate.startswith(("+", "00")) and shaped and _phone_possible(candidate))
            or (digits >= 10 and (cue or (shaped and national)) and _phone_valid_national(candidate))
        ):
            yield Hit(m.start(), m.end(), "phone_number")


# --- dates of birth ----------------------------------------------------------------------------------

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_NUMERIC_DATE = re.compile(r"\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}(?![\w/]|[.-]\d)")
_TEXT_DATE = re.compile(
    rf"\b(?:\d{{1,2}}(?:st|nd|rd|th)?(?:[ ]of)?[ ,]{{1,2}})?{_MONTH}\.?"
    r"(?:[ ]{1,2}\d{1,2}(?:st|nd|rd|th)?)?"
    r",?[ ]{1,2}(?:\d{4}|'\d\d)\b",
    re.IGNORECASE,
)
_BIRTH_CUE = LazyPattern(
    r"(?<![a-z])(?:born|birth|dob|d\.o\.b|birthday|birthdate|bday|b-day|date of birth|geboren|geburtsdatum"
    r"|geb\.|nacimiento|naissance|nascita)(?![a-z])"
)


def find_dates(text: str) -> Iterator[Hit]:
    """Every date (label ``date``): used to keep dates out of phone matches and to find birth dates."""
    for m in _NUMERIC_DATE.finditer(text):
        start, parts = m.start(), re.split(r"[/.-]", m.group())
        if start and (text[start - 1].isalnum() or text[start - 1] in "/.-_"):
            continue
        if len(parts[0]) == 4 or len(parts[2]) in (2, 4):  # yyyy-mm-dd, dd/mm/yy, dd/mm/yyyy
            yield Hit(start, m.end(), "date")
    for m in _TEXT_DATE.finditer(text):
        yield Hit(m.start(), m.end(), "date")


def is_birth_date(text: str, hit: Hit) -> bool:
    """A date is a date of birth when a birth cue is close before it, or ``birthday`` right after."""
    return bool(_BIRTH_CUE.search(before(text, hit.start, 56))) or "birthday" in after(text, hit.end, 20)


# --- passwords and usernames -------------------------------------------------------------------------

_SECRET = re.compile(
    r"\b(?P<cue>password|passwd|pwd|passcode|pass code|passphrase|pin code|pin|user ?name|user ?id|"
    r"login|log-in|screen ?name|handle|gamertag|account name|nickname|"
    r"user|pass|pw|twitter|instagram|insta|tiktok|github|gitlab|telegram|discord|reddit|snapchat|skype)"
    r"(?P<sep>[ ]?(?:is|was|=|:|-)[ ]?|[ ]?:[ ]?|[ ]{1,2}(?:is[ ]|was[ ]|set to[ ]|to[ ])?)"
    r"[\"'`]?(?P<value>[^\s\"'`]{3,64})",
    re.IGNORECASE,
)
# ``log in as jsmith``: the sentence form of a username.
_LOGIN_AS = re.compile(
    r"\b(?:log(?:ged)?[ -]?in|sign(?:ed)?[ -]?in)[ ]as[ ][\"'`]?(?P<value>@?[^\s\"'`,;:]{2,64})",
    re.IGNORECASE,
)
_PASSWORD_CUES = frozenset(
    {"password", "passwd", "pwd", "passcode", "pass code", "passphrase", "pin code", "pin", "pass", "pw"}
)
# Cues that are also ordinary words (``User: hello``, ``Pass: boarding``, ``Twitter: …``): they count only
# in ``key: value`` form, and the value must look like a handle or a secret, not like a word.
_WEAK_CUES = frozenset(
    {
        "user",
        "pass",
        "pw",
        "twitter",
        "instagram",
        "insta",
        "tiktok",
        "github",
        "gitlab",
        "telegram",
        "discord",
    }
    | {"reddit", "snapchat", "skype"}
)
# Values that say the secret is withheld (``Password: ******``, ``Username: [redacted]``).
_PLACEHOLDERS = frozenset(
    _split("redacted hidden none null nil n/a na masked removed withheld tbd unknown empty secret private")
)


def _secret_value_ok(value: str, explicit: bool) -> bool:
    """Reject plain English words after a cue (``password reset``) unless the cue ends with ``:``/``=``."""
    from ._pii_lexicon import is_word

    core = value.rstrip(".,;:!?)")
    if len(core) < 3 or _is_placeholder(core):
        return False
    if explicit:
        return True
    has_signal = any(ch.isdigit() for ch in core) or any(not ch.isalnum() for ch in core)
    return has_signal or not is_word(core)


def _is_placeholder(value: str) -> bool:
    """A masked or withheld value: no letter or digit, only ``x``/``*``, or a word such as ``redacted``."""
    core = value.strip("[](){}<>*_-").lower()
    return not any(ch.isalnum() for ch in value) or set(core) <= {"x", "*"} or core in _PLACEHOLDERS


_HANDLE_SYMBOLS = frozenset("_.@-!#$%&*+=?~^")
_FIELD_END = re.compile(r"[ \t]*(?:$|[\r\n/|,;])")


def _weak_value_ok(text: str, m: re.Match[str]) -> bool:
    """After a weak cue, the value must be a whole field and look like a handle or secret, not a word.

    ``User: Beatrix Veres`` (a chat speaker) and ``pass: boarding group 4`` fail; ``user: pmorales / pass:
    Qwerty!234`` passes. A value with a digit, ``_``, ``.``, ``@`` or an ASCII symbol (not digits only)
    counts, and so does a lower-case token that is neither a word nor a known name.
    """
    from ._pii_lexicon import is_word, known_names

    value = m.group("value").rstrip(".,;)")
    if not _FIELD_END.match(text, m.start("value") + len(value)) or _is_placeholder(value):
        return False
    if value.isdigit() or len(value) < 3 or (not value[0].isalnum() and value[0] not in "@_"):
        return False  # digits only (a house number), or quoted speech (``User: “Hello``)
    if any(ch.isdigit() or ch in _HANDLE_SYMBOLS for ch in value):
        return True
    return value.islower() and not is_word(value) and value not in known_names()


def find_secrets(text: str) -> Iterator[Hit]:
    """Passwords and usernames given after a cue (``password: …``, ``username is …``, ``log in as …``)."""
    for m in _SECRET.finditer(text):
        cue = m.group("cue").lower()
        explicit = any(ch in m.group("sep") for ch in ":=")
        value = m.group("value")
        if cue in _WEAK_CUES:
            if not explicit or not _weak_value_ok(text, m):
                continue
        elif not _secret_value_ok(value, explicit):
            continue
        if cue == "pin" and not value.isdigit():
            continue
        label = "password" if cue in _PASSWORD_CUES else "username"
        yield Hit(m.start("value"), _value_end(text, m, label), label)
    for m in _LOGIN_AS.finditer(text):
        if _secret_value_ok(m.group("value"), explicit=False):
            yield Hit(m.start("value"), _value_end(text, m, "username"), "username")


def _value_end(text: str, m: re.Match[str], label: str) -> int:
    """Drop sentence punctuation after a value (a password may end in ``!`` or ``?``, a username not)."""
    trailing = ".,;)" if label == "password" else ".,;!?)"
    end = m.end("value")
    while end > m.start("value") and text[end - 1] in trailing:
        end -= 1
    return end

"""The built-in PII scorer: per-category cases, redaction, adversarial inputs, dev-set quality, Presidio."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType

import pytest

from stageguard.metrics import PII_CATEGORIES
from stageguard.payload import Payload
from stageguard.scorers.base import Span
from stageguard.scorers.pii import PIIScorer, detect_pii, redact
from stageguard.scorers.registry import load_builtin_scorer

REPO = Path(__file__).resolve().parents[2]


def found(text: str) -> dict[str, list[str]]:
    """Category -> the substrings detected for it."""
    out: dict[str, list[str]] = {}
    for span in detect_pii(text):
        out.setdefault(span.label, []).append(text[span.start : span.end])
    return out


POSITIVE = [
    # (category, text, expected substring)
    ("credit_card_info", "Please charge card 4111 1111 1111 1111 today", "4111 1111 1111 1111"),
    ("credit_card_info", "amex 3782-822463-10005 expires soon", "3782-822463-10005"),
    ("credit_card_info", "What is the limit for card 584528792610?", "584528792610"),
    ("ssn", "His social security number is 596-88-1225", "596-88-1225"),
    ("ssn", "SSN: 596881225", "596881225"),
    ("email", "write to jane.doe+news@mail.example.co.uk.", "jane.doe+news@mail.example.co.uk"),
    ("phone_number", "call me at (415) 555-0142 tomorrow", "(415) 555-0142"),
    ("phone_number", "my number: +44 20 7946 0958", "+44 20 7946 0958"),
    ("phone_number", "Mobile: 0341 8387176", "0341 8387176"),
    ("phone_number", "fax +41 (0)85 806 98 67", "+41 (0)85 806 98 67"),
    ("network_info", "blocked from 74.34.59.240 again", "74.34.59.240"),
    ("network_info", "server at 2001:db8::8a2e:370:7334 is down", "2001:db8::8a2e:370:7334"),
    ("network_info", "device 00:1A:2b:3C:4d:5E joined", "00:1A:2b:3C:4d:5E"),
    ("network_info", "see https://www.example.org/path?q=1.", "https://www.example.org/path?q=1"),
    ("network_info", "my site is example.com", "example.com"),
    ("account_info", "My IBAN is GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
    ("account_info", "my iban is de89370400440532013000", "de89370400440532013000"),
    ("account_info", "account number: 12345678901", "12345678901"),
    ("account_info", "routing number 021000021", "021000021"),
    ("date_of_birth", "I was born on 4/14/1962 in Ohio", "4/14/1962"),
    ("date_of_birth", "DOB: March 3, 1990", "March 3, 1990"),
    ("date_of_birth", "date of birth 1988-07-21", "1988-07-21"),
    ("password", "my password is hunter2!", "hunter2!"),
    ("password", "pwd: Tr0ub4dor&3", "Tr0ub4dor&3"),
    ("username", "username: jdoe_88", "jdoe_88"),
    ("username", "my user id is j.smith42", "j.smith42"),
    ("name", "Hi, my name is Maria Gonzalez.", "Maria Gonzalez"),
    ("name", "Please ask Dr. Okonkwo to call back", "Okonkwo"),
    ("name", "Follow up with Matheus Araujo next week.", "Matheus Araujo"),
    ("name", "Thanks, I spoke with Jennifer yesterday.", "Jennifer"),
    ("name", "Lisa: where are you?\nTom: at home", "Lisa"),
    ("address", "Send it to 1600 Pennsylvania Avenue NW, Washington, DC 20500", "1600 Pennsylvania Avenue"),
    ("address", "She lives at 12 Oak St, Springfield, IL 62704.", "12 Oak St"),
    ("address", "Our office: Via Roma 12, Milano", "Via Roma 12"),
    ("address", "Lieferung an Strickstrasse 61, Zürich", "Strickstrasse 61"),
    ("address", "PO Box 4411, Anchorage", "PO Box 4411"),
    ("address", "Unit 7194 Box 5854\nDPO AE 73472", "Unit 7194 Box 5854"),
]


@pytest.mark.parametrize(("category", "text", "expected"), POSITIVE)
def test_positive(category: str, text: str, expected: str) -> None:
    hits = found(text)
    assert category in hits, hits
    assert any(expected in h or h in expected for h in hits[category]), hits


NEGATIVE = [
    # (category that must NOT be found, text)
    ("credit_card_info", "card 4111 1111 1111 1112 (bad checksum)"),
    ("credit_card_info", "order 1234567812345678 shipped"),
    ("ssn", "SSN 000-12-3456"),
    ("ssn", "SSN 666-12-3456"),
    ("ssn", "SSN 912-12-3456"),
    ("ssn", "SSN 123-00-4567"),
    ("ssn", "SSN 123-45-0000"),
    ("ssn", "the code is 123456789"),  # undashed without a cue
    ("date_of_birth", "The meeting is on 4/14/2024 at noon."),
    ("date_of_birth", "Invoice dated March 3, 1990 is attached."),
    ("phone_number", "call 123-456"),
    ("phone_number", "Population grew to 1,234,567 in 2020."),
    ("phone_number", "The 1990-2000 decade"),
    ("phone_number", "meet on 2019-10-11 03:54:51"),
    ("network_info", "version 1.2.3.4 released"),
    ("network_info", "open main.py and config.yaml"),
    ("network_info", "address 999.1.1.1 is not an IP"),
    ("account_info", "GB82 WEST 1234 5698 7654 33"),  # IBAN with a wrong check digit
    ("password", "I forgot my password again, please reset it"),
    ("username", "How do I handle errors in Python?"),
    ("name", "We moved here from Canada last year."),
    ("name", "I work for Citigroup as an analyst."),
    ("name", "The meeting is on Monday in January."),
    ("name", "Python is a great language and Docker is useful."),
    ("name", "The Princess Royal arrived this morning."),
    ("address", "I walked 5 minutes down the road."),
    ("address", "Chapter 12 covers the basics."),
]


@pytest.mark.parametrize(("category", "text"), NEGATIVE)
def test_negative(category: str, text: str) -> None:
    assert category not in found(text), found(text)


def test_no_pii_in_plain_text() -> None:
    assert detect_pii("The weather is nice today, let's go for a walk after lunch.") == []


def test_scorer_value_spans_and_explanation() -> None:
    text = "Email jane@example.com or call (415) 555-0142."
    result = PIIScorer("input").score_text(text)
    assert result.value == ["email", "phone_number"]
    assert [text[s.start : s.end] for s in result.spans] == ["jane@example.com", "(415) 555-0142"]
    assert result.explanation and "email" in result.explanation
    assert set(result.value) <= set(PII_CATEGORIES)
    empty = PIIScorer().score_text("")
    assert empty.value == [] and empty.spans == []


def test_output_field_spans_are_tagged() -> None:
    scorer = load_builtin_scorer("output_pii")
    assert isinstance(scorer, PIIScorer) and scorer.field == "output"
    result = scorer.score(Payload(input="hi", output="SSN 596-88-1225"))
    assert result.value == ["ssn"]
    assert all(s.field == "output" for s in result.spans)


def test_redact_replaces_and_merges_overlaps() -> None:
    text = "SSN 596-88-1225, mail jane@example.com"
    assert redact(text, detect_pii(text)) == "SSN <SSN>, mail <EMAIL>"
    spans = [Span(start=0, end=5, label="name"), Span(start=3, end=9, label="ssn")]
    assert redact("abcdefghij", spans) == "<NAME>j"
    assert redact("abc", [Span(start=1, end=2, label="ssn")], placeholder="[{label}]") == "a[SSN]c"
    assert redact("abc", []) == "abc"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\x00\x01\x02",
        "😀" * 50,
        "\ud800 Jane Doe \udfff 596-88-1225",
        "日本語 العربية Ελληνικά",
        "@",
        ".",
    ],
)
def test_any_input_is_safe(text: str) -> None:
    spans = detect_pii(text)
    assert all(0 <= s.start < s.end <= len(text) for s in spans)
    redact(text, spans)


ADVERSARIAL = {
    "1 MB of a": "a" * 1_000_000,
    "100k digits": "7" * 100_000,
    "@. runs": "@." * 100_000,
    ".@a runs": ".@a" * 60_000,
    "spaced digits": "1 " * 100_000,
    "dashed digits": "1-" * 100_000,
    "colons": "a:" * 100_000,
    "capitalised words": "Aaa " * 50_000,
    "hyphen words": "Ab-" * 60_000,
    "www": "www." * 50_000,
    "parentheses": "(1) " * 50_000,
    "months": "March 3, " * 20_000,
    "newlines": "\n" * 200_000,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_inputs_finish_fast(name: str) -> None:
    text = ADVERSARIAL[name]
    start = time.perf_counter()
    detect_pii(text)
    # Linear-time patterns take well under a second here; catastrophic backtracking would take hours.
    assert time.perf_counter() - start < 10.0


def test_time_grows_linearly() -> None:
    """Four times the text takes about four times as long (not sixteen)."""
    unit = "Call Mr. John Smith at (415) 555-0142 or 12 Oak St; ip 10.0.0.1, aa@bb.cc, 4111111111111111. "
    detect_pii(unit)

    def timed(n: int) -> float:
        text = unit * n
        start = time.perf_counter()
        detect_pii(text)
        return time.perf_counter() - start

    small = min(timed(250) for _ in range(3))
    large = min(timed(1000) for _ in range(3))
    assert large < small * 8 + 0.05


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_pii_benchmark", REPO / "benchmarks" / "_pii.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_set_quality() -> None:
    bench = _benchmark()
    rows = bench.load_dev_rows()
    if not rows:
        pytest.skip(f"PII development files not found under {bench.DEV_DIR}")
    report = bench.evaluate(rows, lambda text: {s.label for s in detect_pii(text)})
    assert report["any_pii"]["f1"] >= 0.93, report["any_pii"]
    assert report["category_precision_overall"] >= 0.9, report
    for category in bench.VALIDATED:
        stats = report["per_category"][category]
        assert stats["recall"] >= 0.9, (category, stats)


def test_presidio_backend() -> None:
    pytest.importorskip("presidio_analyzer", reason="presidio-analyzer not installed (stageguard[presidio])")
    from stageguard.scorers.presidio import PresidioPIIScorer

    scorer = PresidioPIIScorer("output")
    text = "Mail john@example.com, card 4111 1111 1111 1111, ip 74.34.59.240"
    result = scorer.score_text(text)
    assert {"email", "credit_card_info", "network_info"} <= set(result.value or [])
    assert all(s.field == "output" for s in result.spans)
    email = [s for s in result.spans if s.label == "email"]
    assert text[email[0].start : email[0].end] == "john@example.com"
    assert scorer.score_text("").value == []


def test_presidio_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from stageguard.scorers import presidio

    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("presidio_analyzer"):
            raise ImportError("No module named 'presidio_analyzer'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"stageguard\[presidio\]"):
        presidio.PresidioPIIScorer()

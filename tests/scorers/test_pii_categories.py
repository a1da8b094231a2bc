"""Category accuracy of the built-in PII scorer: bank details, SSN formats, phones, credentials, forms."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from stageguard.scorers._pii_patterns import aba_ok, iban_ok, ssn_ok
from stageguard.scorers.pii import detect_pii

REPO = Path(__file__).resolve().parents[2]
FORMS = REPO / "tests" / "fixtures" / "pii_forms.jsonl"


def spans_of(text: str) -> list[tuple[str, str]]:
    """(category, exact substring) of every finding."""
    return [(s.label, text[s.start : s.end]) for s in detect_pii(text)]


FOUND = [
    # (text, category, exact span text)
    # bank accounts and routing numbers in prose and in key: value forms
    ("account number 12345678", "account_info", "12345678"),
    ("Acct: 4402 1188 23", "account_info", "4402 1188 23"),
    ("acct # 99018274 (checking)", "account_info", "99018274"),
    ("Acct. No.: 5566778899", "account_info", "5566778899"),
    ("Savings account #: 7741-0092-3381", "account_info", "7741-0092-3381"),
    ("sort code 12-34-56", "account_info", "12-34-56"),
    ("BSB 062-000, account 1234 5678", "account_info", "062-000"),
    ("BSB 062-000, account 1234 5678", "account_info", "1234 5678"),
    ("my IBAN is DE89 3704 0044 0532 0130 00", "account_info", "DE89 3704 0044 0532 0130 00"),
    ("wire it to account 000123456789 at Chase, routing 021000021", "account_info", "000123456789"),
    ("wire it to account 000123456789 at Chase, routing 021000021", "account_info", "021000021"),
    ("Routing No.: 011000015", "account_info", "011000015"),
    ("customer account ID 99887766", "account_info", "99887766"),
    ("ABA 026009593", "account_info", "026009593"),
    # SSNs in unusual formats
    ("SSN 401 38 2265", "ssn", "401 38 2265"),
    ("his SSN is 536.22.1947", "ssn", "536.22.1947"),
    ("SSN: 536221947", "ssn", "536221947"),
    ("taxpayer 233 40 1187 filed late", "ssn", "233 40 1187"),
    ("ss number 478-12-3356", "ssn", "478-12-3356"),
    ("536221947 is my social security number", "ssn", "536221947"),
    ("ITIN: 912-70-1234", "ssn", "912-70-1234"),
    ("reference copy: 536.22.1947", "ssn", "536.22.1947"),  # dotted 3-2-4 needs no cue
    # international and national phone formats
    ("call +44 20 7946 0958", "phone_number", "+44 20 7946 0958"),
    ("Tel.: +49 (0)30 123456", "phone_number", "+49 (0)30 123456"),
    ("ring 0044 20 7946 0958 after six", "phone_number", "0044 20 7946 0958"),
    ("Mobile: 07700 900123", "phone_number", "07700 900123"),
    ("+91 98765 43210", "phone_number", "+91 98765 43210"),
    ("Ph: (02) 9374 4000", "phone_number", "(02) 9374 4000"),
    ("Handy: 0176 98765432", "phone_number", "0176 98765432"),
    ("Phone number: 9876543210", "phone_number", "9876543210"),
    ("you can also try 0161 496 0123", "phone_number", "0161 496 0123"),
    ("Phone: 021-4006034", "phone_number", "021-4006034"),  # ISBN-10 check digit, not ISBN hyphenation
    # usernames and passwords
    ("username: jdoe88", "username", "jdoe88"),
    ("login=alice", "username", "alice"),
    ("pwd: hunter2!", "password", "hunter2!"),
    ("my password is Tr0ub4dor&3", "password", "Tr0ub4dor&3"),
    ("log in as jsmith with password Blue42fish", "username", "jsmith"),
    ("log in as jsmith with password Blue42fish", "password", "Blue42fish"),
    ("user: pmorales / pass: Qwerty!234", "username", "pmorales"),
    ("user: pmorales / pass: Qwerty!234", "password", "Qwerty!234"),
    ("Twitter: @maria_codes", "username", "@maria_codes"),
    # dates of birth in column headers and other languages
    ("last_name;first_name;birth_date\nNowak;Jan;1979-02-14", "date_of_birth", "1979-02-14"),
    ("Geburtsdatum: 14.05.1983", "date_of_birth", "14.05.1983"),
]


@pytest.mark.parametrize(("text", "category", "expected"), FOUND)
def test_found_with_category_and_span(text: str, category: str, expected: str) -> None:
    assert (category, expected) in spans_of(text), spans_of(text)


NOT_FLAGGED = [
    # (text, category that must not be reported)
    ("Order #: 100234567, total $1,249.99", "account_info"),
    ("Account balance: 1 250 000 credits", "account_info"),
    ("account opened 2019-05-12", "account_info"),
    ("routing number 123456789", "account_info"),  # fails the ABA checksum
    ("GB82 WEST 1234 5698 7654 33", "account_info"),  # IBAN with a wrong check digit
    ("Part no. 445-22-1098, bin B7", "ssn"),
    ("Order 123 45 6789 was split into two parcels", "ssn"),
    ("SSN 000 12 3456", "ssn"),
    ("SSN 666.45.1234", "ssn"),
    ("SSN: 912345678", "ssn"),  # 9xx area without an ITIN cue
    ("ITIN 912-12-3456", "ssn"),  # 9xx but not an ITIN group
    ("the code is 123456789", "ssn"),
    ("Invoice No. 2023-004812 | Amount due: 4,500.00 EUR", "phone_number"),
    ("Case number 2024-0915-7781", "phone_number"),
    ("Serial number 0044 2079 4609", "phone_number"),
    ("ISBN 978-0-306-40615-7", "phone_number"),
    ("Version 10.0.19045.3803", "phone_number"),
    ("Total: 1,249,999.00 (2024)", "phone_number"),
    ("Password: ******", "password"),
    ("Username: [redacted]", "username"),
    ("User: Hello, can you help me?", "username"),
    ("Pass: boarding group 4", "password"),
    ("I need to log in as soon as possible", "username"),
    # chat speaker labels, house numbers, licence numbers, short numbers in addresses
    ("Bot: What's the name on the account? User: Beatrix Veres", "username"),
    ("user: dana mitchell", "username"),
    ("User: \u201cHello, what is up?\u201d", "username"),
    ("User: 61076 32 Kent Street Apt. 681", "username"),
    ("Mrs. Karen Thorkildsen Suite 680 36 4022 Oakridge Lane", "ssn"),
    ("My driver's license number is 281211981", "phone_number"),
    ("Billing address: Tintin Forsberg\n    03262 2437 Main St Suite 442", "phone_number"),
    ("Version 123.45.6789", "ssn"),
]


@pytest.mark.parametrize(("text", "category"), NOT_FLAGGED)
def test_look_alikes_not_flagged(text: str, category: str) -> None:
    assert category not in {label for label, _ in spans_of(text)}, spans_of(text)


def test_validators() -> None:
    assert aba_ok("021000021") and aba_ok("011000015") and not aba_ok("123456789")
    assert not aba_ok("000000000") and not aba_ok("02100002")
    assert ssn_ok("536", "22", "1947")
    assert not any(ssn_ok(*p) for p in [("000", "12", "3456"), ("666", "12", "3456"), ("912", "12", "3456")])
    assert not ssn_ok("123", "00", "4567") and not ssn_ok("123", "45", "0000")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert not iban_ok("XX89370400440532013000")


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_pii_categories", REPO / "benchmarks" / "pii_categories.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forms_fixture_category_floor() -> None:
    """Regression floor on the hand-written form-like set (written by us, so not a test-set figure)."""
    rows = [json.loads(line) for line in FORMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 150
    scores = _benchmark().category_scores(rows, lambda text: {s.label for s in detect_pii(text)})
    # Measured 0.975 / 0.983 when this test was written.
    assert scores["micro_f1"] >= 0.96, scores
    assert scores["any_pii_f1"] >= 0.97, scores


def test_dev_sets_category_floor() -> None:
    bench = _benchmark()
    for name in bench.DEV_FILES:
        rows = bench.load_rows(bench.DEV_DIR / name)
        if not rows:
            pytest.skip(f"PII development file {name} not found under {bench.DEV_DIR}")
        scores = bench.category_scores(rows, lambda text: {s.label for s in detect_pii(text)})
        # Measured 0.932 (synth) and 0.942 (generated); names and addresses dominate these sets.
        assert scores["micro_f1"] >= 0.925, (name, scores)
        assert scores["any_pii_f1"] >= 0.93, (name, scores)

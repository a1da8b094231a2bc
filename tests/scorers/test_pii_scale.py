"""Issue 12: ``input_pii`` stays linear and bounded on 1 MB adversarial inputs, and says when it windowed."""

from __future__ import annotations

import time

import pytest

from stageguard.payload import Payload
from stageguard.scorers.pii import SCAN_BUDGET, PIIScorer, detect_pii, scan_pii, scan_windows

from . import _robustness

BENCH = _robustness.load()


def _cpu_seconds(text: str) -> float:
    scorer = PIIScorer("input")
    payload = Payload(input=text)
    start = time.process_time()
    scorer.score(payload)
    return time.process_time() - start


@pytest.mark.parametrize("shape", BENCH.SHAPES)
def test_one_megabyte_is_linear(shape: str) -> None:
    """10x the text costs well under 25x the time (windowing makes it about 2x)."""
    detect_pii("warm up: Mr John Smith, 12 Oak St, 415-555-0142")
    small = _cpu_seconds(BENCH.shape(shape, 100_000))
    large = _cpu_seconds(BENCH.shape(shape, 1_000_000))
    assert large < 25 * small + 0.05


def test_truncation_note_when_windowed() -> None:
    text = BENCH.shape("repeated_sentence", 1_000_000)
    result = PIIScorer("input").score(Payload(input=text))
    assert result.explanation is not None
    assert "[truncated: scanned" in result.explanation
    assert "of 1,000,000 characters" in result.explanation


def test_no_note_within_budget() -> None:
    text = "Call Mr. John Smith at (415) 555-0142. " * 100
    result = PIIScorer("input").score(Payload(input=text))
    assert result.explanation is not None and "truncated" not in result.explanation
    assert scan_pii(text)[1] is None


def test_windows_cover_head_tail_and_middle_and_map_offsets() -> None:
    filler = "lorem ipsum dolor sit amet " * 40_000  # about 1 MB without PII
    head = "Contact jane.doe@example.com today. "
    tail = " SSN 596-88-1225 on file."
    text = head + filler + tail
    windows = scan_windows(text)
    assert windows[0][0] == 0 and windows[-1][1] == len(text)
    assert sum(end - start for start, end in windows) <= SCAN_BUDGET
    spans, note = scan_pii(text)
    assert note is not None
    found = {(s.label, text[s.start : s.end]) for s in spans}
    assert ("email", "jane.doe@example.com") in found
    assert ("ssn", "596-88-1225") in found


def test_window_edges_fall_on_whitespace() -> None:
    text = "12345 " * 200_000
    for start, end in scan_windows(text)[1:-1]:
        assert text[start - 1].isspace() and text[end].isspace()

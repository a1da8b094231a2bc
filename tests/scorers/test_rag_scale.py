"""Issue 12: ``context_adherence`` is linear and bounded on 1 MB adversarial inputs, and says when it cut."""

from __future__ import annotations

import time

import pytest

from stageguard.payload import Payload
from stageguard.scorers.rag import ADHERENCE_LIMITS, ContextAdherenceScorer

from . import _robustness

BENCH = _robustness.load()
SCORER = ContextAdherenceScorer()


def _cpu_seconds(where: str, text: str) -> float:
    payload = Payload.model_validate(BENCH.payload_for("context_adherence", where, text))
    start = time.process_time()
    SCORER.score(payload)
    return time.process_time() - start


@pytest.mark.parametrize("where", ["output", "context"])
@pytest.mark.parametrize("shape", BENCH.SHAPES)
def test_one_megabyte_is_linear(shape: str, where: str) -> None:
    """10x the text costs well under 25x the time (the field limits make it bounded)."""
    _cpu_seconds(where, "warm up.")
    small = _cpu_seconds(where, BENCH.shape(shape, 100_000))
    large = _cpu_seconds(where, BENCH.shape(shape, 1_000_000))
    assert large < 25 * small + 0.05


@pytest.mark.parametrize("where", ["input", "output", "context"])
def test_truncation_note_names_the_field(where: str) -> None:
    text = BENCH.shape("prose", 1_000_000)
    result = SCORER.score(Payload.model_validate(BENCH.payload_for("context_adherence", where, text)))
    assert result.explanation is not None
    assert "[truncated: read the first" in result.explanation
    assert f"too long: {where} (1,000,000 characters)" in result.explanation


def test_no_note_within_limits() -> None:
    payload = Payload.model_validate(
        BENCH.payload_for("context_adherence", "output", "The booking was cancelled.")
    )
    result = SCORER.score(payload)
    assert result.explanation is not None and "truncated" not in result.explanation


def test_limits_can_be_raised() -> None:
    text = "The booking for Paris was cancelled. " * 3_000  # over the default output limit
    payload = Payload.model_validate(BENCH.payload_for("context_adherence", "output", text))
    assert len(text) > ADHERENCE_LIMITS["output"]
    assert "truncated" in (SCORER.score(payload).explanation or "")
    wide = ContextAdherenceScorer(limits={"output": 200_000})
    assert "truncated" not in (wide.score(payload).explanation or "")


def test_unsupported_name_against_a_run_on_context_is_linear() -> None:
    """Found by fuzzing (``benchmarks/robustness.py``): an answer naming someone the context lacks, against
    a context with no sentence end and many names after newlines, took 15-22 s at 360-600 KB (the rival
    search re-read the whole text for every name)."""
    question = 'notnotnotnot . never@example.comat@example.com {"'
    answer = (
        '{"error": null, "status": "error"}John\r\ncancel@example.com ) 440736581381 Traceback (most recent'
    )

    def cpu(size: int) -> float:
        payload = Payload(input=question, output=answer, context=[BENCH.shape("run_on_names", size)])
        start = time.process_time()
        assert SCORER.score(payload).value is not None
        return time.process_time() - start

    cpu(1_000)
    small, large = cpu(20_000), cpu(200_000)
    assert large < 25 * small + 0.05

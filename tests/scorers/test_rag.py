"""Offline RAG scorers: context adherence (claim by claim) and completeness."""

from __future__ import annotations

import functools
import itertools
import json
import os
import statistics
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from stageguard.payload import Payload
from stageguard.scorers import rag
from stageguard.scorers._text import clear_text_cache
from stageguard.scorers.rag import (
    ADHERENCE_OPERATING_POINT,
    ADHERENCE_RULE,
    CONTRADICTED,
    MISSING_NAME,
    MISSING_NUMBER,
    MISSING_WORD,
    CompletenessScorer,
    ContextAdherenceScorer,
    calibrate_adherence,
    combine_claims,
    index_context,
    is_abstention,
    name_spans,
    split_claims,
)
from stageguard.scorers.registry import load_builtin_scorer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = Path(os.environ.get("STAGEGUARD_DATA", "/work/shared/data"))
GROUNDEDNESS_DEV = DATA / "train" / "groundedness_halueval_qa_dev.jsonl"

EIFFEL = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
    "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. "
    "It was constructed as the centerpiece of the 1889 World's Fair. The tower is 330 metres tall and was "
    "the tallest man-made structure in the world until the Chrysler Building in New York City was finished "
    "in 1930. It is not open to cars."
]
QUESTION = "When was the Eiffel Tower built and how tall is it?"

adherence = ContextAdherenceScorer()
completeness = CompletenessScorer()


def _adh(output: str, context: list[str] = EIFFEL, question: str | None = QUESTION) -> float:
    value = adherence.score(Payload(input=question, output=output, context=context)).value
    assert isinstance(value, float)
    return value


# ------------------------------------------------------------------------------ context adherence


def test_supported_answers_score_high() -> None:
    assert _adh("It was built from 1887 to 1889 and is 330 metres tall.") > 0.9
    assert _adh("Gustave Eiffel's company built it between 1887 and 1889 for the 1889 World's Fair.") > 0.8


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("It was built from 1887 to 1889 and is 300 metres tall.", "number 300"),
        ("It was designed by Alexandre Dumas and built from 1887 to 1889.", "name 'Alexandre Dumas'"),
        ("The tower was built in 1889. It was never the tallest man-made structure.", "negation"),
        ("It was built in 1889 and is painted bright red every spring by local volunteers.", "unsupported"),
    ],
)
def test_unsupported_claims_score_low_and_say_why(output: str, reason: str) -> None:
    result = adherence.score(Payload(input=QUESTION, output=output, context=EIFFEL))
    assert isinstance(result.value, float) and result.value < 0.5
    assert result.explanation is not None and reason in result.explanation


def test_a_negation_dropped_from_the_context_is_caught() -> None:
    context = ["Metformin lowers blood sugar. It should not be taken by people with severe kidney disease."]
    question = "Who should avoid metformin?"
    assert _adh("People with severe kidney disease should not take metformin.", context, question) > 0.8
    result = adherence.score(
        Payload(input=question, output="People with severe kidney disease can take it.", context=context)
    )
    assert isinstance(result.value, float) and result.value < 0.5
    assert "negation dropped" in (result.explanation or "")


def test_one_unsupported_claim_pulls_the_score_down() -> None:
    good = "It was built from 1887 to 1889. It is 330 metres tall. It stands in Paris."
    bad = good + " It attracts seven million visitors a year."
    assert _adh(good) > 0.8  # "stands" is not in the context: a paraphrase costs a little
    assert _adh(bad) < 0.3


def test_claims_stitched_from_unrelated_sentences_are_penalised() -> None:
    assert _adh("The Chrysler Building was built from 1887 to 1889 in Paris.") < 0.5


def test_short_correct_answer_beats_long_fabricated_one() -> None:
    short = _adh("1887 to 1889")
    long = _adh(
        "The Eiffel Tower was built from 1887 to 1889 by Gustave Eiffel's company, and it was later moved "
        "to Lyon in 1921 where it still attracts many tourists from Germany and Italy."
    )
    assert short > 0.9 > 0.5 > long


def test_restating_the_question_is_not_an_unsupported_claim() -> None:
    context = ["Dark Horse is the fifth studio album by George Harrison, released in December 1974."]
    question = "Which album did the former Beatle George Harrison release in December 1974?"
    restating = "The former Beatle George Harrison released Dark Horse in December 1974."
    assert _adh(restating, context, question) > 0.8
    assert _adh(restating, context, question=None) < _adh(restating, context, question)


def test_answer_near_the_question_in_the_context_wins_ties() -> None:
    context = [
        "Huaihua is a prefecture-level city in the west of Hunan province. Qitaihe is a prefecture-level "
        "city in Heilongjiang province, in the northeast of China."
    ]
    question = "Which is located in Hunan province, Huaihua or Qitaihe?"
    assert _adh("Huaihua", context, question) > _adh(
        "Qitaihe is located in Hunan province.", context, question
    )


def test_edge_cases() -> None:
    no_context = adherence.score(Payload(output="an answer"))
    assert no_context.value == 0.0 and "no context" in (no_context.explanation or "")
    from_input = adherence.score(Payload(input="q", output="an answer"))  # the whole input is the context
    assert "context: the whole input" in (from_input.explanation or "")
    assert adherence.score(Payload(input="q", context=EIFFEL)).value == 1.0
    lead_in = "Key facts:\n1. It was built in 1889.\n2. It is 330 metres tall.\n- It is in Paris"
    assert _adh(lead_in) > 0.9
    assert split_claims(lead_in) == ["It was built in 1889.", "It is 330 metres tall.", "It is in Paris"]


# The scale: the value reads as the probability that the output is supported. Galileo's guidance is a
# rule "context_adherence < 0.1" for answers that do not adhere to the context.

METFORMIN = [
    "Metformin is a medicine for type 2 diabetes. It lowers blood sugar by reducing the amount of glucose "
    "the liver releases and by helping the body respond better to insulin. Common side effects include "
    "nausea, diarrhoea and stomach pain. It should not be taken by people with severe kidney disease."
]
METFORMIN_Q = "How does metformin work and what are its side effects?"


@pytest.mark.parametrize(
    ("output", "context", "question"),
    [
        ("It was built from 1887 to 1889 and is 300 metres tall.", EIFFEL, QUESTION),  # wrong number
        ("It was completed in March 1889.", EIFFEL, QUESTION),  # a date the context lacks
        ("It was built from 1887 to 1889 by Alexandre Dumas.", EIFFEL, QUESTION),  # invented name
        ("The tower was never the tallest structure.", EIFFEL, QUESTION),  # negation added
        ("The tower is open to cars.", EIFFEL, QUESTION),  # negation dropped
        ("It is a treatment for type 1 diabetes.", METFORMIN, METFORMIN_Q),
        ("Metformin is safe for people with severe kidney disease.", METFORMIN, METFORMIN_Q),
        # one bad claim among good ones sets the score, however long the answer
        (
            "It was built from 1887 to 1889. It is 330 metres tall. It was the centerpiece of the 1889 "
            "World's Fair. It is named after Gustave Eiffel. It was repainted in 1968.",
            EIFFEL,
            QUESTION,
        ),
        ("I'm not sure, but it was built in 1850.", EIFFEL, QUESTION),  # a hedge does not excuse a claim
    ],
)
def test_an_unsupported_key_claim_scores_below_0_1(output: str, context: list[str], question: str) -> None:
    assert _adh(output, context, question) < 0.1


@pytest.mark.parametrize(
    ("output", "context", "question"),
    [
        ("It was built from 1887 to 1889 and is 330 metres tall.", EIFFEL, QUESTION),
        (
            "The Eiffel Tower was constructed between 1887 and 1889 and stands 330 metres tall.",
            EIFFEL,
            QUESTION,
        ),
        ("Gustave Eiffel's company built it between 1887 and 1889; it is 330 m high.", EIFFEL, QUESTION),
        (
            "Construction ran from 1887 to 1889, and the tower reaches a height of 330 metres.",
            EIFFEL,
            QUESTION,
        ),
        (
            "It lowers blood sugar. Its side effects include nausea, diarrhoea and stomach pain.",
            METFORMIN,
            METFORMIN_Q,
        ),
        (
            "Metformin lowers blood sugar by reducing how much glucose the liver releases and by improving "
            "the body's response to insulin.",
            METFORMIN,
            METFORMIN_Q,
        ),
        ("No, people with severe kidney disease should not take it.", METFORMIN, "Is it safe for everyone?"),
        ("It is one of the medicines for type 2 diabetes.", METFORMIN, METFORMIN_Q),  # "one" is not a count
    ],
)
def test_supported_answers_score_above_0_5_even_when_paraphrased(
    output: str, context: list[str], question: str
) -> None:
    assert _adh(output, context, question) > 0.5


def test_one_invented_word_pulls_the_score_down_to_unsure() -> None:
    assert _adh("Side effects include nausea, diarrhoea and hair loss.", METFORMIN, METFORMIN_Q) < 0.5
    assert _adh("It works by making the pancreas release more insulin.", METFORMIN, METFORMIN_Q) < 0.7
    # each further invented word lowers it more: a long invented addition ends below 0.1
    assert _adh("It was built in 1889 and is painted bright red every spring by local volunteers.") < 0.1


@pytest.mark.parametrize(
    "output",
    [
        "I don't know.",
        "I'm not sure.",
        "The context does not say when the tower was built.",
        "The provided documents don't mention how tall it is.",
        "There is no information about this in the provided context.",
        "Not enough information to answer.",
        "This cannot be determined from the context.",
    ],
)
def test_an_abstention_is_not_a_hallucination(output: str) -> None:
    result = adherence.score(Payload(input=QUESTION, output=output, context=EIFFEL))
    assert isinstance(result.value, float) and result.value >= 0.9
    assert "declines to answer" in (result.explanation or "")


@pytest.mark.parametrize(
    "claim",
    [
        "The cause is unknown.",
        "It was not built in 1900.",
        "Dental care is not covered.",
        "There is no evidence that it causes cancer.",
        "It should not be taken by people with kidney disease.",
    ],
)
def test_facts_stated_negatively_are_not_abstentions(claim: str) -> None:
    assert not is_abstention(claim)


def test_names_and_numbers_in_an_abstention_are_still_checked() -> None:
    assert _adh("I don't know what Alexandre Dumas thought of it.") < 0.1


def test_a_name_in_another_form_is_not_an_invented_name() -> None:
    context = ["Seoul Train is a 2004 documentary film about North Korean defectors fleeing through China."]
    assert _adh("North Korea", context, "Where do the defectors in Seoul Train come from?") > 0.5
    assert _adh("South Korea", context, "Where do the defectors in Seoul Train come from?") < 0.1


def test_combining_claims_lets_the_worst_dominate() -> None:
    assert combine_claims([]) == 1.0
    assert combine_claims([0.9, 0.9, 0.9]) == pytest.approx(0.9)
    one_bad = combine_claims([0.05] + [1.0] * 10)
    assert 0.05 <= one_bad <= 0.05 * 11**0.1 + 1e-9 < 0.1
    assert combine_claims([0.05, 0.05] + [1.0] * 9) < one_bad  # a second bad claim lowers it more


def test_context_index_is_split_per_document() -> None:
    ctx = index_context(("First doc. Second sentence.", "Other doc."))
    assert ctx.sentences == ("First doc.", "Second sentence.", "Other doc.")
    assert ctx.sentence_doc == (0, 0, 1)


@functools.cache
def _dev_scores() -> list[tuple[int, int, float]]:
    """(pair_id, label, score) for every row of the HaluEval dev set."""
    scores = []
    with GROUNDEDNESS_DEV.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            payload = Payload(input=row["question"], output=row["answer"], context=[row["context"]])
            value = adherence.score(payload).value
            assert isinstance(value, float)
            scores.append((row["pair_id"], row["label"], value))
    return scores


@pytest.mark.skipif(not GROUNDEDNESS_DEV.exists(), reason="groundedness dev set not available")
def test_dev_set_pairwise_accuracy_meets_target() -> None:
    """Right answer above the hallucinated one for >= 90% of the HaluEval pairs (ties count half)."""
    by_pair: dict[int, dict[int, float]] = defaultdict(dict)
    for pair, label, value in _dev_scores():
        by_pair[pair][label] = value
    pairs = [(p[1], p[0]) for p in by_pair.values() if 0 in p and 1 in p]
    wins = sum(1.0 if r > w else 0.5 if r == w else 0.0 for r, w in pairs)
    assert len(pairs) > 400
    assert wins / len(pairs) >= 0.90


@pytest.mark.skipif(not GROUNDEDNESS_DEV.exists(), reason="groundedness dev set not available")
def test_dev_set_thresholds_mean_what_the_scale_says() -> None:
    """`< 0.1` flags clearly unsupported answers and almost never a right one; `< 0.5` flags most
    hallucinations. Numbers on the whole file, partly in-sample (0.47 / 0.66 of hallucinations, no right
    answer): the bounds leave room so that the test guards the scale, not the last decimal."""
    scores = _dev_scores()
    right = [v for _, label, v in scores if label == 1]
    wrong = [v for _, label, v in scores if label == 0]

    def share(values: list[float], threshold: float) -> float:
        return sum(v < threshold for v in values) / len(values)

    assert share(right, 0.1) <= 0.01 and share(right, 0.5) <= 0.02
    assert share(wrong, 0.1) >= 0.35 and share(wrong, 0.5) >= 0.55


def _context_2kb() -> list[str]:
    text = " ".join(EIFFEL * 5)
    return [text[:2048]]


@pytest.mark.parametrize("scorer", [adherence, completeness], ids=["adherence", "completeness"])
def test_latency_for_2kb_of_context(scorer: ContextAdherenceScorer | CompletenessScorer) -> None:
    payload = Payload(
        input=QUESTION, output="It was built from 1887 to 1889 and is 330 m tall.", context=_context_2kb()
    )
    timings = []
    for i in range(40):
        index_context.cache_clear()
        clear_text_cache()
        fresh = payload.model_copy(update={"output": f"{payload.output} Note {i}."})
        start = time.perf_counter()
        scorer.score(fresh)
        timings.append(time.perf_counter() - start)
    # the target is p50 <= 2 ms (measured by benchmarks/rag_agent.py); this only guards against a big
    # regression, with room for shared, busy test machines
    assert statistics.median(timings) < 0.02


# ----------------------------------------------------------------------------------- completeness


def _comp(output: str, context: list[str] = EIFFEL, question: str | None = QUESTION) -> float:
    value = completeness.score(Payload(input=question, output=output, context=context)).value
    assert isinstance(value, float)
    return value


def test_completeness_orders_full_partial_and_empty_answers() -> None:
    full = (
        "Gustave Eiffel's company designed and built it from 1887 to 1889 as the centerpiece of the 1889 "
        "World's Fair; it is 330 metres tall and was the tallest man-made structure until 1930."
    )
    partial = "It was built from 1887 to 1889."
    assert _comp(full) > _comp(partial) > _comp("It is a famous landmark.")
    assert _comp(full) > 0.6  # the sentence on where the tower stands shares words with the question


def test_completeness_ignores_context_the_question_is_not_about() -> None:
    context = [
        "Refunds for annual plans are paid within 5 business days. "
        "Annual plans can be refunded within 30 days.",
        "Our office dog is called Biscuit and likes long walks in the park on Sundays.",
    ]
    answer = "Annual plans can be refunded within 30 days, and refunds are paid within 5 business days."
    assert _comp(answer, context, "What is the refund policy for annual plans?") > 0.9


def test_completeness_edge_cases() -> None:
    assert completeness.score(Payload(output="a")).value == 0.0
    contentless = completeness.score(Payload(input="q", output="a"))  # the whole input, with nothing to cover
    assert "context: the whole input" in (contentless.explanation or "")
    assert completeness.score(Payload(input="q", context=EIFFEL)).value == 0.0
    result = completeness.score(Payload(input=QUESTION, output="It is tall.", context=EIFFEL))
    assert result.explanation is not None and result.explanation.startswith("misses")


def _completeness_fixture() -> list[dict[str, Any]]:
    with (FIXTURES / "completeness.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_completeness_fixture_accuracy() -> None:
    rows = _completeness_fixture()
    assert len(rows) >= 20
    by_group: dict[str, dict[str, float]] = defaultdict(dict)
    correct_bins = 0
    for row in rows:
        value = completeness.score(Payload.model_validate(row["payload"])).value
        assert isinstance(value, float) and 0.0 <= value <= 1.0
        by_group[row["group"]][row["label"]] = value
        predicted = "complete" if value >= 0.7 else "incomplete" if value < 0.3 else "partial"
        correct_bins += predicted == row["label"]
    ordered = sum(
        (g["complete"] > g["partial"]) + (g["partial"] > g["incomplete"]) for g in by_group.values()
    )
    assert ordered / (2 * len(by_group)) >= 0.85
    assert correct_bins / len(rows) >= 0.8


# ----------------------------------------------------------------------------------------- wiring


def test_registry_builds_the_rag_scorers() -> None:
    assert isinstance(load_builtin_scorer("context_adherence"), ContextAdherenceScorer)
    assert isinstance(load_builtin_scorer("completeness"), CompletenessScorer)
    assert adherence.mode == "inline" and completeness.mode == "inline"


# ------------------------------------------------------------------------------------ linear time


def _cold_time(scorer: ContextAdherenceScorer | CompletenessScorer, payload: Payload) -> float:
    """Best of three cold runs (context index and token caches cleared), in seconds."""
    best = float("inf")
    for _ in range(3):
        index_context.cache_clear()
        clear_text_cache()
        start = time.perf_counter()
        scorer.score(payload)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize(
    ("unit", "output"),
    [
        ("He met Smith in 1990. ", "Smith met Jones in 1990."),  # every sentence names Smith after "He"
        ("Mr Smith said no. ", "Mr Smith said no to Jones in 1990."),
        ("Mr. Smith said no. ", "No, Mr. Smith said yes in 1991."),
        ("Paris hosted it in 1889. ", "It was hosted in Lyon in 1890."),  # a contradicted place and year
        # a name joined from two of the context's names, and a date whose parts are there apart
        ("Ruth Adeyemi met Owen Hart on 3 May 1990. ", "Ruth Hart met them on 13 May 1990."),
    ],
)
@pytest.mark.parametrize("scorer", [adherence, completeness], ids=["adherence", "completeness"])
def test_time_grows_linearly_with_repeated_sentences(
    unit: str, output: str, scorer: ContextAdherenceScorer | CompletenessScorer
) -> None:
    """Eight times the context may cost about eight times as much, not 64: the ratio bound is generous
    (noise on a shared machine) but far below what a quadratic path gives."""

    def payload(n: int) -> Payload:
        return Payload(input="What did Mr Smith say in 1990?", output=output, context=[unit * n])

    small, large = _cold_time(scorer, payload(400)), _cold_time(scorer, payload(3200))
    assert large < 24 * max(small, 1e-3)


# --------------------------------------------------------------------- contradictions (typed entities)

DELORME = ["Marguerite Delorme was born on 14 May 1952 in Lyon and died in 2011 in Geneva."]


@pytest.mark.parametrize(
    ("context", "question", "output"),
    [
        (DELORME, "When was Marguerite Delorme born?", "1954"),
        (DELORME, "Where was Marguerite Delorme born?", "Paris"),
        (DELORME, "Where was Marguerite Delorme born?", "Marseille, France"),
        (DELORME, "When was Marguerite Delorme born?", "On 14 June 1952."),  # a month the context lacks
        (
            ["The treaty was signed on March 3, 2001, by 13 states."],  # "13" is there, not as a day
            "When was the treaty signed?",
            "March 13, 2001",
        ),
        (["The festival is held in the second week of July."], "When is it held?", "the second week of June"),
        (["The novel was translated into 31 languages."], "Into how many languages?", "13 languages"),
        (["Lake Verin reaches a depth of 71 metres."], "How deep is Lake Verin?", "It is 17 metres deep."),
        (
            ["The club's manager is Ruth Adeyemi; its captain is Owen Hart."],
            "Who is the manager?",
            "Ruth Hart",
        ),
        (
            ["The question was put to Philip Terzian, the Literary Editor, and to Derek Sherinian."],
            "Who is the Literary Editor, Philip Terzian or Ray Sherinian?",
            "Ray Sherinian",  # a name taken from the question is no evidence for the answer
        ),
    ],
)
def test_a_short_contradicting_answer_is_flagged(context: list[str], question: str, output: str) -> None:
    assert _adh(output, context, question) < 0.1


@pytest.mark.parametrize(
    ("context", "question", "output"),
    [
        (DELORME, "When was Marguerite Delorme born?", "1952"),
        (DELORME, "When was Marguerite Delorme born?", "14 May 1952"),
        (DELORME, "When was Marguerite Delorme born?", "May 14th, 1952"),
        (DELORME, "Where was Marguerite Delorme born?", "Lyon"),
        (DELORME, "Where was Marguerite Delorme born?", "in lyon"),
        (["The treaty was signed on March 3, 2001."], "When was the treaty signed?", "3 March 2001"),
        (["The library holds 1,250,000 volumes."], "How many volumes?", "1250000 volumes"),
        (["The library holds 1250000 volumes."], "How many volumes?", "1,250,000 volumes"),
        (["The orchestra has 96 musicians."], "How many musicians does it have?", "ninety-six musicians"),
        (["The theory was proposed by Dr. Miriam Okafor."], "Who proposed the theory?", "Miriam Okafor"),
        (["The theory was proposed by Miriam Okafor."], "Who proposed the theory?", "Dr. Miriam Okafor"),
        (["The song was written by José Martínez."], "Who wrote the song?", "Jose Martinez"),
        (["The order was founded in Krakow."], "Where was it founded?", "Kraków"),
        (["Its main campus is in São Paulo."], "Where is the main campus?", "Sao Paulo"),
        (["The mill made woollen blankets."], "What did the mill make?", "Woollen blanket"),
        (
            ["The Silver Orchard was directed by Tomas Lindqvist and produced by Anna Berg for Nordfilm."],
            "Who produced The Silver Orchard?",
            "Anna Berg",
        ),
        (
            ["The author grew up in Cork and later moved to Galway, where she wrote her first novel."],
            "Where did the author write her first novel?",
            "In Galway.",
        ),
    ],
)
def test_a_correct_answer_of_the_same_length_is_not_flagged(
    context: list[str], question: str, output: str
) -> None:
    assert _adh(output, context, question) > 0.5


def test_a_place_qualified_by_its_country_is_not_a_contradiction() -> None:
    assert _adh("Lyon, France", DELORME, "Where was Marguerite Delorme born?") > 0.3


@pytest.mark.parametrize(
    "output",
    ["I don't know.", "The context doesn't say.", "The context does not mention where she was born."],
)
def test_abstentions_still_score_high_against_a_context_with_the_answer(output: str) -> None:
    assert _adh(output, DELORME, "Where was Marguerite Delorme born?") >= 0.9


def test_a_contradiction_says_what_the_context_has() -> None:
    result = adherence.score(
        Payload(input="When was Marguerite Delorme born?", output="1954", context=DELORME)
    )
    assert "1954" in (result.explanation or "") and "1952" in (result.explanation or "")


def _contradiction_fixture() -> list[dict[str, Any]]:
    with (FIXTURES / "groundedness_contradictions.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_contradiction_fixture_pairwise_and_rule() -> None:
    """Our hand-written pairs (grounded vs contradicting answer of similar length): the grounded answer
    ranks higher, ``lt 0.1`` catches the contradictions and spares the grounded answers."""
    rows = _contradiction_fixture()
    assert len(rows) >= 60
    wins = caught = flagged = 0.0
    for row in rows:
        good = _adh(row["grounded"], [row["context"]], row["question"])
        bad = _adh(row["contradicting"], [row["context"]], row["question"])
        wins += 1.0 if good > bad else 0.5 if good == bad else 0.0
        caught += bad < 0.1
        flagged += good < 0.1
    assert wins / len(rows) >= 0.9
    assert caught / len(rows) >= 0.8
    assert flagged / len(rows) <= 0.05


# ------------------------------------------------------------------- the scale: calibration, lt 0.1


def _paraphrase_false_flags() -> float:
    with (FIXTURES / "groundedness_paraphrases.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert len(rows) >= 75 and all(r["label"] == 1 for r in rows)
    return sum(_adh(r["answer"], [r["context"]], r["question"]) < ADHERENCE_RULE for r in rows) / len(rows)


def test_paraphrase_fixture_false_flag_ceiling() -> None:
    """Correct answers in assistant style (paraphrased, longer, synonyms), written before any scoring:
    ``lt 0.1`` flags 7/80 today (11/80 before the negation/name-span fixes and semantic support). A
    regression guard, not the target (<= 3%, see the xfail below)."""
    assert _paraphrase_false_flags() <= 0.1


@pytest.mark.xfail(
    strict=True, reason="lexical scorer: paraphrases and synonyms rank low (docs/rag_agent.md)"
)
def test_paraphrase_fixture_false_flag_target() -> None:
    assert _paraphrase_false_flags() <= 0.03


@pytest.mark.skipif(not GROUNDEDNESS_DEV.exists(), reason="groundedness dev set not available")
def test_report_half_recall_floor_at_the_rule() -> None:
    """HaluEval report half (crc32(pair_id) % 2 == 1, never tuned on): ``lt 0.1`` catches 0.441 of the
    hallucinated answers and no right one. Floor below today's figure; the 0.75 target is not met."""
    report = [(label, v) for pair, label, v in _dev_scores() if zlib.crc32(str(pair).encode()) % 2 == 1]
    wrong = [v for label, v in report if label == 0]
    right = [v for label, v in report if label == 1]
    assert len(wrong) > 200 and len(right) > 200
    assert sum(v < ADHERENCE_RULE for v in wrong) / len(wrong) >= 0.40
    assert sum(v < ADHERENCE_RULE for v in right) / len(right) <= 0.01


@pytest.mark.parametrize("point", [0.02, 0.1, 0.5, 0.925])
def test_calibration_is_monotone_and_anchored(point: float) -> None:
    grid = [i / 1000 for i in range(1001)]
    mapped = [calibrate_adherence(x, point) for x in grid]
    assert all(a <= b for a, b in itertools.pairwise(mapped))
    assert mapped[0] == 0.0 and mapped[-1] == pytest.approx(1.0)
    assert calibrate_adherence(point, point) == pytest.approx(ADHERENCE_RULE)
    assert calibrate_adherence(-0.5, point) == 0.0 and calibrate_adherence(1.5, point) == pytest.approx(1.0)


def test_the_default_calibration_keeps_contradictions_and_inventions_below_the_rule() -> None:
    assert 0.02 < ADHERENCE_OPERATING_POINT < 1.0
    for raw in (CONTRADICTED, MISSING_NAME, MISSING_NUMBER):
        assert calibrate_adherence(raw) < ADHERENCE_RULE
    assert calibrate_adherence(ADHERENCE_RULE, ADHERENCE_RULE) == pytest.approx(ADHERENCE_RULE)  # identity


def test_the_raw_value_stays_in_the_explanation() -> None:
    raw = ContextAdherenceScorer(operating_point=ADHERENCE_RULE)  # identity: the raw scale
    shifted = ContextAdherenceScorer(operating_point=0.7)
    payload = Payload(input=QUESTION, output="It is very tall and elegant.", context=EIFFEL)
    low, high = raw.score(payload), shifted.score(payload)
    assert isinstance(low.value, float) and isinstance(high.value, float)
    assert high.value == pytest.approx(calibrate_adherence(low.value, 0.7), abs=1e-3)
    assert f"(raw {low.value:.2f})" in (low.explanation or "") and f"(raw {low.value:.2f})" in (
        high.explanation or ""
    )
    with pytest.raises(ValueError, match="operating_point"):
        ContextAdherenceScorer(operating_point=1.0)


@pytest.mark.parametrize("point", [ADHERENCE_OPERATING_POINT, 0.7, 0.925])
@pytest.mark.parametrize(
    "output",
    ["I don't know.", "The context does not say.", "There is no information about this in the context."],
)
def test_abstentions_score_high_on_any_calibration(point: float, output: str) -> None:
    value = (
        ContextAdherenceScorer(operating_point=point)
        .score(Payload(input=QUESTION, output=output, context=EIFFEL))
        .value
    )
    assert isinstance(value, float) and value >= 0.9


# ------------------------------------------------------------- known bugs: negation scope, name spans

CLINIC = [
    "Dr. Samuel Osei is a family physician at the Riverside Clinic. He sees patients by appointment only "
    "and does not accept walk-in patients."
]


@pytest.mark.parametrize(
    "question", ["Does Dr. Osei accept walk-ins?", "Can I see Dr. Osei without booking?", None]
)
def test_a_negation_in_a_later_sentence_than_the_name_is_found(question: str | None) -> None:
    """The negation sits in the sentence after the one naming Dr. Osei: it must be looked for where the
    claim's negated words are, not only in the sentence holding the name."""
    assert _adh("Dr. Osei does not accept walk-in patients.", CLINIC, question) > 0.9
    assert _adh("He does not accept walk-in patients.", CLINIC, question) > 0.9
    # a negation the context does not have is still caught
    assert _adh("Dr. Osei does not see patients by appointment.", CLINIC, question) < 0.1


def test_lower_case_words_between_acronyms_and_possessive_years_do_not_make_names() -> None:
    assert name_spans("The quota resets at midnight UTC the API then accepts calls again.") == ["UTC", "API"]
    assert name_spans("Miriam Okafor's 2009 paper proposed it.") == ["Miriam Okafor's"]
    assert name_spans("Catherine the Great ruled Russia.") == ["Catherine the Great", "Russia"]
    assert name_spans("Apollo 11 landed in 1969.") == ["Apollo 11"]
    context = ["The quota resets every day at midnight UTC. After this, the API accepts calls again."]
    output = "It resets at midnight UTC the API then accepts calls again."
    assert _adh(output, context, "When does the quota reset?") > 0.5
    context = ["In 2009 Miriam Okafor published the paper that proposed the theory."]
    assert _adh("Miriam Okafor's 2009 paper proposed it.", context, "Who proposed the theory?") > 0.5


def test_earth_is_not_a_missing_name() -> None:
    context = ["Lake Tanganyika is the second deepest lake in the world, reaching 1,470 metres."]
    output = "Lake Tanganyika is the second deepest lake on Earth."
    assert _adh(output, context, "How deep is Lake Tanganyika?") > 0.5


# ------------------------------------------------------------- semantic support for ordinary words

COMMITTEE = ["The committee purchased an enormous automobile in France for the physician in 2019."]
COMMITTEE_Q = "What did the committee buy?"


def test_a_synonym_paraphrase_is_partly_supported() -> None:
    """Four words the context lacks ("bought", "huge", "car", "doctor"): a lexical scorer puts the answer
    below 0.1 (0.6 ** 4 ≈ 0.13, times the rest); their meaning is in the context, so it stays above."""
    value = _adh("The panel bought a huge car in France for the doctor in 2019.", COMMITTEE, COMMITTEE_Q)
    assert value > 0.1
    saved = rag.SEMANTIC_LOW, rag.SEMANTIC_HIGH
    try:
        rag.SEMANTIC_LOW, rag.SEMANTIC_HIGH = 2.0, 3.0  # no semantic credit: the lexical score
        lexical = _adh(
            "The panel bought a huge car in France for the doctor in 2019.", COMMITTEE, COMMITTEE_Q
        )
    finally:
        rag.SEMANTIC_LOW, rag.SEMANTIC_HIGH = saved
    assert lexical < 0.1 < value


@pytest.mark.parametrize(
    "output",
    [
        "The panel bought a huge car in Germany for the doctor in 2019.",  # a place close in meaning
        "The panel bought a huge car in France for the doctor in 2017.",  # a year close in meaning
        "The panel bought three huge cars in France for the doctor in 2019.",  # a count the context lacks
        "The panel bought a huge car in France for Dr. Lindqvist in 2019.",  # an invented name
        "The panel did not buy a car in France for the doctor in 2019.",  # a negation the context lacks
    ],
)
def test_semantic_support_never_rescues_a_wrong_name_number_or_negation(output: str) -> None:
    assert _adh(output, COMMITTEE, COMMITTEE_Q) < 0.1


def test_units_get_no_semantic_credit() -> None:
    context = ["The bridge is 330 metres long."]
    assert _adh("The bridge is 330 feet long.", context, "How long is the bridge?") <= MISSING_WORD + 1e-9


def test_semantic_candidates_are_capped() -> None:
    words = " ".join(f"word{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(400))
    ctx = index_context((f"The committee purchased {words}.",))
    assert len(ctx.words_of(0)) == rag.SEMANTIC_SENTENCE_WORDS
    question = rag.QuestionIndex.of(COMMITTEE_Q)
    assert len(rag._semantic_support(["bought"], ctx, question, 0)) == 1


@pytest.mark.parametrize(
    "unit",
    [
        "The committee purchased an enormous automobile for the physician. ",
        # no full stop: the whole context is one sentence
        "The committee purchased an enormous automobile for the physician and the nurse in Lyon ",
    ],
)
def test_semantic_support_time_grows_linearly(unit: str) -> None:
    def payload(n: int) -> Payload:
        return Payload(
            input=COMMITTEE_Q, output="The panel bought a huge car for the doctor.", context=[unit * n]
        )

    small, large = _cold_time(adherence, payload(400)), _cold_time(adherence, payload(3200))
    assert large < 24 * max(small, 1e-3)


def test_one_megabyte_of_context_with_semantic_support() -> None:
    unit = "Physicians advise patients to avoid alcohol while taking the medicine. The clinic opens at 8 am. "
    payload = Payload(
        input="What should patients avoid?",
        output="Doctors tell patients to avoid alcohol while taking the drug.",
        context=[(unit * (1_000_000 // len(unit) + 1))[:1_000_000]],
    )
    # ~0.4-0.5 s on the development machine (mostly splitting and tokenising the context); the bound
    # leaves room for shared, busy test machines
    assert _cold_time(adherence, payload) < 3.0

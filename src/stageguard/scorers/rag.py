"""Offline RAG metrics: ``context_adherence`` and ``completeness``.

Both are lexical: they compare content words (lightly stemmed), numbers, names and negations of the
output with the retrieved context. They are fast and transparent, and they catch the common failures
(invented names, wrong numbers and dates, flipped negations, added details), but they do not understand
paraphrase or reasoning; see ``docs/rag_agent.md`` for the limits and for switching to an LLM judge.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

from ..payload import Payload
from . import _text
from .base import Scorer, ScoreResult

# Words that paraphrases add freely: they weigh about a third of a normal word.
GENERIC_WORDS: frozenset[str] = frozenset(
    _text.stem(w)
    for w in _text.word_set("""
    known called named name located based famous popular include including includes feature featured features
    several various many new old large small big main major best better good great important well-known
    different similar certain specific type kind sort part number lot total also actually really
    find found see seen use used using work worked works time times year years people person thing things
    mention mentioned state stated say said describe described refer refers referred consider considered
    follow following general particular notable primary specify specified
    """)
)

NUMBER_WEIGHT = 3.0
ENTITY_WEIGHT = 2.0
WORD_WEIGHT = 1.0
GENERIC_WEIGHT = 0.35
RESTATEMENT_CREDIT = 0.5  # a word found only in the question: neither evidence nor invention
SOFT_MIN_SHARPNESS = 10.0  # soft-min over claims: ~min, but two bad claims score below one
NEIGHBOUR_CREDIT = 0.5  # evidence in the next or previous sentence (pronouns, bridging sentences)
NAME_NEIGHBOUR_CREDIT = 0.75  # a name's facts in the adjacent sentence ("It was built in ...") mostly count
COHESION_WEIGHT = 0.8
MISSING_WORD_DISCOUNT = 0.5  # an absent ordinary word may be a paraphrase: it costs half a present one
MAX_FORGIVEN = 2.0  # ... but only for about two words: a longer unsupported addition is an addition


@dataclass(frozen=True)
class ContextIndex:
    """The retrieved context, tokenised once."""

    sentences: tuple[str, ...]
    sentence_doc: tuple[int, ...]
    sentence_sequences: tuple[tuple[str, ...], ...]
    sentence_tokens: tuple[frozenset[str], ...]
    sentence_negated: tuple[bool, ...]
    tokens: frozenset[str]
    phrase: str


@lru_cache(maxsize=128)
def index_context(context: tuple[str, ...]) -> ContextIndex:
    """Sentences, their token sets and the phrase key of the whole context (cached: contexts repeat)."""
    split = [(d, s) for d, doc in enumerate(context) for s in _text.split_sentences(doc)]
    sentences = tuple(s for _, s in split)
    sequences = tuple(tuple(_text.content_tokens(s)) for s in sentences)
    sentence_tokens = tuple(frozenset(seq) for seq in sequences)
    return ContextIndex(
        sentences=sentences,
        sentence_doc=tuple(d for d, _ in split),
        sentence_sequences=sequences,
        sentence_tokens=sentence_tokens,
        sentence_negated=tuple(_text.has_negation(s) for s in sentences),
        tokens=frozenset().union(*sentence_tokens) if sentence_tokens else frozenset(),
        phrase=" ".join(_text.phrase_key(doc) for doc in context),
    )


@dataclass(frozen=True)
class QuestionIndex:
    """The user's question: words an answer may restate without evidence."""

    tokens: frozenset[str]
    phrase: str

    @classmethod
    def of(cls, question: str | None) -> QuestionIndex:
        question = question or ""
        return cls(frozenset(_text.content_tokens(question)), _text.phrase_key(question))


@dataclass
class ClaimCheck:
    """The verdict on one claim (sentence or clause) of the output."""

    text: str
    score: float
    problems: list[str] = field(default_factory=list)
    novel: bool = True  # says something beyond the question
    best_sentence: int | None = None


def _token_weights(claim: str) -> dict[str, float]:
    """Weight of each content token: numbers and names matter most, generic paraphrase words least."""
    entity_tokens = {t for span in _text.entity_spans(claim) for t in _text.content_tokens(span)}
    weights: dict[str, float] = {}
    for token in _text.content_tokens(claim):
        if _text.is_number(token):
            weights[token] = NUMBER_WEIGHT
        elif token in entity_tokens:
            weights[token] = ENTITY_WEIGHT
        elif token in GENERIC_WORDS:
            weights[token] = GENERIC_WEIGHT
        else:
            weights[token] = WORD_WEIGHT
    return weights


def _neighbours(ctx: ContextIndex, i: int) -> list[int]:
    """The sentences just before and after ``i`` in the same document."""
    return [
        j
        for j in (i - 1, i + 1)
        if 0 <= j < len(ctx.sentences) and ctx.sentence_doc[j] == ctx.sentence_doc[i]
    ]


def _window_share(weights: dict[str, float], ctx: ContextIndex, i: int) -> float:
    """Weighted share of ``weights`` found around sentence ``i``: the sentence itself, neighbours at half."""
    here = ctx.sentence_tokens[i]
    near: frozenset[str] = frozenset()
    for j in _neighbours(ctx, i):
        near = near | ctx.sentence_tokens[j]
    total = sum(weights.values())
    if not total:
        return 0.0
    found = sum(w if t in here else NEIGHBOUR_CREDIT * w if t in near else 0.0 for t, w in weights.items())
    return found / total


def _best_window(weights: dict[str, float], ctx: ContextIndex, question: frozenset[str]) -> int | None:
    """The context sentence holding most of the claim (the question breaks ties)."""
    best, best_key = None, 0.0
    for i, sent_tokens in enumerate(ctx.sentence_tokens):
        if not sent_tokens & weights.keys():
            continue
        key = _window_share(weights, ctx, i) + 0.1 * len(question & sent_tokens) / (len(question) or 1)
        if key > best_key:
            best, best_key = i, key
    return best


def _neighbourhood(tokens: set[str], ctx: ContextIndex) -> dict[str, float]:
    """Credit per token near a name: 1 in the sentences naming it, ``NAME_NEIGHBOUR_CREDIT`` next to them."""
    hits = [i for i, s in enumerate(ctx.sentence_tokens) if tokens <= s]
    hits = hits or [i for i, s in enumerate(ctx.sentence_tokens) if tokens & s]
    credit: dict[str, float] = {}
    for i in hits:
        for j in _neighbours(ctx, i):
            for t in ctx.sentence_tokens[j]:
                credit.setdefault(t, NAME_NEIGHBOUR_CREDIT)
    for i in hits:
        credit.update(dict.fromkeys(ctx.sentence_tokens[i], 1.0))
    return credit


def cohesion(claim: str, key: dict[str, float], ctx: ContextIndex) -> float:
    """How well the claim's names stay with its other names and numbers in the context (1 = together).

    For each name of the claim that the context contains, the share of the claim's other names and
    numbers found where the context mentions that name (same or adjacent sentence); the mean over names.
    "Qitaihe is in Hunan" scores 0 when the context puts Hunan with another city. Claims without a name
    (pronoun subjects) are not checked: their subject is whatever the context is about.
    """
    if len(key) < 2:
        return 1.0
    shares = []
    for span in _text.entity_spans(claim):
        tokens = set(_text.content_tokens(span))
        if not tokens or not tokens <= ctx.tokens:
            continue
        others = {t: w for t, w in key.items() if t not in tokens}
        if not others:
            continue
        near = _neighbourhood(tokens, ctx)
        shares.append(sum(w * near.get(t, 0.0) for t, w in others.items()) / sum(others.values()))
    return sum(shares) / len(shares) if shares else 1.0


def _entity_problems(claim: str, ctx: ContextIndex, question: QuestionIndex) -> list[str]:
    """Names in the claim that neither the context nor the question contains."""
    problems = []
    for span in _text.entity_spans(claim):
        key = _text.phrase_key(span)
        if key in ctx.phrase or key in question.phrase:
            continue
        tokens = set(_text.content_tokens(span))
        if not tokens:
            continue
        if any(t not in ctx.tokens and t not in question.tokens for t in tokens):
            problems.append(f"name {span!r} not in context")
        elif len(tokens) > 1:
            problems.append(f"recombined name {span!r}: its words occur in the context, not the name")
    return problems


def check_claim(claim: str, ctx: ContextIndex, question: QuestionIndex) -> ClaimCheck:
    """Score one claim: weighted share of its content found in the context, times how much of it sits
    together in one passage (a claim stitched from unrelated sentences is a typical hallucination),
    capped by hard failures (a number or name the context lacks, a negation it does not have).
    """
    weights = _token_weights(claim)
    if not weights:
        return ClaimCheck(claim, 1.0, novel=False)
    supported: dict[str, float] = {}
    credit = 0.0
    missing_numbers: list[str] = []
    missing_words: list[str] = []
    for token, weight in weights.items():
        if token in ctx.tokens:
            supported[token] = weight
            credit += weight
        elif token in question.tokens:
            credit += weight * RESTATEMENT_CREDIT
        else:
            (missing_numbers if _text.is_number(token) else missing_words).append(token)
    leniency = MISSING_WORD_DISCOUNT * min(MAX_FORGIVEN, sum(weights[t] for t in missing_words))
    score = credit / (sum(weights.values()) - leniency)
    best = _best_window(supported, ctx, question.tokens - supported.keys())
    key = {t: w for t, w in supported.items() if w >= ENTITY_WEIGHT}
    together = cohesion(claim, key, ctx)
    score *= 1.0 - COHESION_WEIGHT * (1.0 - together)
    problems = [f"number {n} not in context" for n in missing_numbers]
    problems += _entity_problems(claim, ctx, question)
    if _text.has_negation(claim):
        if best is None or not ctx.sentence_negated[best]:
            problems.append("negation not in context")
    elif any(
        neg and _negated_here(ctx.sentences[i], supported) for i, neg in enumerate(ctx.sentence_negated)
    ):
        problems.append("negation dropped: the context says the opposite")
    score = min([score, *(_CAPS[p.split(" ", 1)[0]] for p in problems)])
    if missing_words:
        problems.append("unsupported words: " + ", ".join(missing_words[:5]))
    if together < 0.75:
        problems.append("combines facts from unrelated parts of the context")
    novel = bool(missing_numbers or missing_words or supported.keys() - question.tokens)
    return ClaimCheck(claim, score, problems, novel=novel, best_sentence=best)


_CAPS: dict[str, float] = {"number": 0.2, "name": 0.3, "recombined": 0.5, "negation": 0.35}


def _negated_here(sentence: str, claim_tokens: dict[str, float]) -> bool:
    """Whether a negation in ``sentence`` governs what the claim states positively: two of the claim's
    words follow "not"/"never"/"n't" within six words ("should not be taken by people with severe ...")."""
    words = _text.raw_words(sentence.lower().replace("\u2019", "'"))
    for i, word in enumerate(words):
        if word in _text.NEGATIONS or word.endswith("n't"):
            following = " ".join(words[i + 1 : i + 7])
            if len(set(_text.content_tokens(following)) & claim_tokens.keys()) >= 2:
                return True
    return False


def question_alignment(checks: list[ClaimCheck], ctx: ContextIndex, question: QuestionIndex) -> float | None:
    """How much of the question surrounds the output's evidence in the context (None: nothing to compare).

    A right answer usually sits next to what the question asks about; a wrong name lifted from elsewhere
    in the context does not. Neighbouring sentences count, since answers often follow a bridging sentence.
    """
    wanted = question.tokens & ctx.tokens
    spots = {c.best_sentence for c in checks if c.best_sentence is not None}
    if len(wanted) < 2 or not spots:
        return None
    best = 0.0
    weights = dict.fromkeys(wanted, 1.0)
    for i in spots:
        best = max(best, _window_share(weights, ctx, i))
    return best


_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+")


def split_claims(text: str) -> list[str]:
    """The output's claims: its lines (list markers dropped) and sentences, split further at ';' and
    ', and/but/which ...'. Lead-ins ("Key facts:") and questions assert nothing and are left out."""
    lines = [_LIST_MARKER_RE.sub("", line) for line in text.splitlines() if line.strip()]
    sentences = [s for line in lines for s in _text.split_sentences(line)]
    asserted = [s for s in sentences if not s.rstrip().endswith((":", "?"))]  # lead-ins and questions
    return [c for s in asserted for c in _text.split_clauses(s)]


class ContextAdherenceScorer(Scorer):
    """Is the output supported by the retrieved context? 1 = every claim is, 0 = a claim is invented.

    Each claim gets the weighted share of its content words found in the context (numbers and names
    weigh more; words that merely restate the question get half credit), capped low when it has a number
    or a name the context lacks or a negation the context does not have. Claims are combined with a
    soft minimum, so one unsupported claim pulls the score down whatever the length of the answer.
    """

    mode = "inline"
    name = "context_adherence"

    def score(self, payload: Payload) -> ScoreResult:
        output = (payload.output or "").strip()
        if not payload.context or not any(c.strip() for c in payload.context):
            return ScoreResult(value=0.0, explanation="no context to check the output against")
        if not output:
            return ScoreResult(value=1.0, explanation="empty output: nothing to contradict the context")
        ctx = index_context(tuple(payload.context))
        question = QuestionIndex.of(payload.input)
        checks = [check_claim(c, ctx, question) for c in split_claims(output)]
        if not checks:
            return ScoreResult(value=1.0, explanation="the output makes no claim to check")
        value = _text.soft_min([c.score for c in checks], SOFT_MIN_SHARPNESS)
        alignment = question_alignment(checks, ctx, question)
        if alignment is not None:
            value *= 0.9 + 0.1 * alignment
        return ScoreResult(value=round(value, 4), explanation=_adherence_explanation(checks))


def _adherence_explanation(checks: list[ClaimCheck]) -> str:
    bad = [c for c in checks if c.score < 0.5]
    if not bad:
        if not any(c.novel for c in checks):
            return f"all {len(checks)} claim(s) supported; their words all come from the question"
        return f"all {len(checks)} claim(s) supported by the context"
    worst = min(bad, key=lambda c: c.score)
    snippet = worst.text if len(worst.text) <= 80 else worst.text[:77] + "..."
    reasons = "; ".join(worst.problems[:3]) or "content not found in context"
    return f"{len(bad)} of {len(checks)} claim(s) unsupported, e.g. {snippet!r}: {reasons}"


def key_content(sequence: tuple[str, ...], question: frozenset[str]) -> dict[str, float]:
    """What a context sentence adds beyond the question, weighted by how close it is to the question's words.

    In "The tower is 330 metres tall and was the tallest building until 1930", asked "how tall is it?",
    "330 metres" sits next to "tall" and matters more than "1930". Numbers and names weigh more.
    """
    anchors = [i for i, t in enumerate(sequence) if t in question]
    weights: dict[str, float] = {}
    for i, token in enumerate(sequence):
        if token in question:
            continue
        base = (
            NUMBER_WEIGHT
            if _text.is_number(token)
            else GENERIC_WEIGHT
            if token in GENERIC_WORDS
            else WORD_WEIGHT
        )
        if anchors:
            distance = min(abs(i - a) for a in anchors)
            base *= 0.3 + 0.7 * math.exp(-distance / 4.0)
        weights[token] = max(weights.get(token, 0.0), base)
    return weights


class CompletenessScorer(Scorer):
    """How much of the context that is relevant to the question does the output cover?

    Context sentences that share content with the question are the relevant ones (all sentences when
    there is no question or none shares anything). Their key content is what they add beyond the
    question, weighted towards words near the question's words; a sentence counts as covered in
    proportion to the key content the output repeats, saturating at ``saturation`` (an answer need not
    copy every word). The value is the relevance-weighted mean over relevant sentences.
    """

    mode = "inline"
    name = "completeness"

    def __init__(self, *, saturation: float = 0.6, max_sentences: int = 8) -> None:
        self.saturation = saturation
        self.max_sentences = max_sentences

    def score(self, payload: Payload) -> ScoreResult:
        output = (payload.output or "").strip()
        if not payload.context or not any(c.strip() for c in payload.context):
            return ScoreResult(value=0.0, explanation="no context to measure coverage against")
        if not output:
            return ScoreResult(value=0.0, explanation="empty output covers nothing")
        ctx = index_context(tuple(payload.context))
        question = QuestionIndex.of(payload.input)
        relevant = self._relevant(ctx, question)
        if not relevant:
            return ScoreResult(value=1.0, explanation="the context has no content to cover")
        answer = set(_text.content_tokens(output))
        covered = total = 0.0
        missed: list[str] = []
        for i, relevance in relevant:
            key = key_content(ctx.sentence_sequences[i], question.tokens)
            if not key:
                continue
            share = sum(w for t, w in key.items() if t in answer) / sum(key.values())
            coverage = min(1.0, share / self.saturation)
            covered += relevance * coverage
            total += relevance
            if coverage < 0.5:
                missed.append(ctx.sentences[i])
        value = covered / total if total else 1.0
        return ScoreResult(value=round(value, 4), explanation=_completeness_explanation(relevant, missed))

    def _relevant(self, ctx: ContextIndex, question: QuestionIndex) -> list[tuple[int, float]]:
        """(sentence index, relevance) of the context sentences the question is about.

        Sentences sharing at least half as many question words as the best one, weighted by that share;
        the next sentence of the same document (it often continues: "It ...", "They ...") at half that.
        """
        scored = [(i, len(question.tokens & toks)) for i, toks in enumerate(ctx.sentence_tokens) if toks]
        best = max((hits for _, hits in scored), default=0)
        if best == 0:
            return [(i, 1.0) for i, _ in scored[: self.max_sentences]]
        relevance: dict[int, float] = {}
        for i, hits in scored:
            if hits >= max(1, math.ceil(best / 2)):
                relevance[i] = max(relevance.get(i, 0.0), hits / best)
                nxt = i + 1
                if nxt < len(ctx.sentences) and ctx.sentence_doc[nxt] == ctx.sentence_doc[i]:
                    relevance[nxt] = max(relevance.get(nxt, 0.0), hits / best / 2)
        ranked = sorted(relevance.items(), key=lambda pair: -pair[1])
        return ranked[: self.max_sentences]


def _completeness_explanation(relevant: list[tuple[int, float]], missed: list[str]) -> str:
    n = len(relevant)
    if not missed:
        return f"covers the {n} relevant context sentence(s)"
    snippet = missed[0] if len(missed[0]) <= 80 else missed[0][:77] + "..."
    return f"misses {len(missed)} of {n} relevant context sentence(s), e.g. {snippet!r}"

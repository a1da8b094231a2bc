"""The LLM-judge scorer, driven by LangChain's fake chat models."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult

from stageguard import Engine, ExecutionStatus, FailPolicy, OverrideAction, Rule, Ruleset
from stageguard.payload import Payload
from stageguard.scorers.judge import (
    JudgeError,
    JudgeScorer,
    JudgeTimeoutError,
    judge_scorers,
    parse_judgement,
)
from stageguard.scorers.registry import ScorerRegistry, default_registry

PAYLOAD = Payload(
    input="When was the tower built?",
    output="From 1887 to 1889.",
    context=["The tower was built from 1887 to 1889 and is 330 metres tall."],
)
GOOD = '{"score": 0.8, "explanation": "covers the dates, not the height"}'


def _fake(*answers: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content=a) for a in answers]))


def _payload(i: int) -> Payload:
    return PAYLOAD.model_copy(update={"output": f"From 1887 to 1889 ({i})."})


class SlowFake(GenericFakeChatModel):
    """Answers GOOD after ``delay`` seconds and records how many calls overlap."""

    delay: float = 0.05
    in_flight: int = 0
    peak: int = 0

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self._generate(messages, stop=stop, **kwargs)
        finally:
            self.in_flight -= 1


def _endless(answer: str) -> Iterator[AIMessage]:
    while True:
        yield AIMessage(content=answer)


# ------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        f"```json\n{GOOD}\n```",
        f"```\n{GOOD}\n```",
        f"Sure! Here is my verdict:\n{GOOD}\nHope this helps.",
        '{"score": "0.8", "explanation": "covers the dates, not the height"}',
    ],
)
def test_parse_judgement_accepts_json_in_chatter_and_fences(text: str) -> None:
    result = parse_judgement(text)
    assert result.value == 0.8 and result.explanation == "covers the dates, not the height"


@pytest.mark.parametrize(
    "text",
    ["0.8", "{}", '{"score": 1.5}', '{"score": -0.1}', '{"score": "high"}', '{"score": true}', "{broken"],
)
def test_parse_judgement_rejects_unusable_answers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_judgement(text)


# ---------------------------------------------------------------------------------------- scoring


async def test_async_score_and_prompt() -> None:
    judge = JudgeScorer(_fake(GOOD), "completeness")
    result = await judge.ascore(PAYLOAD)
    assert result.value == 0.8 and result.explanation == "covers the dates, not the height"
    assert judge.mode == "async" and judge.name == "completeness" and judge.calls == 1
    system, human = judge.prompt(PAYLOAD)
    assert system[0] == "system" and "relevant" in system[1] and '"score"' in system[1]
    assert "## User input" in human[1] and "## Retrieved context" in human[1] and "## AI output" in human[1]


def test_sync_score_runs_the_coroutine() -> None:
    assert JudgeScorer(_fake(GOOD), "context_adherence").score(PAYLOAD).value == 0.8


async def test_sync_score_also_works_inside_a_running_loop() -> None:
    assert JudgeScorer(_fake(GOOD), "context_adherence").score(PAYLOAD).value == 0.8


async def test_malformed_answer_is_retried_once() -> None:
    judge = JudgeScorer(_fake("I think it is fine.", GOOD), "completeness")
    assert (await judge.ascore(PAYLOAD)).value == 0.8
    assert judge.calls == 2


async def test_malformed_twice_raises() -> None:
    judge = JudgeScorer(_fake("no idea", '{"score": 7}', GOOD), "completeness")
    with pytest.raises(JudgeError, match="after a retry"):
        await judge.ascore(PAYLOAD)
    assert judge.calls == 2


async def test_time_out() -> None:
    judge = JudgeScorer(SlowFake(messages=_endless(GOOD), delay=1.0), "completeness", timeout=0.05)
    with pytest.raises(JudgeTimeoutError) as info:
        await judge.ascore(PAYLOAD)
    assert isinstance(info.value, TimeoutError) and "0.05" in str(info.value)


async def test_cache_hit_calls_the_model_once() -> None:
    judge = JudgeScorer(_fake(GOOD), "completeness")  # a second model call would exhaust the iterator
    first = await judge.ascore(PAYLOAD)
    second = await judge.ascore(PAYLOAD.model_copy())
    assert first == second and judge.calls == 1


async def test_cache_is_lru_and_keyed_by_payload() -> None:
    judge = JudgeScorer(GenericFakeChatModel(messages=_endless(GOOD)), "completeness", cache_size=1)
    for i in (1, 2, 1):
        await judge.ascore(_payload(i))
    assert judge.calls == 3
    await judge.ascore(_payload(1))
    assert judge.calls == 3


async def test_concurrency_limit() -> None:
    llm = SlowFake(messages=_endless(GOOD), delay=0.05)
    judge = JudgeScorer(llm, "completeness", max_concurrency=2)
    results = await asyncio.gather(*(judge.ascore(_payload(i)) for i in range(8)))
    assert [r.value for r in results] == [0.8] * 8
    assert llm.peak == 2


async def test_judge_scorers_share_one_limit_per_model() -> None:
    llm = SlowFake(messages=_endless(GOOD), delay=0.05)
    scorers = judge_scorers(llm, ["completeness", "Groundedness", "tool_error_rate"], max_concurrency=1)
    assert set(scorers) == {"completeness", "context_adherence", "tool_error_rate"}
    await asyncio.gather(*(s.ascore(_payload(i)) for i, s in enumerate(scorers.values())))
    assert llm.peak == 1


# ---------------------------------------------------------------------------------------- rubrics


def test_text_metrics_show_the_right_field() -> None:
    payload = Payload(input="INPUT TEXT", output="OUTPUT TEXT")
    input_judge = JudgeScorer(_fake(GOOD), "input_toxicity")
    output_judge = JudgeScorer(_fake(GOOD), "toxicity")  # Galileo's bare name means the output
    assert output_judge.metric == "output_toxicity"
    assert "INPUT TEXT" in input_judge.prompt(payload)[1][1]
    assert "OUTPUT TEXT" not in input_judge.prompt(payload)[1][1]
    assert "OUTPUT TEXT" in output_judge.prompt(payload)[1][1]
    assert "INPUT TEXT" in JudgeScorer(_fake(GOOD), "prompt_injection").prompt(payload)[1][1]
    assert "sexis" in JudgeScorer(_fake(GOOD), "output_sexism").prompt(payload)[0][1]


@pytest.mark.parametrize(
    "metric",
    [
        "context_adherence",
        "completeness",
        "tool_error_rate",
        "tool_selection_quality",
        "action_advancement",
        "action_completion",
        "input_toxicity",
        "output_sexism",
        "prompt_injection",
    ],
)
def test_every_built_in_rubric_exists(metric: str) -> None:
    judge = JudgeScorer(_fake(GOOD), metric)
    assert judge.rubric and "Score" in judge.rubric


def test_agent_rubrics_show_tools_and_calls() -> None:
    payload = Payload(
        input="weather in Oslo?",
        tools=[{"name": "get_weather", "parameters": {"type": "object"}}],  # type: ignore[list-item]
        tool_calls=[{"name": "get_weather", "arguments": {"location": "Oslo"}, "result": "sunny"}],  # type: ignore[list-item]
    )
    human = JudgeScorer(_fake(GOOD), "tool_selection_quality").prompt(payload)[1][1]
    assert "## Available tools" in human and "## Tool calls and results" in human and '"Oslo"' in human


def test_custom_metric_needs_a_rubric() -> None:
    with pytest.raises(ValueError, match="rubric"):
        JudgeScorer(_fake(GOOD), "politeness")
    judge = JudgeScorer(_fake(GOOD), "politeness", rubric="Score how polite the output is.")
    assert judge.score(PAYLOAD).value == 0.8
    assert judge.prompt(PAYLOAD)[0][1].startswith("Score how polite")


def test_missing_langchain_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    with pytest.raises(ImportError, match=r"stageguard\[langchain\]"):
        JudgeScorer(object(), "completeness")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ engine use


def _ruleset() -> list[Ruleset]:
    rule = Rule(metric="completeness", operator="lt", target_value=0.5)
    return [Ruleset(rules=[rule], action=OverrideAction(choices=["incomplete answer"]))]


def test_engine_uses_the_judge_for_one_metric() -> None:
    registry = ScorerRegistry(
        judge_scorers(_fake('{"score": 0.2, "explanation": "misses the height"}'), ["completeness"]),
        parent=default_registry,
    )
    assert registry.get("context_adherence") is not registry.get("completeness")
    response = Engine(registry).evaluate(PAYLOAD, _ruleset())
    assert response.status is ExecutionStatus.triggered and response.text == "incomplete answer"


def test_engine_turns_a_failing_judge_into_a_metric_error() -> None:
    registry = ScorerRegistry(
        judge_scorers(_fake("??", "still no json"), ["completeness"]), parent=default_registry
    )
    response = Engine(registry).evaluate(PAYLOAD, _ruleset(), fail_policy=FailPolicy.fail_closed)
    result = response.metric_results["completeness"]
    assert result.status == "error" and "JudgeError" in (result.error_message or "")
    assert response.failure is not None and response.failure.policy is FailPolicy.fail_closed

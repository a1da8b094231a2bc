"""Property-based tests (hypothesis) over the model, the engine and ``Protect.invoke``/``ainvoke``.

Asserted for arbitrary input: only documented errors escape (``StageguardError`` subclasses, pydantic's
``ValidationError`` for models built directly), every response serialises to JSON and back, nothing hangs
(each invoke has a time-out), and a rejected request writes nothing to the store. Example counts are
bounded and derandomised (profile ``stageguard``; ``STAGEGUARD_FUZZ_EXAMPLES`` raises them locally).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stageguard import Payload, Protect, Rule, Ruleset, SQLiteStageStore
from stageguard.errors import StageguardError
from stageguard.response import Response
from stageguard.stages import Stage

settings.register_profile(
    "stageguard",
    max_examples=int(os.environ.get("STAGEGUARD_FUZZ_EXAMPLES", "40")),
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("stageguard")
DOCUMENTED = (StageguardError, ValidationError)

text = st.text(alphabet=st.characters(codec=None), max_size=60)  # surrogates and NUL included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)
messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": text},
    optional={"name": text, "tool_call_id": text},
)
tool_calls = st.fixed_dictionaries(
    {"name": text},
    optional={
        "arguments": st.dictionaries(text, json_values, max_size=3),
        "id": text,
        "result": text,
        "error": text,
        "status": st.sampled_from(["success", "error"]),
    },
)
tools = st.fixed_dictionaries(
    {"name": text},
    optional={"description": text, "parameters": st.dictionaries(text, json_values, max_size=3)},
)
payload_dicts = st.fixed_dictionaries(
    {},
    optional={
        "input": text,
        "output": text,
        "context": st.lists(text, max_size=3) | text,
        "messages": st.lists(messages, max_size=3),
        "tools": st.lists(tools, max_size=2),
        "tool_calls": st.lists(tool_calls, max_size=3),
        "metadata": st.dictionaries(text, json_values, max_size=3),
    },
)
metrics = st.sampled_from(
    [
        "input_pii",
        "output_pii",
        "prompt_injection",
        "input_toxicity",
        "output_tone",
        "context_adherence",
        "completeness",
        "tool_error_rate",
        "tool_selection_quality",
        "action_advancement",
        "action_completion",
        "no_such_metric",
    ]
)
operators = st.sampled_from(
    ["gt", "lt", "gte", "lte", "eq", "neq", "contains", "all", "any", "empty", "not_empty", "GT", "bogus"]
)
targets = st.none() | st.floats(allow_nan=True) | st.integers() | text | st.lists(text, max_size=3)
rule_dicts = st.fixed_dictionaries({"metric": metrics | text, "operator": operators, "target_value": targets})
action_dicts = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["override", "OVERRIDE"]), "choices": st.lists(text, max_size=2)}
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["passthrough", "redact", "nonsense"])}),
    st.fixed_dictionaries({"type": st.just("REDACT"), "placeholder": text}),
)
ruleset_dicts = st.fixed_dictionaries(
    {"rules": st.lists(rule_dicts, max_size=3)}, optional={"action": action_dicts, "description": text}
)
anything = st.one_of(st.none(), st.integers(), st.floats(), text, st.lists(st.integers(), max_size=2))


def _roundtrip(response: Response) -> None:
    body = response.model_dump_json()
    json.loads(body)
    Response.model_validate_json(body)


@PROFILE
@given(payload_dicts)
def test_payload_builds_or_fails_cleanly_and_round_trips(data: dict[str, Any]) -> None:
    try:
        payload = Payload.model_validate(data)
    except ValidationError:
        return
    body = payload.model_dump_json(exclude_none=True)
    again = Payload.model_validate_json(body)
    assert again.model_dump_json(exclude_none=True) == body


@PROFILE
@given(ruleset_dicts)
def test_rulesets_build_or_fail_cleanly_and_round_trip(data: dict[str, Any]) -> None:
    try:
        ruleset = Ruleset.model_validate(data)
    except ValidationError:
        return
    assert Ruleset.model_validate_json(ruleset.model_dump_json()) == ruleset
    for rule in ruleset.rules:
        assert Rule.model_validate_json(rule.model_dump_json()) == rule


@PROFILE
@given(name=text, description=st.none() | text)
def test_stage_round_trips(name: str, description: str | None) -> None:
    stage = Stage(id="s", name=name, project_id="p", description=description)
    assert Stage.model_validate_json(stage.model_dump_json()) == stage


def _state(protect: Protect) -> list[Any]:
    store = protect.store
    return [
        (p.id, [(s.model_dump_json(), store.list_versions(s.id)) for s in store.list_stages(p.id)])
        for p in store.list_projects()
    ]


@PROFILE
@given(
    payload=payload_dicts | text | anything,
    rulesets=st.lists(ruleset_dicts, max_size=3) | anything,
    timeout=st.one_of(st.floats(), st.integers(min_value=-5, max_value=10**30), anything),
    version=st.none() | st.integers() | anything,
    extra=st.fixed_dictionaries(
        {},
        optional={
            "metadata": st.dictionaries(text, json_values, max_size=2) | anything,
            "headers": st.dictionaries(text, text, max_size=2) | anything,
            "fail_policy": st.sampled_from(["fail_open", "fail_closed", "nope"]),
            "shadow": st.booleans(),
        },
    ),
)
def test_invoke_inline_never_crashes(
    payload: Any, rulesets: Any, timeout: Any, version: Any, extra: dict[str, Any]
) -> None:
    protect = Protect(SQLiteStageStore(":memory:"))
    try:
        try:
            response = protect.invoke(
                payload,
                prioritized_rulesets=rulesets,
                timeout=_bounded(timeout),
                stage_version=version,
                **extra,
            )
        except DOCUMENTED:
            return
        _roundtrip(response)
        assert protect.store.list_projects() == []  # an inline invoke writes nothing
    finally:
        protect.close()


def _bounded(timeout: Any) -> Any:
    """Valid time-outs stay short (no hang); invalid ones are passed through to be rejected."""
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 < timeout < 1e6:
        return min(timeout, 5.0)
    return timeout


@PROFILE
@given(
    name=text | anything,
    stage_type=st.sampled_from(["local", "central", "weird"]),
    rulesets=st.none() | st.lists(ruleset_dicts, max_size=2) | anything,
    description=st.none() | text | anything,
    fail_policy=st.sampled_from(["fail_open", "fail_closed", "bad"]),
    project_name=st.none() | text,
)
def test_stage_writes_are_all_or_nothing(
    name: Any, stage_type: str, rulesets: Any, description: Any, fail_policy: str, project_name: str | None
) -> None:
    protect = Protect(SQLiteStageStore(":memory:"))
    try:
        protect.create_stage("base", stage_type="central", prioritized_rulesets=[], project_name="base")
        before = _state(protect)
        try:
            stage = protect.create_stage(
                name,
                stage_type=stage_type,
                prioritized_rulesets=rulesets,
                description=description,
                fail_policy=fail_policy,
                project_name=project_name,
            )
        except DOCUMENTED:
            assert _state(protect) == before  # rejected: nothing written, not even the project
        else:
            stage.model_dump_json()
            found = protect.get_stage(stage.name, project_name=project_name)
            assert found is not None and found.id == stage.id
        before = _state(protect)
        try:
            protect.update_stage("base", prioritized_rulesets=rulesets, project_name="base")
        except DOCUMENTED:
            assert _state(protect) == before
    finally:
        protect.close()


@settings(PROFILE, max_examples=max(5, PROFILE.max_examples // 4))
@given(payload=payload_dicts, rulesets=st.lists(ruleset_dicts, min_size=1, max_size=2))
def test_ainvoke_never_crashes(payload: dict[str, Any], rulesets: list[dict[str, Any]]) -> None:
    protect = Protect(SQLiteStageStore(":memory:"))

    async def go() -> Response | None:
        try:
            return await protect.ainvoke(payload, prioritized_rulesets=rulesets, timeout=5.0)
        except DOCUMENTED:
            return None

    try:
        response = asyncio.run(go())
        if response is not None:
            _roundtrip(response)
    finally:
        protect.close()

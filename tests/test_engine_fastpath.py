"""The engine's hot path gives exactly what the general path gives.

A stored stage's rulesets are compiled once per version (``CompiledRulesets``, cached with the stage),
rulesets passed inline are compiled on each call, comparisons are resolved once per rule, and a plain
invoke builds its ``Request`` without validation. Across random stages, metric values and payloads:
the response JSON (and every ``model_fields_set``) is the same whichever way the rulesets reach the
engine, the comparisons are those of the operator table below (the reference), and the ``Request``
built directly is the one validation builds.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from stageguard import OverrideAction, Payload, Protect, Rule, Ruleset, SQLiteStageStore, register_metric
from stageguard.engine import CompiledRulesets
from stageguard.errors import InvalidRequestError
from stageguard.metrics import remove_custom_metric
from stageguard.operators import RuleOperator, compare
from stageguard.protect import build_request
from stageguard.response import Request, Response, response_json
from stageguard.rules import PassthroughAction, RedactAction
from stageguard.scorers.base import ScoreResult, Span
from stageguard.scorers.registry import default_registry

EXAMPLES = settings(
    max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# custom metrics of each kind, returning what the current example says (or raising it)
KINDS = {"fp_score": "score", "fp_number": "number", "fp_category": "category", "fp_categories": "categories"}
VALUES: dict[str, Any] = {}
OPERATORS = {
    "score": ["gt", "lt", "gte", "lte", "eq", "neq"],
    "number": ["gt", "lt", "gte", "lte", "eq", "neq"],
    "category": ["eq", "neq", "any"],
    "categories": ["contains", "all", "any", "eq", "neq", "empty", "not_empty"],
}
LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module", autouse=True)
def _metrics() -> Iterator[None]:
    def scorer(name: str) -> Any:
        def score(_payload: Payload) -> Any:
            value = VALUES[name]
            if isinstance(value, Exception):
                raise value
            return value

        return score

    for name, kind in KINDS.items():
        register_metric(name, scorer(name), kind=kind, replace=True)
    yield
    for name in KINDS:
        default_registry.unregister(name)
        remove_custom_metric(name)


# -- strategies -----------------------------------------------------------------------------------

odd_values = st.sampled_from(
    [
        None,
        float("nan"),
        float("inf"),
        True,
        "a",
        "b\ud800",
        ["a", "b"],
        [["unhashable"]],
        ("a",),
        {"b"},
        ValueError("boom"),
        ScoreResult(
            value=0.7, explanation="why \ud800", spans=[Span(start=0, end=3, label="a", field="output")]
        ),
        ScoreResult(value=["a"], spans=[Span(start=0, end=2, label="a", field="output")]),
    ]
)
kind_values = {
    "score": st.sampled_from([0.0, 0.1, 0.5, 0.9, 1, 0]),
    "number": st.sampled_from([-3.0, 0, 2, 10.5]),
    "category": st.sampled_from(LABELS),
    "categories": st.lists(st.sampled_from(LABELS), max_size=3),
}
metric_values = st.fixed_dictionaries({name: kind_values[kind] | odd_values for name, kind in KINDS.items()})


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    name = draw(st.sampled_from(sorted(KINDS)))
    kind = KINDS[name]
    operator = draw(st.sampled_from(OPERATORS[kind]))
    if operator in ("empty", "not_empty"):
        target: Any = None
    elif kind in ("score", "number"):
        target = draw(st.sampled_from([0.0, 0.5, 1.0] if kind == "score" else [-1, 0, 2.5]))
    elif operator in ("all", "any"):
        target = draw(st.lists(st.sampled_from(LABELS), min_size=1, max_size=3))
    else:
        target = draw(st.sampled_from(LABELS))
    return Rule(metric=name, operator=operator, target_value=target)


actions = st.sampled_from(
    [
        None,
        PassthroughAction(),
        OverrideAction(choices=["blocked"]),
        OverrideAction(choices=["blocked"], review=True),
        RedactAction(),
        RedactAction(strategy="mask", review=True),
    ]
)


@st.composite
def rulesets(draw: st.DrawFn) -> list[Ruleset]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        action = draw(actions)
        out.append(
            Ruleset(
                rules=draw(st.lists(rules(), min_size=1, max_size=3)),
                description=draw(st.none() | st.just("d")),
                **({"action": action} if action is not None else {}),
            )
        )
    return out


payloads = st.builds(
    Payload,
    input=st.sampled_from(["hello", "x\ud800y", "ab", "\x00nul"]),
    output=st.sampled_from([None, "world out", "\u00e9t\u00e9"]),
)


def comparable(response: Response) -> dict[str, Any]:
    """The response's JSON without what differs between any two invokes (trace id and times, the
    stage's ids), with the ``model_fields_set`` of every object the engine built (a ruleset result's
    ``rules`` and ``action`` are the rulesets' own: built by the caller, or loaded by the store)."""
    data = json.loads(response.model_dump_json())
    data["trace_metadata"] = sorted(data["trace_metadata"])
    for result in data["metric_results"].values():
        result["execution_time"] = result["execution_time"] is not None
    for ruleset in data["ruleset_results"]:
        for rule in ruleset["rule_results"]:
            rule["execution_time"] = rule["execution_time"] is not None
    data.pop("stage_metadata")
    built = fields_set(response)
    built.pop("stage_metadata", None)
    return {"json": data, "fields_set": built}


def fields_set(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {"": sorted(model.model_fields_set)}
    for key, value in model.__dict__.items():
        if key in ("rules", "action"):
            continue
        if isinstance(value, BaseModel):
            out[key] = fields_set(value)
        elif isinstance(value, list):
            out[key] = [fields_set(v) for v in value if isinstance(v, BaseModel)]
        elif isinstance(value, dict):
            out[key] = {k: fields_set(v) for k, v in value.items() if isinstance(v, BaseModel)}
    return out


# -- the same response whichever way the rulesets come -------------------------------------------


@EXAMPLES
@given(
    stage=rulesets(),
    values=metric_values,
    payload=payloads,
    fail_policy=st.sampled_from(["fail_open", "fail_closed"]),
    shadow=st.booleans(),
)
def test_stored_stage_inline_rulesets_and_engine_give_the_same_response(
    stage: list[Ruleset], values: dict[str, Any], payload: Payload, fail_policy: str, shadow: bool
) -> None:
    VALUES.update(values)
    protect = Protect(SQLiteStageStore(":memory:"))
    try:
        protect.create_stage("s", stage_type="central", prioritized_rulesets=stage, fail_policy=fail_policy)
        first = protect.invoke(payload, stage_name="s", shadow=shadow)  # compiles the version
        cached = protect.invoke(payload, stage_name="s", shadow=shadow)  # the compiled version, cached
        inline = protect.invoke(payload, stage, shadow=shadow, fail_policy=fail_policy)
        engine = protect.engine.evaluate(payload, list(stage), shadow=shadow, fail_policy=fail_policy)
    finally:
        protect.close()
    expected = comparable(engine)
    assert comparable(first) == expected
    assert comparable(cached) == expected
    assert comparable(inline) == expected
    assert first.stage_metadata is not None and first.stage_metadata.stage_name == "s"
    # every rule's status is the reference comparison of its metric's value
    for ruleset, result in zip(stage, engine.ruleset_results, strict=True):
        for rule, rule_result in zip(ruleset.rules, result.rule_results, strict=True):
            metric = engine.metric_results[rule.metric]
            if metric.status == "success" and rule_result.status.value in ("triggered", "not_triggered"):
                hit = reference_compare(rule.operator, metric.value, rule.target_value)
                assert rule_result.status.value == ("triggered" if hit else "not_triggered")


def test_compiled_rulesets_are_the_rulesets() -> None:
    """What ``Protect`` hands on as a stage's rulesets (the server reads and serialises them) is a list
    equal to the stored one, serialised the same."""
    stage = [Ruleset(rules=[Rule(metric="fp_score", operator="gt", target_value=0.5)])]
    compiled = CompiledRulesets(stage)
    assert compiled == stage and isinstance(compiled, list)
    assert compiled.metrics == ("fp_score",)
    adapter = TypeAdapter(list[Ruleset])
    assert adapter.dump_json(compiled) == adapter.dump_json(stage)
    loaded = pickle.loads(pickle.dumps(compiled))  # compiled again when loaded
    assert type(loaded) is CompiledRulesets and loaded == stage and loaded.metrics == compiled.metrics


def test_a_new_version_is_compiled_again(protect: Protect) -> None:
    VALUES.update(fp_score=0.7)
    gt = [Ruleset(rules=[Rule(metric="fp_score", operator="gt", target_value=0.5)])]
    lt = [Ruleset(rules=[Rule(metric="fp_score", operator="lt", target_value=0.5)])]
    protect.create_stage("v", stage_type="central", prioritized_rulesets=gt)
    assert protect.invoke(Payload(input="x"), stage_name="v").triggered
    protect.update_stage("v", prioritized_rulesets=lt)
    assert not protect.invoke(Payload(input="x"), stage_name="v").triggered
    assert protect.invoke(Payload(input="x"), stage_name="v", stage_version=1).triggered


# -- comparisons ----------------------------------------------------------------------------------


def reference_compare(operator: RuleOperator, value: Any, target: Any) -> bool:
    """The operators as documented (PROTECT.md), written out case by case: the reference."""
    if value is None:
        return False
    if isinstance(value, (list, tuple, set, frozenset)):
        found = set(value)
        table = {
            "contains": lambda: target in found,
            "all": lambda: all(t in found for t in target),
            "any": lambda: any(t in found for t in target),
            "empty": lambda: not found,
            "not_empty": lambda: bool(found),
            "eq": lambda: found == {target},
            "neq": lambda: found != {target},
        }
    elif isinstance(value, str):
        table = {
            "eq": lambda: value == target,
            "neq": lambda: value != target,
            "any": lambda: value in target,
        }
    elif isinstance(value, (int, float)):
        table = {
            "gt": lambda: value > target,
            "lt": lambda: value < target,
            "gte": lambda: value >= target,
            "lte": lambda: value <= target,
            "eq": lambda: value == target,
            "neq": lambda: value != target,
        }
    else:
        return False
    test = table.get(RuleOperator(operator).value)
    return bool(test()) if test is not None else False


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "returns", fn(*args)
    except Exception as exc:
        return "raises", type(exc)


comparable_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.sampled_from([*LABELS, ""]),
    st.lists(st.sampled_from(LABELS), max_size=3),
    st.lists(st.sampled_from(LABELS), max_size=3).map(tuple),
    st.sets(st.sampled_from(LABELS), max_size=3),
    st.just([["unhashable"]]),
    st.just({"a": 1}),
    st.just(b"a"),
)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(operator=st.sampled_from(list(RuleOperator)), value=comparable_values, target=comparable_values)
def test_compare_is_the_reference(operator: RuleOperator, value: Any, target: Any) -> None:
    assert outcome(compare, operator, value, target) == outcome(reference_compare, operator, value, target)
    assert outcome(compare, operator.value, value, target) == outcome(compare, operator, value, target)


# -- the Request of a plain invoke ----------------------------------------------------------------

names = st.none() | st.sampled_from(["bench", " padded ", "x\ud800", "nul\x00", "ünï"])


@EXAMPLES
@given(
    payload=st.builds(
        Payload,
        input=st.sampled_from(["hi", "h\u00e9", "x\ud800"]),
        output=st.none() | st.sampled_from(["out", "\ud800"]),
        context=st.none() | st.just([]) | st.just(["ctx \ud800"]),
        metadata=st.none() | st.just({}) | st.just({"k": "v"}),
    )
    | st.just(Payload(output="only output")),
    stage_name=names,
    project_name=names,
    stage_version=st.none() | st.integers(0, 3),
    timeout=st.sampled_from([10.0, 1, 0.5]),
    shadow=st.booleans(),
    fail_policy=st.none() | st.sampled_from(["fail_open", "fail_closed"]),
    metadata=st.none()
    | st.dictionaries(
        st.sampled_from(["stageguard_where", "k", "nul\x00", "x\ud800", "ünï"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.sampled_from(["input", "a\ud800", "tab\t", "nul\x00"])
        | st.lists(st.just("v"), max_size=2)
        | st.just({"nested": "v"}),
        max_size=3,
    ),
)
def test_a_plain_invoke_builds_the_request_validation_builds(
    payload: Payload,
    stage_name: str | None,
    project_name: str | None,
    stage_version: int | None,
    timeout: float,
    shadow: bool,
    fail_policy: str | None,
    metadata: dict[str, Any] | None,
) -> None:
    args = {
        "payload": payload,
        "prioritized_rulesets": None,
        "project_id": None,
        "project_name": project_name,
        "stage_id": None,
        "stage_name": stage_name,
        "stage_version": stage_version,
        "timeout": timeout,
        "metadata": metadata,
        "headers": None,
        "fail_policy": fail_policy,
        "shadow": shadow,
    }
    try:
        expected = Request.model_validate(args)
    except ValueError:
        with pytest.raises(InvalidRequestError):
            build_request({"self": None, "vault": None, **args})
        return
    built = build_request({"self": None, "vault": None, **args})
    assert built.model_dump_json() == expected.model_dump_json()
    assert built.model_fields_set == expected.model_fields_set
    assert built.metadata is not metadata or metadata is None  # a copy, as validation makes
    assert built.sanitized == expected.sanitized
    assert type(built.timeout) is float


@EXAMPLES
@given(
    change=st.tuples(
        st.sampled_from(["input", "output"]), st.none() | st.sampled_from(["", "plain", "h\u00e9", "x\ud800"])
    )
    | st.tuples(
        st.just("context"), st.none() | st.lists(st.sampled_from(["doc", "", "d\ud800"]), max_size=2)
    ),
)
def test_a_payload_changed_after_it_was_built_is_checked_as_validation_checks_it(
    change: tuple[str, Any],
) -> None:
    payload = Payload(input="question", output="answer", context=["doc"])
    setattr(payload, *change)  # no validation on assignment: the request must catch it
    args = {
        "payload": payload,
        "prioritized_rulesets": None,
        "project_id": None,
        "project_name": None,
        "stage_id": None,
        "stage_name": "bench",
        "stage_version": None,
        "timeout": 10.0,
        "metadata": None,
        "headers": None,
        "fail_policy": None,
        "shadow": False,
    }
    try:
        expected = Request.model_validate({**args, "payload": payload.model_copy(deep=True)})
    except ValueError:
        with pytest.raises(InvalidRequestError):
            build_request({"self": None, "vault": None, **args})
        return
    built = build_request({"self": None, "vault": None, **args})
    assert built.model_dump_json() == expected.model_dump_json()
    assert built.sanitized == expected.sanitized


@EXAMPLES
@given(value=st.floats() | st.integers() | st.text(max_size=5) | st.booleans() | st.none())
def test_a_bare_metric_value_becomes_the_score_result_validation_builds(value: Any) -> None:
    from stageguard.scorers.base import ScoreResult, as_score_result

    built = as_score_result(value)
    expected = ScoreResult(value=float(value) if isinstance(value, bool) else value)
    assert built.model_dump_json() == expected.model_dump_json()
    assert built.model_fields_set == expected.model_fields_set
    assert type(built.value) is type(expected.value)


# -- ruleset results built on first read ----------------------------------------------------------

PROTECT = Protect(SQLiteStageStore(":memory:"))  # inline rulesets only: nothing is stored
FIRST_TOUCHES = {
    "attribute": lambda r: r.ruleset_results,
    "trace": lambda r: r.trace_metadata,
    "triggered_rules": lambda r: r.triggered_rules,
    "str": str,
    "repr": repr,
    "iteration": dict,
    "equality": lambda r: r == r.model_copy(),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda r: pickle.loads(pickle.dumps(r)),
    "model_dump": lambda r: r.model_dump(),
}


@EXAMPLES
@given(
    stage=rulesets(),
    values=metric_values,
    payload=payloads,
    shadow=st.booleans(),
    touch=st.sampled_from(sorted(FIRST_TOUCHES)),
)
def test_ruleset_results_are_the_same_whatever_reads_them_first(
    stage: list[Ruleset], values: dict[str, Any], payload: Payload, shadow: bool, touch: str
) -> None:
    """The engine builds ``ruleset_results`` and ``trace_metadata`` on first read; whichever way a
    response is first read (attribute, printing, iteration, equality, copies, pickling, serialisation),
    it and anything made from it then hold the same results, in the same place of the JSON and
    ``__dict__``."""
    VALUES.update(values)
    response = PROTECT.invoke(payload, stage, shadow=shadow)
    serialised_first = response.model_copy()  # a copy (pydantic's __copy__) builds them first
    made = FIRST_TOUCHES[touch](response)
    expected = comparable(serialised_first)
    assert comparable(response) == expected
    assert list(response.__dict__) == list(Response.model_fields)
    for other in (made, response.model_copy(deep=True)):
        if isinstance(other, Response):
            assert comparable(other) == expected
            assert list(other.__dict__) == list(Response.model_fields)
    assert len(response.ruleset_results) == len(stage)


def test_ruleset_results_assigned_before_the_first_read_stay() -> None:
    VALUES.update(fp_score=0.7)
    stage = [Ruleset(rules=[Rule(metric="fp_score", operator="gt", target_value=0.5)])]
    response = PROTECT.invoke(Payload(input="x"), stage)
    response.ruleset_results = []
    assert response.ruleset_results == []
    assert json.loads(response.model_dump_json())["ruleset_results"] == []
    assert list(response.__dict__) == list(Response.model_fields)  # moved back to its place
    fresh = PROTECT.invoke(Payload(input="x"), stage)
    assert [r.status.value for r in fresh.ruleset_results] == ["triggered"]


def test_ruleset_results_read_by_many_threads_at_once_are_whole() -> None:
    VALUES.update(fp_score=0.7, fp_number=2, fp_category="a", fp_categories=["a"])
    stage = [
        Ruleset(
            rules=[
                Rule(
                    metric=m,
                    operator="not_empty" if m == "fp_categories" else "eq",
                    target_value=None
                    if m == "fp_categories"
                    else {"fp_score": 0.7, "fp_number": 2, "fp_category": "a"}[m],
                )
                for m in sorted(KINDS)
            ]
        )
    ]
    responses = [PROTECT.invoke(Payload(input="x"), stage) for _ in range(200)]
    with ThreadPoolExecutor(8) as pool:
        for response in responses:
            seen = list(pool.map(lambda r: r.ruleset_results, [response] * 8))
            assert all(len(s) == 1 and len(s[0].rule_results) == 4 for s in seen)
            assert seen[0][0].status.value == "triggered"


@EXAMPLES
@given(stage=rulesets(), values=metric_values, payload=payloads, shadow=st.booleans())
def test_response_json_is_model_dump_json(
    stage: list[Ruleset], values: dict[str, Any], payload: Payload, shadow: bool
) -> None:
    """The server's and subscriptions' JSON of a response (``response_json``, without Response's wrap
    serializer) is ``model_dump_json``'s, on a fresh response and on one already built."""
    VALUES.update(values)
    fresh = PROTECT.invoke(payload, stage, shadow=shadow, metadata={"k": "v"})
    copied = fresh.model_copy()  # built
    assert response_json(fresh) == copied.model_dump_json().encode()
    assert response_json(copied) == copied.model_dump_json().encode()

"""Stage creation/update warns about rules that can never be evaluated with the declared payload fields."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

import stageguard as sg
from stageguard import InvalidRequestError, Protect, StageType
from stageguard.metrics import BUILTIN_METRICS, MetricSpec
from stageguard.rules import parse_rulesets
from stageguard.stages import check_payload_fields, payload_field_warnings


def _rulesets(metric: str, operator: str = "gt", target: object = 0.5) -> list[dict[str, object]]:
    return [{"rules": [{"metric": metric, "operator": operator, "target_value": target}]}]


@pytest.fixture
def api(protect: Protect, monkeypatch: pytest.MonkeyPatch) -> Iterator[Protect]:
    for name in ("GALILEO_PROJECT", "GALILEO_PROJECT_NAME", "GALILEO_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    sg.set_default_protect(protect)
    yield protect
    sg.set_default_protect(None)


@pytest.mark.parametrize("spec", BUILTIN_METRICS, ids=lambda s: s.name)
def test_every_builtin_metric_is_fine_with_input_and_output(spec: MetricSpec) -> None:
    """What the galileo SDK's Payload carries (input + output) is enough for every built-in metric."""
    rule = {"metric": spec.name, "operator": sorted(spec.operators)[0].value}
    ruleset = sg.Ruleset.model_validate({"rules": [{**rule, "target_value": _target(spec)}]})
    assert payload_field_warnings([ruleset], ["input", "output"]) == []


def _target(spec: MetricSpec) -> object:
    op = sorted(spec.operators)[0].value
    if op in ("empty", "not_empty"):
        return None
    if spec.labels:
        return [spec.labels[0]] if op in ("any", "all") else spec.labels[0]
    return 0.5


def test_no_declaration_no_warnings(protect: Protect) -> None:
    stage = protect.create_stage(
        "s", stage_type=StageType.central, prioritized_rulesets=_rulesets("input_toxicity")
    )
    assert stage.warnings == []


def test_create_warns_names_rule_metric_and_fields(
    protect: Protect, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stageguard"):
        stage = protect.create_stage(
            "out",
            stage_type=StageType.central,
            prioritized_rulesets=[*_rulesets("output_toxicity"), *_rulesets("Input Toxicity")],
            payload_fields=["output"],
        )
    assert len(stage.warnings) == 1
    (warning,) = stage.warnings
    assert "prioritized_rulesets[1].rules[0]" in warning and "'input_toxicity'" in warning
    assert "Input Toxicity" in warning and "lacks input" in warning and "receives output" in warning
    assert any("lacks input" in r.getMessage() and r.name == "stageguard" for r in caplog.records)
    # written anyway, and the warnings are not stored
    stored = protect.get_stage("out")
    assert stored is not None and stored.version == 1 and stored.warnings == []


def test_alternatives_count(protect: Protect) -> None:
    """context_adherence needs input + output, or output + context."""
    fine = payload_field_warnings(
        parse_rulesets(_rulesets("context_adherence", "lt", 0.1)), ["output", "context"]
    )
    assert fine == []
    (warning,) = payload_field_warnings(parse_rulesets(_rulesets("context_adherence", "lt", 0.1)), ["output"])
    assert "lacks input" in warning and "or output + context" in warning


def test_strict_is_an_error_and_writes_nothing(protect: Protect) -> None:
    with pytest.raises(InvalidRequestError) as err:
        protect.create_stage(
            "strict",
            stage_type=StageType.central,
            prioritized_rulesets=_rulesets("prompt_injection", "gte", 0.5),
            payload_fields=["output"],
            strict=True,
        )
    message = str(err.value)
    assert "rules[0]" in message and "'prompt_injection'" in message and "lacks input" in message
    assert protect.get_stage("strict") is None


def test_strict_passes_when_fine(protect: Protect) -> None:
    stage = protect.create_stage(
        "ok",
        stage_type=StageType.central,
        prioritized_rulesets=_rulesets("input_toxicity"),
        payload_fields=["input", "output"],
        strict=True,
    )
    assert stage.warnings == [] and stage.version == 1


def test_update_warns_and_strict_keeps_version(protect: Protect) -> None:
    protect.create_stage("u", stage_type=StageType.central, prioritized_rulesets=_rulesets("input_toxicity"))
    v2 = protect.update_stage(
        "u", prioritized_rulesets=_rulesets("output_pii", "not_empty", None), payload_fields=["input"]
    )
    assert v2.version == 2 and len(v2.warnings) == 1 and "'output_pii'" in v2.warnings[0]
    with pytest.raises(InvalidRequestError, match="output_pii"):
        protect.update_stage(
            "u",
            prioritized_rulesets=_rulesets("output_pii", "not_empty", None),
            payload_fields=["input"],
            strict=True,
        )
    latest = protect.get_stage("u")
    assert latest is not None and latest.version == 2


def test_custom_metric_required_fields(protect: Protect, metric: Callable[..., str]) -> None:
    name = metric("needs_context", lambda p: 0.5, required_fields=["context"])
    stage = protect.create_stage(
        "custom",
        stage_type=StageType.central,
        prioritized_rulesets=_rulesets(name),
        payload_fields=["input", "output"],
    )
    (warning,) = stage.warnings
    assert "custom metric 'needs_context'" in warning and "lacks context" in warning
    no_needs = metric("no_needs", lambda p: 0.5)
    fine = protect.create_stage(
        "custom2",
        stage_type=StageType.central,
        prioritized_rulesets=_rulesets(no_needs),
        payload_fields=[],
    )
    assert fine.warnings == []


@pytest.mark.parametrize("bad", ["input", ["inputs"], 3])
def test_bad_payload_fields(protect: Protect, bad: object) -> None:
    with pytest.raises(InvalidRequestError, match="payload_fields"):
        protect.create_stage(
            "bad",
            stage_type=StageType.central,
            prioritized_rulesets=_rulesets("input_toxicity"),
            payload_fields=bad,  # type: ignore[arg-type]
        )
    assert protect.get_stage("bad") is None


def test_check_payload_fields_orders_and_dedupes() -> None:
    assert check_payload_fields(["output", "input", "output"]) == ("input", "output")
    assert check_payload_fields(None) is None


def test_functional_api(api: Protect) -> None:
    stage = sg.create_protect_stage(
        name="f",
        stage_type=StageType.central,
        prioritized_rulesets=_rulesets("input_sexism"),
        payload_fields=["output"],
    )
    assert len(stage.warnings) == 1 and "input_sexism" in stage.warnings[0]
    updated = sg.update_protect_stage(
        stage_name="f", prioritized_rulesets=_rulesets("output_sexism"), payload_fields=["output"]
    )
    assert updated.warnings == [] and updated.version == 2
    with pytest.raises(InvalidRequestError, match="input_sexism"):
        sg.update_protect_stage(
            stage_name="f",
            prioritized_rulesets=_rulesets("input_sexism"),
            payload_fields=["output"],
            strict=True,
        )

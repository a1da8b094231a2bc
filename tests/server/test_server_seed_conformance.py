"""The seed documents' code samples run unchanged (galileo imports and all) through Galileo's own SDK
against a real stageguard server, asserting what the seed text says. The direct-API twin of this module
is ``tests/test_seed_conformance.py``, whose cases (payloads, expected outcomes) are reused here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _server_support import LiveServer, galileo_sdk_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the samples and the direct cases

from _seed_samples import RULE_SAMPLES, STAGE_SAMPLES, run_sample
from test_seed_conformance import BENIGN, RULE_CASES, TOXIC, _holds

galileo_config = pytest.importorskip("galileo.config")
galileo_stages = pytest.importorskip("galileo.stages")
galileo_protect = pytest.importorskip("galileo.protect")
galileo_exceptions = pytest.importorskip("galileo.exceptions")
from galileo_core.schemas.protect.execution_status import ExecutionStatus  # noqa: E402
from galileo_core.schemas.protect.payload import Payload  # noqa: E402
from galileo_core.schemas.protect.ruleset import Ruleset  # noqa: E402
from galileo_core.schemas.protect.stage import StageType  # noqa: E402


@pytest.fixture
def sdk(live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """The SDK pointed at ``live`` with an admin key of project acme, the project from GALILEO_PROJECT
    (as the seed's samples expect: they name no project)."""
    key = live.harness.key("acme", "admin")
    with galileo_sdk_env(monkeypatch, live.url, key, tmp_path / "galileo", project="acme"):
        yield live


def _invoke(text_in: str, text_out: str | None = None, **kwargs: Any) -> Any:
    response = galileo_protect.invoke_protect(Payload(input=text_in, output=text_out), timeout=60, **kwargs)
    assert response is not None and not hasattr(response, "additional_properties"), response
    return response


def test_rule_samples_evaluate_on_input_and_output(sdk: LiveServer) -> None:
    """ "These rules will take the value from an evaluated metric, then use the operator to compare with
    the target value. If this comparison returns `true`, then the rule has been broken and is
    triggered." -- every built-in rule sample, unchanged, through the SDK's ``Payload`` (input and output
    only), on a local stage."""
    galileo_stages.create_protect_stage(name="seed-local", stage_type=StageType.local)
    for name, (_, metric, _, in_range, payloads) in RULE_CASES.items():
        rule = run_sample(RULE_SAMPLES[name], name, swap=False)["rule"]
        assert type(rule).__module__.startswith("galileo_core")
        for text_in, text_out, expected in payloads:
            response = _invoke(
                text_in, text_out, prioritized_rulesets=[Ruleset(rules=[rule])], stage_name="seed-local"
            )
            result = response.model_extra["metric_results"][metric]
            assert str(result["status"]).lower() == "success", (name, result)
            value = result["value"]
            assert in_range(value), (name, value)
            triggered = _holds(rule.operator.value, value, rule.target_value)
            assert (response.status == ExecutionStatus.triggered) is triggered, (name, value)
            if expected is not None:
                assert triggered is expected, (name, text_in, value)


def test_custom_code_based_metric_sample(sdk: LiveServer, metric: Callable[..., str]) -> None:
    """ "You can use custom code-based metrics in your runtime protection rulesets." (registered in the
    server's process)."""
    metric("your-metric-name", lambda p: 0.99 if "risky" in (p.input or "") else 0.2)
    rule = run_sample(RULE_SAMPLES["custom-code-based-metrics"], "custom", swap=False)["rule"]
    galileo_stages.create_protect_stage(name="seed-local", stage_type=StageType.local)
    rulesets = [Ruleset(rules=[rule])]
    risky = _invoke("risky", prioritized_rulesets=rulesets, stage_name="seed-local")
    assert risky.status == ExecutionStatus.triggered
    fine = _invoke("fine", prioritized_rulesets=rulesets, stage_name="seed-local")
    assert fine.status == ExecutionStatus.not_triggered


def test_stage_samples_unchanged(sdk: LiveServer) -> None:
    """ "If the stage doesn't exist, this returns `None`.", "When you create a central stage, you need to
    provide the prioritized list of rulesets.", "When you update a stage, a new version is created.",
    "When paused, the stage will always return success (with a status of paused) with no rulesets
    triggered." -- the Stages page's samples in its order, unchanged, project from GALILEO_PROJECT."""
    created = run_sample(STAGE_SAMPLES["create-central"], "create-central", swap=False)["stage"]
    assert created.type == StageType.central and created.version == 1
    assert str(created.project_id) == sdk.harness.project_id("acme")
    assert _invoke(TOXIC, stage_name="My stage").status == ExecutionStatus.triggered
    assert _invoke(BENIGN[0], stage_name="My stage").status == ExecutionStatus.not_triggered
    assert _invoke(TOXIC, stage_id=created.id).status == ExecutionStatus.triggered

    got = run_sample(STAGE_SAMPLES["get"], "get", swap=False)["stage"]
    assert got is not None and got.id == created.id

    updated = run_sample(STAGE_SAMPLES["update"], "update", swap=False)["stage"]
    assert updated.version == 2
    pinned = _invoke(TOXIC, stage_name="My stage", stage_version=1)
    assert pinned.status == ExecutionStatus.triggered

    run_sample(STAGE_SAMPLES["pause"], "pause", swap=False)
    paused = _invoke(TOXIC, stage_name="My stage")
    assert paused.status == ExecutionStatus.paused
    assert not any(
        str(r.get("status")).lower() == "triggered" for r in paused.model_extra.get("ruleset_results", [])
    )
    run_sample(STAGE_SAMPLES["resume"], "resume", swap=False)
    assert _invoke(TOXIC, stage_name="My stage").status == ExecutionStatus.triggered


def test_local_stage_sample_unchanged(sdk: LiveServer) -> None:
    """ "Local stages ... are created without rules, then when your application uses the stage, it
    supplies the ruleset at runtime.\""""
    stage = run_sample(STAGE_SAMPLES["create-local"], "create-local", swap=False)["stage"]
    assert stage.type == StageType.local
    rule = run_sample(RULE_SAMPLES["toxicity"], "toxicity", swap=False)["rule"]
    response = _invoke(TOXIC, prioritized_rulesets=[Ruleset(rules=[rule])], stage_name="My stage")
    assert response.status == ExecutionStatus.triggered


@pytest.mark.xfail(
    raises=galileo_exceptions.NotFoundError,
    strict=True,
    reason="galileo 2.7's SDK raises NotFoundError for the server's 404 (its generated client returns None "
    "for no status code), so the seed's None is unreachable through the SDK against any server; "
    "stageguard's own get_protect_stage returns None (tests/test_seed_conformance.py)",
)
def test_get_missing_stage_sample_unchanged(sdk: LiveServer) -> None:
    """ "If the stage doesn't exist, this returns `None`.\""""
    assert run_sample(STAGE_SAMPLES["get"], "get", swap=False)["stage"] is None

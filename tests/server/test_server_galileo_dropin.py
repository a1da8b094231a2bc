"""Drop-in behaviour on the server path, with the official galileo SDK against a real server: a central
stage invoked with rulesets, a local stage invoked without, metric spellings echoed (same as direct)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _server_support import EMAIL_TEXT, Harness, LiveServer, galileo_sdk_env

galileo_config = pytest.importorskip("galileo.config")
galileo_stages = pytest.importorskip("galileo.stages")
galileo_protect = pytest.importorskip("galileo.protect")
from galileo_core.schemas.protect.action import OverrideAction  # noqa: E402
from galileo_core.schemas.protect.execution_status import ExecutionStatus  # noqa: E402
from galileo_core.schemas.protect.payload import Payload  # noqa: E402
from galileo_core.schemas.protect.response import Response as GResponse  # noqa: E402
from galileo_core.schemas.protect.rule import Rule, RuleOperator  # noqa: E402
from galileo_core.schemas.protect.ruleset import Ruleset  # noqa: E402
from galileo_core.schemas.protect.stage import StageType  # noqa: E402
from galileo_core.schemas.shared.scorers.galileo_metrics import GalileoMetrics  # noqa: E402

import stageguard as sg  # noqa: E402


def _rulesets(metric: str = "Input PII", text: str = "inline") -> list[Ruleset]:
    return [
        Ruleset(
            rules=[Rule(metric=metric, operator=RuleOperator.contains, target_value="email")],
            action=OverrideAction(choices=[text]),
        )
    ]


@pytest.fixture
def sdk(live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with galileo_sdk_env(monkeypatch, live.url, live.harness.key("acme", "admin"), tmp_path / "galileo"):
        yield live


def test_sdk_central_stage_with_rulesets_gets_a_response(sdk: LiveServer) -> None:
    galileo_stages.create_protect_stage(
        project_name="acme",
        name="guard",
        stage_type=StageType.central,
        prioritized_rulesets=_rulesets(text="stage"),
    )
    response = galileo_protect.invoke_protect(
        Payload(input=EMAIL_TEXT),
        prioritized_rulesets=_rulesets(text="inline"),
        project_name="acme",
        stage_name="guard",
    )
    assert isinstance(response, GResponse)  # was an HTTPValidationError (422)
    assert response.text == "stage" and "were ignored" in (response.model_extra or {})["notes"][0]


def test_sdk_local_stage_without_rulesets_same_as_direct(sdk: LiveServer, protect: sg.Protect) -> None:
    galileo_stages.create_protect_stage(project_name="acme", name="local-guard")
    served = galileo_protect.invoke_protect(
        Payload(input=EMAIL_TEXT), project_name="acme", stage_name="local-guard"
    )
    assert isinstance(served, GResponse) and served.status == ExecutionStatus.not_triggered
    protect.create_stage("local-guard", project_name="acme")
    direct = protect.invoke(Payload(input=EMAIL_TEXT), project_name="acme", stage_name="local-guard")
    assert direct.status is sg.ExecutionStatus.not_triggered
    assert (served.model_extra or {})["notes"] == direct.notes and direct.notes is not None
    assert "nothing was checked" in direct.notes[0]


def test_sdk_sees_its_metric_spelling(sdk: LiveServer) -> None:
    galileo_stages.create_protect_stage(project_name="acme", name="local-guard")
    rulesets = [*_rulesets("Input PII"), *_rulesets(GalileoMetrics.input_pii_luna), *_rulesets("input_pii")]
    response = galileo_protect.invoke_protect(
        Payload(input=EMAIL_TEXT),
        prioritized_rulesets=rulesets,
        project_name="acme",
        stage_name="local-guard",
    )
    assert isinstance(response, GResponse) and response.text == "inline"
    results = [r["rule_results"][0] for r in (response.model_extra or {})["ruleset_results"]]
    assert [(r["metric"], r.get("canonical_metric")) for r in results] == [
        ("Input PII", "input_pii"),
        ("Input PII (SLM)", "input_pii"),
        ("input_pii", None),
    ]
    assert set((response.model_extra or {})["metric_results"]) == {"input_pii"}


def test_server_inline_rulesets_echo_spelling(harness: Harness) -> None:
    rule = {"metric": "Input PII", "operator": "contains", "target_value": "email"}
    answer = harness.client.post(
        "/protect/invoke",
        json={"payload": {"input": EMAIL_TEXT}, "prioritized_rulesets": [{"rules": [rule]}]},
        headers=harness.headers("acme", "app"),
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()["ruleset_results"][0]["rule_results"][0]
    assert result["metric"] == "Input PII" and result["canonical_metric"] == "input_pii"
    assert "notes" not in answer.json() or answer.json()["notes"] is None

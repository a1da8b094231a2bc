"""Stage creation/update over HTTP warns about rules the declared payload fields can never evaluate."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from _server_support import Harness


def _rulesets(metric: str, operator: str = "gt", target: object = 0.5) -> list[dict[str, Any]]:
    return [{"rules": [{"metric": metric, "operator": operator, "target_value": target}]}]


def test_create_warns_in_response_and_log(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stageguard"):
        stage = harness.create_stage(
            prioritized_rulesets=_rulesets("input_toxicity"), payload_fields=["output"]
        )
    (warning,) = stage["warnings"]
    assert "rules[0]" in warning and "'input_toxicity'" in warning and "lacks input" in warning
    assert any("input_toxicity" in r.getMessage() for r in caplog.records if r.name == "stageguard")
    got = harness.client.get(f"/stages/{stage['id']}", headers=harness.headers()).json()
    assert got["version"] == 1 and got["warnings"] == []


def test_no_declaration_no_warnings_galileo_shape(harness: Harness) -> None:
    stage = harness.create_stage(prioritized_rulesets=_rulesets("context_adherence", "lt", 0.1))
    assert stage["warnings"] == []
    fine = harness.create_stage(
        "fine",
        prioritized_rulesets=_rulesets("context_adherence", "lt", 0.1),
        payload_fields=["input", "output"],
        strict=True,
    )
    assert fine["warnings"] == [] and fine["version"] == 1


def test_strict_is_a_422_naming_the_rule(harness: Harness) -> None:
    pid, h = harness.project_id("acme"), harness.headers()
    body = {
        "name": "strict",
        "type": "central",
        "prioritized_rulesets": _rulesets("output_toxicity"),
        "payload_fields": ["input"],
        "strict": True,
    }
    response = harness.client.post(f"/projects/{pid}/stages", json=body, headers=h)
    assert response.status_code == 422, response.text
    assert "output_toxicity" in response.text and "lacks output" in response.text
    missing = harness.client.get(f"/projects/{pid}/stages", params={"stage_name": "strict"}, headers=h)
    assert missing.status_code == 404


def test_update_warns_and_strict_keeps_version(harness: Harness) -> None:
    stage, h, c = harness.create_stage(), harness.headers(), harness.client
    pid, sid = stage["project_id"], stage["id"]
    body: dict[str, Any] = {
        "prioritized_rulesets": _rulesets("prompt_injection"),
        "payload_fields": ["output"],
    }
    v2 = c.post(f"/projects/{pid}/stages/{sid}", json=body, headers=h)
    assert v2.status_code == 200 and v2.json()["version"] == 2
    assert "prompt_injection" in v2.json()["warnings"][0]
    strict = c.post(f"/stages/{sid}", json={**body, "strict": True}, headers=h)
    assert strict.status_code == 422 and "prompt_injection" in strict.text
    assert c.get(f"/stages/{sid}/versions", headers=h).json()["latest"] == 2


def test_bad_payload_field_is_a_422(harness: Harness) -> None:
    pid, h = harness.project_id("acme"), harness.headers()
    body = {"name": "x", "type": "central", "prioritized_rulesets": _rulesets("input_toxicity")}
    response = harness.client.post(
        f"/projects/{pid}/stages", json={**body, "payload_fields": ["inputs"]}, headers=h
    )
    assert response.status_code == 422 and "payload_fields" in response.text

"""The HTTP API: stages (Galileo's routes and stageguard's), invoke, errors, OpenAPI."""

from __future__ import annotations

from _server_support import EMAIL_TEXT, PII_RULESET, Harness

TOXIC = {"rules": [{"metric": "input_toxicity", "operator": "gt", "target_value": 0.5}]}


def test_stage_lifecycle_over_galileo_routes(harness: Harness) -> None:
    pid, h = harness.project_id("acme"), harness.headers()
    c = harness.client
    stage = harness.create_stage(description="emails")
    assert stage["version"] == 1 and stage["type"] == "central" and stage["paused"] is False
    assert stage["prioritized_rulesets"][0]["description"] == "no emails"
    assert stage["created_by"] and stage["project_id"] == pid

    got = c.get(f"/projects/{pid}/stages", params={"stage_name": "guard"}, headers=h).json()
    assert got["id"] == stage["id"] and got["description"] == "emails"
    assert (
        c.get(f"/projects/{pid}/stages", params={"stage_id": stage["id"]}, headers=h).json()["name"]
        == "guard"
    )

    v2 = c.post(f"/projects/{pid}/stages/{stage['id']}", json={"prioritized_rulesets": [TOXIC]}, headers=h)
    assert v2.status_code == 200 and v2.json()["version"] == 2
    assert v2.json()["prioritized_rulesets"][0]["rules"][0]["metric"] == "input_toxicity"

    v1 = c.get(f"/projects/{pid}/stages", params={"stage_name": "guard", "version": 1}, headers=h).json()
    assert v1["version"] == 1 and v1["prioritized_rulesets"][0]["rules"][0]["metric"] == "input_pii"
    versions = c.get(f"/projects/{pid}/stages/{stage['id']}/versions", headers=h).json()
    assert versions == {"stage_id": stage["id"], "versions": [1, 2], "latest": 2}

    paused = c.put(f"/projects/{pid}/stages/{stage['id']}", params={"pause": "true"}, headers=h).json()
    assert paused["paused"] is True
    resumed = c.put(f"/projects/{pid}/stages/{stage['id']}", params={"pause": False}, headers=h).json()
    assert resumed["paused"] is False
    closed = c.put(f"/stages/{stage['id']}", params={"fail_policy": "fail_closed"}, headers=h).json()
    assert closed["fail_policy"] == "fail_closed" and closed["paused"] is False

    listed = c.get(f"/projects/{pid}/stages/all", headers=h).json()
    assert [s["name"] for s in listed] == ["guard"] and listed[0]["version"] == 2

    deleted = c.delete(f"/projects/{pid}/stages/{stage['id']}", headers=h)
    assert deleted.json() == {"id": stage["id"], "deleted": True}
    missing = c.get(f"/projects/{pid}/stages", params={"stage_name": "guard"}, headers=h)
    assert missing.status_code == 404 and missing.json()["error"] == "stage_not_found"
    assert "guard" in missing.json()["detail"]


def test_id_only_routes(harness: Harness) -> None:
    stage, h, c = harness.create_stage(), harness.headers(), harness.client
    sid = stage["id"]
    assert c.get(f"/stages/{sid}", headers=h).json()["version"] == 1
    assert c.post(f"/stages/{sid}", json={"rulesets": [TOXIC]}, headers=h).json()["version"] == 2
    assert c.get(f"/stages/{sid}", params={"version": 1}, headers=h).json()["version"] == 1
    assert c.get(f"/stages/{sid}/versions", headers=h).json()["versions"] == [1, 2]
    assert c.put(f"/stages/{sid}", params={"pause": "true"}, headers=h).json()["paused"] is True
    assert c.delete(f"/stages/{sid}", headers=h).json()["deleted"] is True
    assert c.get(f"/stages/{sid}", headers=h).status_code == 404


def test_conflicts_and_validation(harness: Harness) -> None:
    pid, h, c = harness.project_id("acme"), harness.headers(), harness.client
    harness.create_stage()
    duplicate = c.post(f"/projects/{pid}/stages", json={"name": "guard", "type": "central"}, headers=h)
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "conflict"
    assert "already exists" in duplicate.json()["detail"]

    local = c.post(f"/projects/{pid}/stages", json={"name": "loc"}, headers=h).json()
    assert local["type"] == "local" and local["version"] is None
    update_local = c.post(f"/stages/{local['id']}", json={"prioritized_rulesets": [TOXIC]}, headers=h)
    assert update_local.status_code == 409 and "local" in update_local.json()["detail"]

    with_rules = c.post(
        f"/projects/{pid}/stages",
        json={"name": "l2", "type": "local", "prioritized_rulesets": [TOXIC]},
        headers=h,
    )
    assert with_rules.status_code == 422
    assert with_rules.json()["detail"][0]["loc"] == ["body", "prioritized_rulesets"]

    bad_rule = {"rules": [{"metric": "input_tone", "operator": "gt", "target_value": 0.5}]}
    bad = c.post(
        f"/projects/{pid}/stages",
        json={"name": "b", "type": "central", "prioritized_rulesets": [bad_rule]},
        headers=h,
    )
    assert bad.status_code == 422
    body = bad.json()
    assert body["error"] == "validation_error" and "input_tone" in body["message"]
    assert "does not support operator 'gt'" in body["detail"][0]["msg"]
    assert "input" not in body["detail"][0]  # pydantic's echo of the input is dropped

    unknown = c.post(
        f"/projects/{pid}/stages",
        json={
            "name": "u",
            "type": "central",
            "prioritized_rulesets": [{"rules": [{"metric": "nope", "operator": "gt"}]}],
        },
        headers=h,
    )
    assert unknown.status_code == 422 and "nope" in unknown.json()["message"]

    mismatch = c.post(f"/projects/{pid}/stages", json={"name": "m", "project_id": "x"}, headers=h)
    assert mismatch.status_code == 422 and mismatch.json()["detail"][0]["loc"] == ["body", "project_id"]

    no_name = c.get(f"/projects/{pid}/stages", headers=h)
    assert no_name.status_code == 422 and "stage_name or stage_id" in no_name.json()["message"]
    nothing = c.put(f"/stages/{local['id']}", headers=h)
    assert nothing.status_code == 422
    bad_version = c.get(f"/stages/{local['id']}", params={"version": 0}, headers=h)
    assert bad_version.status_code == 422
    missing_version = c.get(
        f"/projects/{pid}/stages", params={"stage_name": "guard", "version": 7}, headers=h
    )
    assert missing_version.status_code == 404 and "version 7" in missing_version.json()["detail"]
    assert c.get("/no/such/route", headers=h).json()["error"] == "not_found"


def test_invoke_central_local_paused_pinned(harness: Harness) -> None:
    h, c = harness.headers("acme", "app"), harness.client
    stage = harness.create_stage()
    hit = c.post("/protect/invoke", json={"payload": {"input": EMAIL_TEXT}, "stage_name": "guard"}, headers=h)
    assert hit.status_code == 200
    data = hit.json()
    assert data["status"] == "TRIGGERED" and data["text"] == "blocked"
    assert data["stage_metadata"] == {
        "project_id": stage["project_id"],
        "stage_id": stage["id"],
        "stage_name": "guard",
        "stage_version": 1,
        "stage_type": "central",
    }
    assert (data["action_result"]["type"], data["action_result"]["value"]) == ("OVERRIDE", "blocked")
    assert data["metric_results"]["input_pii"]["status"] == "SUCCESS"

    c.post(f"/stages/{stage['id']}", json={"prioritized_rulesets": [TOXIC]}, headers=harness.headers())
    latest = c.post(
        "/protect/invoke", json={"payload": {"input": EMAIL_TEXT}, "stage_id": stage["id"]}, headers=h
    )
    assert latest.json()["status"] != "TRIGGERED" and latest.json()["stage_metadata"]["stage_version"] == 2
    pinned = c.post(
        "/protect/invoke",
        json={"payload": {"input": EMAIL_TEXT}, "stage_id": stage["id"], "stage_version": 1},
        headers=h,
    )
    assert pinned.json()["text"] == "blocked" and pinned.json()["stage_metadata"]["stage_version"] == 1

    c.put(f"/stages/{stage['id']}", params={"pause": "true"}, headers=harness.headers())
    paused = c.post(
        "/protect/invoke", json={"payload": {"input": EMAIL_TEXT}, "stage_name": "guard"}, headers=h
    )
    assert paused.json()["status"] == "PAUSED" and paused.json()["text"] == EMAIL_TEXT

    harness.client.post(
        f"/projects/{stage['project_id']}/stages", json={"name": "loc"}, headers=harness.headers()
    ).raise_for_status()
    local = c.post(
        "/protect/invoke",
        json={"payload": {"input": EMAIL_TEXT}, "stage_name": "loc", "prioritized_rulesets": [PII_RULESET]},
        headers=h,
    )
    assert local.json()["text"] == "blocked" and local.json()["stage_metadata"]["stage_type"] == "local"


def test_invoke_errors_and_echoes(harness: Harness) -> None:
    h, c = harness.headers("acme", "app"), harness.client
    harness.create_stage()
    missing = c.post("/protect/invoke", json={"payload": {"input": "x"}, "stage_name": "nope"}, headers=h)
    assert missing.status_code == 404 and missing.json()["error"] == "stage_not_found"
    empty = c.post("/protect/invoke", json={"payload": {}, "stage_name": "guard"}, headers=h)
    assert empty.status_code == 422 and "payload" in empty.json()["message"]
    central_with_rules = c.post(
        "/protect/invoke",
        json={"payload": {"input": "x"}, "stage_name": "guard", "prioritized_rulesets": [TOXIC]},
        headers=h,
    )
    # as Galileo: a central stage's own rulesets are used; the ones passed are ignored, and a note says so
    assert central_with_rules.status_code == 200 and "ignored" in central_with_rules.json()["notes"][0]
    echoed = c.post(
        "/protect/invoke",
        json={
            "payload": {"input": "hello"},
            "stage_name": "guard",
            "metadata": {"request": "42"},
            "headers": {"x-trace": "abc", "content-length": "1", "x-bad": "a\r\nb"},
        },
        headers=h,
    )
    assert echoed.status_code == 200 and echoed.json()["metadata"] == {"request": "42"}
    assert echoed.headers["x-trace"] == "abc" and "x-bad" not in echoed.headers
    assert echoed.headers["content-length"] != "1"


def test_health_and_openapi(harness: Harness) -> None:
    assert harness.client.get("/healthcheck").json()["status"] == "ok"
    spec = harness.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/protect/invoke",
        "/projects/{project_id}/stages",
        "/projects/{project_id}/stages/{stage_id}",
        "/projects/{project_id}/stages/all",
        "/projects/{project_id}/stages/{stage_id}/versions",
        "/login/api_key",
    ):
        assert path in paths
    assert set(paths["/projects/{project_id}/stages/{stage_id}"]) == {"get", "post", "put", "delete"}
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert harness.client.get("/docs").status_code == 200


def test_typo_in_a_stage_body_is_a_422_naming_it(harness: Harness) -> None:
    """A misspelt key used to be dropped silently (the stage was created without its description)."""
    c, admin, pid = harness.client, harness.headers(), harness.project_id("acme")
    created = c.post(f"/projects/{pid}/stages", json={"name": "s", "descripton": "x"}, headers=admin)
    assert created.status_code == 422 and "did you mean 'description'" in created.text
    assert c.get(f"/projects/{pid}/stages/all", headers=admin).json() == []  # nothing written
    stage = harness.create_stage()
    updated = c.post(
        f"/projects/{pid}/stages/{stage['id']}", json={"prioritised_rulesets": []}, headers=admin
    )
    assert updated.status_code == 422 and "did you mean 'prioritized_rulesets'" in updated.text
    ok = {"name": "galileo-shaped", "created_by": "00000000-0000-4000-8000-000000000000", "paused": False}
    assert c.post(f"/projects/{pid}/stages", json=ok, headers=admin).status_code == 200

"""Authentication (keys, Galileo's login tokens), roles, and project isolation on every route."""

from __future__ import annotations

import time

import jwt
import pytest
from _server_support import EMAIL_TEXT, PII_RULESET, Harness

from stageguard.server import KeyStore

ROUTES_READ = [
    ("GET", "/projects/{pid}"),
    ("GET", "/projects/{pid}/stages?stage_name=guard"),
    ("GET", "/projects/{pid}/stages?stage_id={sid}"),
    ("GET", "/projects/{pid}/stages/all"),
    ("GET", "/projects/{pid}/stages/{sid}"),
    ("GET", "/projects/{pid}/stages/{sid}/versions"),
    ("GET", "/stages/{sid}"),
    ("GET", "/stages/{sid}/versions"),
]
ROUTES_WRITE = [
    ("POST", "/projects/{pid}/stages"),
    ("POST", "/projects/{pid}/stages/{sid}"),
    ("PUT", "/projects/{pid}/stages/{sid}?pause=true"),
    ("DELETE", "/projects/{pid}/stages/{sid}"),
    ("POST", "/stages/{sid}"),
    ("PUT", "/stages/{sid}?pause=true"),
    ("DELETE", "/stages/{sid}"),
]
BODIES = {
    "POST /projects/{pid}/stages": {"name": "intruder", "type": "central"},
    "POST /projects/{pid}/stages/{sid}": {"prioritized_rulesets": []},
    "POST /stages/{sid}": {"prioritized_rulesets": []},
}


def _call(
    harness: Harness, method: str, route: str, headers: dict[str, str], pid: str, sid: str
) -> tuple[int, dict]:
    body = BODIES.get(f"{method} {route}")
    response = harness.client.request(method, route.format(pid=pid, sid=sid), json=body, headers=headers)
    return response.status_code, response.json()


def test_missing_and_bad_credentials_are_401(harness: Harness) -> None:
    c = harness.client
    for headers in ({}, {"Authorization": "Bearer sgk_not-a-key"}, {"Authorization": "Bearer not.a.jwt"}):
        response = c.get("/projects", headers=headers)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert "missing credentials" in c.get("/stages/x").json()["detail"]
    assert c.post("/protect/invoke", json={"payload": {"input": "x"}, "stage_name": "s"}).status_code == 401
    login = c.post("/login/api_key", json={"api_key": "sgk_wrong"})
    assert login.status_code == 401 and login.json()["detail"] == "invalid API key"
    assert c.post("/login/api_key", json={}).status_code == 422


def test_galileo_login_flow_issues_signed_expiring_tokens(harness: Harness) -> None:
    c, key = harness.client, harness.key("acme", "app")
    token = c.post("/login/api_key", json={"api_key": key}).json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 3600
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600 and claims["iss"] == "stageguard"
    me = c.get("/current_user", headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    assert me["project_name"] == "acme" and me["key_role"] == "app" and me["role"] == "user"
    # the raw key works too, in Authorization or in Galileo's API-key header
    assert c.get("/current_user", headers={"Galileo-API-Key": key}).json()["id"] == me["id"]

    auth = harness.app.state.stageguard.auth
    forged = jwt.encode(
        {**claims, "role": "admin"}, "not-the-secret-but-long-enough-for-hs256!", algorithm="HS256"
    )
    assert c.get("/current_user", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    expired = jwt.encode({**claims, "exp": int(time.time()) - 5}, auth._secret, algorithm="HS256")
    response = c.get("/current_user", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_keys_are_stored_hashed_and_revocable(harness: Harness) -> None:
    key = harness.key("acme", "admin")
    token = harness.client.post("/login/api_key", json={"api_key": key}).json()["access_token"]
    keys: KeyStore = harness.databases.keys
    with keys._engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM sg_api_keys").all())
    assert key not in dump and key[12:] not in dump and key[:12] in dump  # only the prefix is kept
    record = keys.find(key)
    assert record is not None and record.active
    keys.revoke(record.prefix)
    harness.app.state.stageguard.auth.cache_ttl = 0  # the server re-reads keys every few seconds
    for headers in ({"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {token}"}):
        response = harness.client.get("/current_user", headers=headers)
        assert response.status_code == 401 and "revoked" in response.json()["detail"]
    with pytest.raises(LookupError):
        keys.revoke("sgk_nope")


def test_app_keys_read_and_invoke_but_cannot_manage(harness: Harness) -> None:
    stage = harness.create_stage()
    pid, sid, app = stage["project_id"], stage["id"], harness.headers("acme", "app")
    for method, route in ROUTES_READ:
        status, _ = _call(harness, method, route, app, pid, sid)
        assert status == 200, (method, route)
    invoke = harness.client.post(
        "/protect/invoke", json={"payload": {"input": EMAIL_TEXT}, "stage_id": sid}, headers=app
    )
    assert invoke.json()["text"] == "blocked"
    for method, route in ROUTES_WRITE:
        status, body = _call(harness, method, route, app, pid, sid)
        assert status == 403, (method, route)
        assert "role 'app'" in body["detail"] and body["error"] == "forbidden"


@pytest.mark.parametrize("role", ["admin", "app"])
def test_a_key_never_reaches_another_projects_stages(harness: Harness, role: str) -> None:
    stage = harness.create_stage()  # in acme
    pid, sid = stage["project_id"], stage["id"]
    other = harness.headers("globex", role)
    other_pid = harness.project_id("globex")
    for method, route in ROUTES_READ + ROUTES_WRITE:
        # naming acme's project: 403 (writes by app keys may already stop at the role check, also 403)
        status, body = _call(harness, method, route, other, pid, sid)
        if "{pid}" in route:
            assert status == 403, (method, route)
            assert "globex" in body["detail"] or "role 'app'" in body["detail"]
        else:  # by stage id alone: acme's stage does not exist for globex
            assert status == (403 if role == "app" and (method, route) in ROUTES_WRITE else 404), (
                method,
                route,
            )
        # through globex's own project path, acme's stage is just as absent
        if "{sid}" in route and "{pid}" in route:
            status, _ = _call(harness, method, route, other, other_pid, sid)
            assert status in ((403,) if role == "app" and (method, route) in ROUTES_WRITE else (404,)), (
                method,
                route,
            )
    # listings and lookups show only the key's own project
    c = harness.client
    assert [p["name"] for p in c.get("/projects", headers=other).json()] == ["globex"]
    assert c.get("/projects", params={"project_name": "acme"}, headers=other).json() == []
    assert [p["name"] for p in c.get("/projects/all", headers=other).json()] == ["globex"]
    assert c.get(f"/projects/{other_pid}/stages/all", headers=other).json() == []
    # invokes: by name, id, project id or project name
    for body in (
        {"stage_name": "guard", "project_name": "acme"},
        {"stage_name": "guard", "project_id": pid},
        {"stage_id": sid},
        {"stage_id": sid, "project_id": other_pid},
        {"stage_name": "guard"},
    ):
        response = c.post("/protect/invoke", json={"payload": {"input": EMAIL_TEXT}, **body}, headers=other)
        expected = 403 if ("project_name" in body or body.get("project_id") == pid) else 404
        assert response.status_code == expected, body
    # acme's stage is untouched
    assert c.get(f"/stages/{sid}", headers=harness.headers()).json()["version"] == 1
    assert c.post("/projects", json={"name": "new"}, headers=other).status_code == 403


def test_inline_rulesets_need_no_stage(harness: Harness) -> None:
    response = harness.client.post(
        "/protect/invoke",
        json={"payload": {"input": EMAIL_TEXT}, "prioritized_rulesets": [PII_RULESET]},
        headers=harness.headers("acme", "app"),
    )
    assert response.status_code == 200 and response.json()["text"] == "blocked"

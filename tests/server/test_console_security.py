"""The console's login, session and security model, over HTTP (the pages themselves are tested in
test_console_stages.py / test_console_insights.py, and in a real browser in test_console_browser.py)."""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from _server_support import Harness, console_login, csrf_of, make_harness

MARKUP = '<img src=x onerror="alert(1)">'


def _cookie_attributes(set_cookie: str) -> dict[str, str]:
    morsel = next(iter(SimpleCookie(set_cookie).values()))
    return {name: str(value) for name, value in morsel.items() if value}


def test_login_sets_an_httponly_samesite_cookie_scoped_to_the_console(harness: Harness) -> None:
    response = harness.client.post("/console/login", data={"api_key": harness.key()}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/"
    attributes = _cookie_attributes(response.headers["set-cookie"])
    assert attributes["httponly"] is not None
    assert attributes["samesite"].lower() == "strict"
    assert attributes["path"] == "/console/"
    assert int(attributes["max-age"]) == int(harness.settings.token_ttl)
    assert "secure" not in attributes  # plain HTTP on loopback; HTTPS requests get Secure


def test_login_over_https_marks_the_cookie_secure(harness: Harness) -> None:
    response = harness.client.post(
        "https://testserver/console/login", data={"api_key": harness.key()}, follow_redirects=False
    )
    assert response.status_code == 303
    assert "secure" in _cookie_attributes(response.headers["set-cookie"])


@pytest.mark.parametrize("secret", ["", "   ", "sgk_not-a-real-key", "x" * 5000])
def test_a_wrong_key_shows_the_login_page_again_with_the_reason(harness: Harness, secret: str) -> None:
    response = harness.client.post("/console/login", data={"api_key": secret})
    assert response.status_code == 401
    assert 'id="login-error"' in response.text
    assert "sg_console" not in response.headers.get("set-cookie", "")


def test_pages_need_a_session(harness: Harness) -> None:
    response = harness.client.get("/console/")
    assert response.status_code == 401
    assert 'id="login-form"' in response.text
    assert harness.client.get("/console", follow_redirects=False).headers["location"] == "/console/"


def test_every_console_answer_carries_the_security_headers(harness: Harness) -> None:
    answers = [
        harness.client.get("/console/login"),
        harness.client.get("/console/"),  # 401 login page
        harness.client.get("/console/static/console.css"),
        harness.client.get("/console/no-such-page"),
        # the redirect to the console's root (also what /console/. comes to, found by the fuzz test)
        harness.client.get("/console", follow_redirects=False),
        harness.client.get("/console/.", follow_redirects=False),
    ]
    console_login(harness.client, harness.key())
    answers.append(harness.client.get("/console/"))
    for response in answers:
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert answers[3].status_code == 404 and answers[3].headers["content-type"].startswith("text/html")


def test_home_lists_only_the_keys_own_project_with_markup_as_text(harness: Harness) -> None:
    harness.create_stage("mine")
    harness.create_stage("theirs", project="other")
    console_login(harness.client, harness.key(MARKUP, "app"))
    page = harness.client.get("/console/").text
    assert MARKUP not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page  # the project name, escaped
    console_login(harness.client, harness.key())
    page = harness.client.get("/console/").text
    assert ">mine<" in page and "theirs" not in page


def test_logout_needs_the_csrf_token_then_ends_the_session(harness: Harness) -> None:
    console_login(harness.client, harness.key())
    csrf = csrf_of(harness.client.get("/console/").text)
    refused = harness.client.post("/console/logout", data={"csrf": "forged"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert harness.client.get("/console/").status_code == 200  # still logged in
    response = harness.client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303
    assert 'sg_console=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
    harness.client.cookies.clear()
    assert harness.client.get("/console/").status_code == 401


def test_a_csrf_token_is_bound_to_its_session(harness: Harness) -> None:
    console_login(harness.client, harness.key())
    first = csrf_of(harness.client.get("/console/").text)
    console_login(harness.client, harness.key(role="app"))
    second = csrf_of(harness.client.get("/console/").text)
    assert first != second
    assert harness.client.post("/console/logout", data={"csrf": first}).status_code == 403


def test_forms_from_another_origin_are_refused(harness: Harness) -> None:
    refused = harness.client.post(
        "/console/login", data={"api_key": harness.key()}, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403 and "evil.example" in refused.text
    assert "set-cookie" not in refused.headers
    cross_site = harness.client.post(
        "/console/login", data={"api_key": harness.key()}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    same = harness.client.post(
        "/console/login",
        data={"api_key": harness.key()},
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert same.status_code == 303


def test_a_tampered_or_foreign_cookie_is_a_login_page(harness: Harness) -> None:
    console_login(harness.client, harness.key())
    token = harness.client.cookies["sg_console"]
    harness.client.cookies.clear()
    harness.client.cookies.set("sg_console", token[:-3] + "abc")
    response = harness.client.get("/console/")
    assert response.status_code == 401 and "invalid token" in response.text
    harness.client.cookies.clear()
    harness.client.cookies.set("sg_console", harness.key())  # a raw key is not a session
    assert harness.client.get("/console/").status_code == 401


def test_the_api_never_accepts_the_console_cookie(harness: Harness) -> None:
    """The cookie only opens the console: API routes authenticate by header, so no CSRF reaches them."""
    console_login(harness.client, harness.key())
    assert harness.client.get("/console/").status_code == 200
    assert harness.client.get("/projects/all").status_code == 401


def test_a_revoked_key_ends_its_console_sessions(tmp_path: Path) -> None:
    server = make_harness(str(tmp_path / "stages.db"), key_cache_ttl=0.0)
    with server.client:
        key = server.key()
        console_login(server.client, key)
        assert server.client.get("/console/").status_code == 200
        record = server.databases.keys.find(key)
        assert record is not None
        server.databases.keys.revoke(record.id)
        response = server.client.get("/console/")
        assert response.status_code == 401 and "revoked" in response.text
    server.databases.close()


def test_failed_logins_are_limited_per_client_like_the_api(tmp_path: Path) -> None:
    server = make_harness(str(tmp_path / "stages.db"), auth_failure_limit="3/minute")
    with server.client:
        for _ in range(3):
            assert server.client.post("/console/login", data={"api_key": "sgk_wrong"}).status_code == 401
        limited = server.client.post("/console/login", data={"api_key": server.key()})
        assert limited.status_code == 429
        assert limited.headers["content-type"].startswith("text/html")
    server.databases.close()


def test_the_console_can_be_turned_off_without_touching_the_api(tmp_path: Path) -> None:
    server = make_harness(str(tmp_path / "stages.db"), console=False)
    with server.client:
        assert server.client.get("/console/login").status_code == 404
        assert server.client.post("/console/login", data={"api_key": server.key()}).status_code == 404
        assert server.client.get("/projects/all", headers=server.headers()).status_code == 200
    server.databases.close()


def test_the_console_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from stageguard.server import ServerSettings

    monkeypatch.setenv("STAGEGUARD_CONSOLE", "0")
    monkeypatch.setenv("STAGEGUARD_CONSOLE_REPORTS", "/srv/reports")
    settings = ServerSettings.from_env()
    assert settings.console is False and settings.console_reports == "/srv/reports"
    monkeypatch.delenv("STAGEGUARD_CONSOLE")
    assert ServerSettings.from_env().console is True


def test_the_console_is_not_in_the_api_schema(harness: Harness) -> None:
    paths = harness.client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/console")]


def test_links_and_forms_point_into_the_console_even_where_the_api_has_the_same_route_name(
    harness: Harness,
) -> None:
    """The API has a route named ``login`` too (``/login/api_key``): the console's names are its own."""
    login_page = harness.client.get("/console/login").text
    assert 'action="/console/login"' in login_page
    console_login(harness.client, harness.key())
    home = harness.client.get("/console/").text
    assert 'action="/console/logout"' in home and 'href="/console/static/console.css"' in home


def test_a_store_outage_is_the_apis_503_as_a_page(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from stageguard.errors import StoreUnavailableError

    console_login(harness.client, harness.key())

    def down(_project_id: str) -> None:
        raise StoreUnavailableError("the stage database is unreachable")

    monkeypatch.setattr(harness.databases.stages, "list_stages", down)
    response = harness.client.get("/console/")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "unreachable" in response.text and response.headers["content-type"].startswith("text/html")


def test_app_keys_are_refused_changes_with_the_apis_message(harness: Harness) -> None:
    stage = harness.create_stage("guard")
    console_login(harness.client, harness.key(role="app"))
    csrf = csrf_of(harness.client.get("/console/").text)
    refused = harness.client.post(
        f"/console/stages/{stage['id']}/state", data={"csrf": csrf, "pause": "true"}
    )
    api = harness.client.put(
        f"/stages/{stage['id']}", params={"pause": "true"}, headers=harness.headers(role="app")
    )
    assert refused.status_code == api.status_code == 403
    assert api.json()["detail"].replace("'", "&#39;") in refused.text

"""The console's stage pages over HTTP: rulesets shown readably and escaped, versions and their diff,
pause / resume, and new versions from JSON or YAML, with the API's roles, isolation and messages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
import yaml
from _server_support import PII_RULESET, Harness, console_login, csrf_of

from stageguard.server.console._routes_stages import side_by_side

XSS_NAME = "<script>alert(1)</script>"
XSS_TEXT = '"><img src=x onerror=alert(2)>'

TOXIC_RULESET = {
    "rules": [
        {"metric": "input_toxicity", "operator": "gt", "target_value": 0.8},
        {"metric": "input_pii", "operator": "any", "target_value": ["email", "ssn"]},
    ],
    "action": {"type": "OVERRIDE", "choices": ["Let's keep it civil.", "Please rephrase."]},
    "description": "angry and toxic",
}
REDACT_RULESET = {
    "rules": [{"metric": "output_pii", "operator": "not_empty"}],
    "action": {"type": "REDACT", "strategy": "mask"},
    "description": "mask PII in answers",
}
PASSTHROUGH_RULESET = {"rules": [{"metric": "input_tone", "operator": "eq", "target_value": "anger"}]}

# -- a small HTML reader (the standard library's parser): elements by id or class, and their text

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def words(self) -> str:
        return " ".join(self.text.split())

    def all(self, tag: str | None = None, *, cls: str | None = None, id: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if isinstance(child, Element):
                if (
                    (tag is None or child.tag == tag)
                    and (cls is None or cls in child.attrs.get("class", "").split())
                    and (id is None or child.attrs.get("id") == id)
                ):
                    found.append(child)
                found.extend(child.all(tag, cls=cls, id=id))
        return found

    def one(self, tag: str | None = None, *, cls: str | None = None, id: str | None = None) -> Element:
        found = self.all(tag, cls=cls, id=id)
        assert len(found) == 1, f"expected one {tag or ''}#{id or ''}.{cls or ''}, found {len(found)}"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        while len(self.stack) > 1 and self.stack.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def html(text: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(text)
    return builder.root


# -- helpers


def login(harness: Harness, project: str = "acme", role: str = "admin") -> None:
    console_login(harness.client, harness.key(project, role))


def get_page(harness: Harness, path: str, status: int = 200) -> Element:
    response = harness.client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    return html(response.text)


def api_stage(harness: Harness, stage_id: str, project: str = "acme") -> dict[str, Any]:
    response = harness.client.get(f"/stages/{stage_id}", headers=harness.headers(project))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def api_versions(harness: Harness, stage_id: str) -> list[int]:
    response = harness.client.get(f"/stages/{stage_id}/versions", headers=harness.headers())
    assert response.status_code == 200, response.text
    versions: list[int] = response.json()["versions"]
    return versions


def new_version(harness: Harness, stage_id: str, rulesets: list[dict[str, Any]]) -> None:
    response = harness.client.post(
        f"/stages/{stage_id}", json={"prioritized_rulesets": rulesets}, headers=harness.headers()
    )
    assert response.status_code == 200, response.text


def csrf_for(harness: Harness, stage_id: str) -> str:
    return csrf_of(harness.client.get(f"/console/stages/{stage_id}").text)


def textarea(page: Element) -> str:
    """The text of textarea#rulesets as a browser shows it (without the newline after the tag)."""
    return page.one("textarea", id="rulesets").text.removeprefix("\n")


def error_message(response: Any) -> str:
    return html(response.text).one(id="error-message").words


# -- the stage page


def test_stage_page_shows_the_rulesets_readably_in_priority_order(harness: Harness) -> None:
    stage = harness.create_stage(
        "support-bot",
        description="guards the support bot",
        prioritized_rulesets=[TOXIC_RULESET, REDACT_RULESET, PASSTHROUGH_RULESET],
    )
    login(harness)
    page = get_page(harness, f"/console/stages/{stage['id']}")

    assert page.one("h1", id="stage-name").text == "support-bot"
    meta = page.one(id="stage-meta").words
    for expected in ("central", "1 (latest)", "active", "fail_open", "guards the support bot"):
        assert expected in meta
    assert page.one("span", id="stage-state").text == "active"

    sections = page.all("section", cls="ruleset")
    assert [s.one(cls="ruleset-description").words for s in sections] == [
        "angry and toxic",
        "mask PII in answers",
        "no description",
    ]
    rows = [
        [r.one("td", cls=c).words for c in ("metric", "operator", "target")]
        for r in sections[0].all("tr", cls="rule")
    ]
    assert rows == [["input_toxicity", "gt", "0.8"], ["input_pii", "any", "email, ssn"]]
    override = sections[0].one(cls="action")
    assert override.one(cls="action-type").text == "OVERRIDE"
    assert [li.text for li in override.one("ul", cls="choices").all("li")] == [
        "Let's keep it civil.",
        "Please rephrase.",
    ]
    redact = sections[1]
    assert [redact.one("td", cls=c).words for c in ("metric", "operator", "target")] == [
        "output_pii",
        "not_empty",
        "\N{EN DASH}",  # no target
    ]
    assert redact.one(cls="action-type").text == "REDACT"
    assert redact.one(cls="strategy").text == "mask"
    passthrough = sections[2]
    assert passthrough.one("td", cls="target").text == "anger"
    assert "keeps the text" in passthrough.one(cls="action").words

    for link in ("versions-link", "try-link", "activity-link", "edit-link"):
        assert page.one("a", id=link).attrs["href"].startswith(f"/console/stages/{stage['id']}")


def test_an_older_version_is_shown_on_request(harness: Harness) -> None:
    stage = harness.create_stage()
    new_version(harness, stage["id"], [TOXIC_RULESET])
    login(harness)
    latest = get_page(harness, f"/console/stages/{stage['id']}")
    assert latest.one(cls="ruleset-description").text == "angry and toxic"
    old = get_page(harness, f"/console/stages/{stage['id']}?version=1")
    assert old.one(cls="ruleset-description").text == "no emails"
    assert "1 of 2" in old.one(id="stage-meta").words
    missing = get_page(harness, f"/console/stages/{stage['id']}?version=7", status=404)
    assert "version 7 not found" in missing.one(id="error-message").text


def test_markup_in_names_and_descriptions_is_shown_as_text(harness: Harness) -> None:
    ruleset = {**PII_RULESET, "description": XSS_TEXT, "action": {"type": "OVERRIDE", "choices": [XSS_NAME]}}
    stage = harness.create_stage(XSS_NAME, description=XSS_TEXT, prioritized_rulesets=[ruleset])
    new_version(harness, stage["id"], [{**ruleset, "description": XSS_NAME}])
    login(harness)
    for path in ("", "?version=1", "/versions?a=1&b=2", "/edit", "?notice=<script>alert(3)</script>"):
        response = harness.client.get(f"/console/stages/{stage['id']}{path}")
        assert response.status_code == 200, path
        assert "<script>alert" not in response.text and "<img src=x" not in response.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text, path
        assert html(response.text).one("h1", id="stage-name").text.endswith(XSS_NAME)
    page = get_page(harness, f"/console/stages/{stage['id']}?version=1")
    assert page.one(cls="ruleset-description").text == XSS_TEXT
    assert XSS_TEXT in page.one(id="stage-meta").text
    assert page.one("ul", cls="choices").one("li").text == XSS_NAME
    assert not page.all(id="notice")  # the notice text never comes from the query string
    assert (
        "script-src 'self'"
        in harness.client.get(f"/console/stages/{stage['id']}").headers["content-security-policy"]
    )


# -- versions and their diff


def test_versions_page_diffs_two_versions_side_by_side(harness: Harness) -> None:
    stage = harness.create_stage()
    new_version(harness, stage["id"], [{**PII_RULESET, "description": "no emails, ever"}])
    new_version(harness, stage["id"], [{**PII_RULESET, "description": "no emails, ever"}, TOXIC_RULESET])
    login(harness)
    page = get_page(harness, f"/console/stages/{stage['id']}/versions")
    assert [li.words for li in page.one("ul", id="version-list").all("li")] == [
        "Version 3 (latest)",
        "Version 2",
        "Version 1",
    ]
    form = page.one("form", id="diff-form")
    assert [o.attrs["value"] for o in form.one("select", id="a").all("option")] == ["1", "2", "3"]
    assert form.one("select", id="b").all("option")
    assert form.one("button", id="diff-button")
    assert not page.all("table", id="diff")

    page = get_page(harness, f"/console/stages/{stage['id']}/versions?a=1&b=2")
    assert page.one("h2", id="diff-title").text == "Version 1 → version 2"
    table = page.one("table", id="diff")
    changed = table.all("tr", cls="changed")
    assert len(changed) == 1
    assert changed[0].one("td", cls="left").text.strip() == '"description": "no emails",'
    assert changed[0].one("td", cls="right").text.strip() == '"description": "no emails, ever",'
    assert (
        table.all("tr", cls="same")
        and not table.all("tr", cls="added")
        and not table.all("tr", cls="removed")
    )

    page = get_page(harness, f"/console/stages/{stage['id']}/versions?a=2&b=3")
    table = page.one("table", id="diff")
    added = table.all("tr", cls="added")
    assert any('"input_toxicity"' in row.one("td", cls="right").text for row in added)
    assert all(row.one("td", cls="left").text == "" for row in added)

    page = get_page(harness, f"/console/stages/{stage['id']}/versions?a=3&b=2")
    assert page.one("table", id="diff").all("tr", cls="removed")


@pytest.mark.parametrize("query", ["a=1&b=9", "a=9&b=1"])
def test_diff_with_an_unknown_version_is_a_404_page(harness: Harness, query: str) -> None:
    stage = harness.create_stage()
    login(harness)
    page = get_page(harness, f"/console/stages/{stage['id']}/versions?{query}", status=404)
    assert "version 9 not found" in page.one(id="error-message").text
    assert get_page(harness, f"/console/stages/{stage['id']}/versions?a=0&b=1", status=422)


def test_side_by_side_pairs_replaced_lines_and_marks_the_rest() -> None:
    rows = side_by_side(["a", "b", "c", "e"], ["a", "B", "c", "d", "e", "f"])
    assert [(r.kind, r.left, r.right) for r in rows] == [
        ("same", "a", "a"),
        ("changed", "b", "B"),
        ("same", "c", "c"),
        ("added", None, "d"),
        ("same", "e", "e"),
        ("added", None, "f"),
    ]
    assert [(r.left_no, r.right_no) for r in rows] == [(1, 1), (2, 2), (3, 3), (None, 4), (4, 5), (None, 6)]
    assert [r.kind for r in side_by_side(["x", "y", "z"], ["X"])] == ["changed", "removed", "removed"]


# -- pause / resume


def test_admin_pauses_and_resumes_the_stage(harness: Harness) -> None:
    stage = harness.create_stage()
    login(harness)
    page = get_page(harness, f"/console/stages/{stage['id']}")
    form = page.one("form", id="pause-form")
    assert form.attrs["action"] == f"/console/stages/{stage['id']}/state"
    assert {i.attrs["name"]: i.attrs["value"] for i in form.all("input")}["pause"] == "true"
    assert form.one("button", id="pause")

    csrf = csrf_for(harness, stage["id"])
    response = harness.client.post(
        form.attrs["action"], data={"csrf": csrf, "pause": "true"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/stages/{stage['id']}?notice=paused"
    assert api_stage(harness, stage["id"])["paused"] is True
    page = get_page(harness, response.headers["location"])
    assert page.one("p", id="notice").text.startswith("Stage paused")
    assert page.one("span", id="stage-state").text == "paused"
    assert page.one("button", id="resume") and not page.all("form", id="pause-form")

    response = harness.client.post(
        f"/console/stages/{stage['id']}/state", data={"csrf": csrf, "pause": "false"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert api_stage(harness, stage["id"])["paused"] is False
    page = get_page(harness, response.headers["location"])
    assert page.one("p", id="notice").text.startswith("Stage resumed")
    assert page.one("span", id="stage-state").text == "active"


def test_app_key_sees_no_change_forms_and_cannot_pause(harness: Harness) -> None:
    stage = harness.create_stage()
    login(harness, role="app")
    page = get_page(harness, f"/console/stages/{stage['id']}")
    assert "role app" in page.one("p", id="read-only").text
    assert not page.all("form", id="pause-form") and not page.all("form", id="resume-form")
    assert not page.all(id="edit-link")

    csrf = csrf_for(harness, stage["id"])
    response = harness.client.post(
        f"/console/stages/{stage['id']}/state", data={"csrf": csrf, "pause": "true"}
    )
    assert response.status_code == 403
    api = harness.client.put(f"/stages/{stage['id']}?pause=true", headers=harness.headers(role="app"))
    assert api.status_code == 403
    assert "needs an 'admin' key" in error_message(response)
    assert api_stage(harness, stage["id"])["paused"] is False


def test_changes_need_the_csrf_token_and_the_console_origin(harness: Harness) -> None:
    stage = harness.create_stage()
    login(harness)
    csrf = csrf_for(harness, stage["id"])
    path = f"/console/stages/{stage['id']}"
    edit = {"format": "json", "rulesets": json.dumps([TOXIC_RULESET])}
    refused = [
        (f"{path}/state", {"pause": "true"}, {}),
        (f"{path}/state", {"pause": "true", "csrf": "0" * len(csrf)}, {}),
        (f"{path}/state", {"pause": "true", "csrf": csrf}, {"Origin": "https://evil.example"}),
        (f"{path}/edit", edit, {}),
        (f"{path}/edit", {**edit, "csrf": csrf + "0"}, {}),
        (f"{path}/edit", {**edit, "csrf": csrf}, {"Origin": "https://evil.example"}),
    ]
    for url, data, headers in refused:
        response = harness.client.post(url, data=data, headers=headers)
        assert response.status_code == 403, (url, data, headers)
        assert "CSRF" in error_message(response) or "evil.example" in error_message(response)
    assert api_stage(harness, stage["id"])["paused"] is False
    assert api_versions(harness, stage["id"]) == [1]


def test_another_projects_stage_is_not_found(harness: Harness) -> None:
    theirs = harness.create_stage("theirs", project="other")
    login(harness)
    csrf = csrf_of(harness.client.get("/console/").text)
    path = f"/console/stages/{theirs['id']}"
    for url in (path, f"{path}/versions", f"{path}/versions?a=1&b=1", f"{path}/edit"):
        response = harness.client.get(url)
        assert response.status_code == 404, url
        assert "not found in project 'acme'" in error_message(response)
    pause = harness.client.post(f"{path}/state", data={"csrf": csrf, "pause": "true"})
    edit = harness.client.post(f"{path}/edit", data={"csrf": csrf, "format": "json", "rulesets": "[]"})
    assert pause.status_code == edit.status_code == 404
    assert api_stage(harness, theirs["id"], project="other")["paused"] is False
    assert api_stage(harness, theirs["id"], project="other")["version"] == 1


# -- a new version from JSON or YAML


def post_edit(harness: Harness, stage_id: str, text: str, fmt: str = "json") -> Any:
    data = {"csrf": csrf_for(harness, stage_id), "format": fmt, "rulesets": text}
    return harness.client.post(f"/console/stages/{stage_id}/edit", data=data, follow_redirects=False)


def test_edit_creates_a_new_version_from_json_or_yaml(harness: Harness) -> None:
    stage = harness.create_stage()
    login(harness)
    page = get_page(harness, f"/console/stages/{stage['id']}/edit")
    text = textarea(page)
    assert json.loads(text) == api_stage(harness, stage["id"])["prioritized_rulesets"]
    assert page.one("select", id="format") and page.one("button", id="save")

    rulesets = [*json.loads(text), TOXIC_RULESET]
    response = post_edit(harness, stage["id"], json.dumps(rulesets))
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/console/stages/{stage['id']}?version=2&notice=created"
    assert api_versions(harness, stage["id"]) == [1, 2]
    assert api_stage(harness, stage["id"])["prioritized_rulesets"][1]["description"] == "angry and toxic"
    page = get_page(harness, response.headers["location"])
    assert page.one("p", id="notice").text == "New version 2 created."
    assert len(page.all("section", cls="ruleset")) == 2

    as_yaml = yaml.safe_dump({"prioritized_rulesets": [REDACT_RULESET]}, sort_keys=False)
    response = post_edit(harness, stage["id"], as_yaml, "yaml")
    assert response.status_code == 303, response.text
    assert api_versions(harness, stage["id"]) == [1, 2, 3]
    latest = api_stage(harness, stage["id"])
    assert [r["description"] for r in latest["prioritized_rulesets"]] == ["mask PII in answers"]
    action = latest["prioritized_rulesets"][0]["action"]
    assert (action["type"], action["strategy"]) == ("REDACT", "mask")


INVALID_BODIES: list[Any] = [
    [{"rules": [{"metric": "no_such_metric", "operator": "gt", "target_value": 0.5}]}],
    [{"rules": [{"metric": "input_toxicity", "operator": "contains", "target_value": 0.5}]}],
    [{"rules": [{"metric": "input_toxicity", "operator": "gt", "target_value": 5}]}],
    [{"rules": [{"metric": "input_pii", "operator": "contains", "target_value": "emails"}]}],
    [{"rules": []}],
    [{**PII_RULESET, "action": {"type": "OVERRIDE"}}],
    [{**PII_RULESET, "action": {"type": "REDACT", "strategy": "shred"}}],
    {"prioritized_rulesets": [PII_RULESET], "descripton": "typo"},
    "just a string",
]


def test_invalid_rulesets_are_refused_with_the_apis_messages(harness: Harness) -> None:
    stage = harness.create_stage()
    login(harness)
    for body in INVALID_BODIES:
        api_body = {"prioritized_rulesets": body} if isinstance(body, list) else body
        api = harness.client.post(f"/stages/{stage['id']}", json=api_body, headers=harness.headers())
        assert api.status_code == 422, body
        expected = [(".".join(map(str, p["loc"])), p["msg"]) for p in api.json()["detail"]]
        for fmt, text in (("json", json.dumps(body, indent=2)), ("yaml", yaml.safe_dump(body))):
            response = post_edit(harness, stage["id"], text, fmt)
            assert response.status_code == 422, (body, fmt)
            page = html(response.text)
            shown = [
                (li.one(cls="loc").text, li.one(cls="msg").text)
                for li in page.one("ul", id="errors").all("li")
            ]
            assert shown == expected, (body, fmt)
            assert textarea(page) == text  # kept as typed
            selected = [
                o.attrs["value"]
                for o in page.one("select", id="format").all("option")
                if "selected" in o.attrs
            ]
            assert selected == [fmt]
    assert api_versions(harness, stage["id"]) == [1]


def test_text_that_does_not_parse_is_explained(harness: Harness) -> None:
    stage = harness.create_stage()
    login(harness)
    cases = [
        ("json", '[{"rules": [}]', "not valid JSON: Expecting value at line 1 column 13"),
        ("yaml", "- rules: [\n", "not valid YAML"),
        ("toml", "[]", "format must be json or yaml, not 'toml'"),
    ]
    for fmt, text, message in cases:
        response = post_edit(harness, stage["id"], text, fmt)
        assert response.status_code == 422, fmt
        page = html(response.text)
        assert message in page.one("ul", id="errors").words
        assert textarea(page) == text
    assert api_versions(harness, stage["id"]) == [1]


def test_app_key_cannot_open_or_post_the_edit_page(harness: Harness) -> None:
    stage = harness.create_stage()
    login(harness, role="app")
    response = harness.client.get(f"/console/stages/{stage['id']}/edit")
    assert response.status_code == 403
    assert "needs an 'admin' key" in error_message(response)
    response = post_edit(harness, stage["id"], json.dumps([TOXIC_RULESET]))
    assert response.status_code == 403
    assert api_versions(harness, stage["id"]) == [1]


def test_local_stage_has_no_versions_to_diff_or_edit(harness: Harness) -> None:
    stage = harness.create_stage("local-guard", type="local", prioritized_rulesets=[])
    login(harness)
    page = get_page(harness, f"/console/stages/{stage['id']}")
    assert "local stage" in page.one(id="stage-meta").words
    assert not page.all(id="edit-link") and page.all("p", id="no-rulesets")
    page = get_page(harness, f"/console/stages/{stage['id']}/versions")
    assert "no versions" in page.one(id="no-versions").text
    api = harness.client.post(
        f"/stages/{stage['id']}", json={"prioritized_rulesets": []}, headers=harness.headers()
    )
    response = post_edit(harness, stage["id"], "[]")
    assert response.status_code == api.status_code == 409
    assert html(response.text).one("ul", id="errors").one(cls="msg").text == api.json()["detail"]

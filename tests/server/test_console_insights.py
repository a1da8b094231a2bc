"""The console's insight pages over HTTP: the try-it form, the decision-log activity page and the
evaluation reports (``stageguard eval --save``)."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _server_support import EMAIL_TEXT, PII_RULESET, Harness, console_login, csrf_of, make_harness
from markupsafe import escape

from stageguard import Protect
from stageguard._version import __version__
from stageguard.cli import main as cli_main
from stageguard.server._decision_log import read_decisions
from stageguard.server.console._charts import Series, rate_chart
from stageguard.store.sqlite import SQLiteStageStore

MARKUP = '<img src=x onerror="alert(1)">'
ESCAPED = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"
TOXIC = {
    "rules": [{"metric": "input_toxicity", "operator": "gt", "target_value": 0.5}],
    "action": {"type": "OVERRIDE", "choices": ["be nice"]},
    "description": "toxic",
}
INSULT = "you are a worthless idiot and I hate you"


def _rows(page: str, row_class: str) -> list[list[str]]:
    """The cells' texts of the ``<tr class=row_class>`` rows of a page."""
    rows = re.findall(rf'<tr class="{row_class}"[^>]*>(.*?)</tr>', page, re.S)
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in rows
    ]


def _try(h: Harness, stage_id: str, query: str = "", **fields: str) -> Any:
    form = h.client.get(f"/console/stages/{stage_id}/try{query}")
    assert form.status_code == 200, form.text
    data = {"csrf": csrf_of(form.text), "input": "", "output": "", "context": "", **fields}
    return h.client.post(f"/console/stages/{stage_id}/try{query}", data=data)


def _invoke(h: Harness, text: str, **body: Any) -> None:
    response = h.client.post(
        "/protect/invoke",
        json={"payload": {"input": text}, "stage_name": "guard", **body},
        headers=h.headers(),
    )
    assert response.status_code == 200, response.text


def _flushed(h: Harness) -> int:
    """Wait for the decision log's writer; how many decisions of stage ``guard`` it holds."""
    log = h.databases.decisions
    assert log is not None and log.flush()
    assert h.databases.sql is not None
    return len(read_decisions(h.databases.sql, "guard", time.time() - 3600))


# -- try it ------------------------------------------------------------------------------------------


def test_try_it_runs_the_stored_stage_and_writes_nothing_to_the_log(logged: Harness) -> None:
    stage = logged.create_stage()
    console_login(logged.client, logged.key())
    form = logged.client.get(f"/console/stages/{stage['id']}/try")
    for element in ('id="try-form"', 'id="input"', 'id="output"', 'id="context"', 'id="run"'):
        assert element in form.text
    assert 'id="rulesets-json"' not in form.text  # a central stage runs its own rulesets

    page = _try(logged, stage["id"], input=EMAIL_TEXT).text
    assert '<span id="status" class="status-triggered">triggered</span>' in page
    assert '<pre id="action-result">blocked</pre>' in page and 'id="action-type">OVERRIDE<' in page
    assert _rows(page, "ruleset-result") == [["no emails", "triggered", "yes", "OVERRIDE"]]
    assert _rows(page, "rule-result") == [
        ["no emails", "input_pii", "contains", "email", '["email"]', "yes (triggered)"]
    ]
    assert _rows(page, "metric-result")[0][:3] == ["input_pii", '["email"]', "success"]
    assert f">{EMAIL_TEXT}</textarea>" in page  # the form keeps what was typed

    clean = _try(logged, stage["id"], input="hello there").text
    assert 'class="status-not_triggered"' in clean and _rows(clean, "ruleset-result")[0][2] == "no"

    assert _flushed(logged) == 0  # nothing logged by the console...
    _invoke(logged, EMAIL_TEXT)
    assert _flushed(logged) == 1  # ...while a real invoke is


def test_try_it_notifies_no_subscription(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trying a payload must not page anyone: the webhooks of a triggered ruleset are not called."""
    delivered: list[list[str]] = []
    delivery = harness.app.state.stageguard.protect.engine.subscriptions
    monkeypatch.setattr(delivery, "deliver", lambda urls, body: delivered.append(list(urls)) or [])
    subscribed = {
        **PII_RULESET,
        "action": {
            **PII_RULESET["action"],
            "subscriptions": [{"statuses": ["triggered"], "url": "https://hooks.example.com/stageguard"}],
        },
    }
    stage = harness.create_stage(prioritized_rulesets=[subscribed])
    console_login(harness.client, harness.key())
    page = _try(harness, stage["id"], input=EMAIL_TEXT).text
    assert '<span id="status" class="status-triggered">triggered</span>' in page
    assert delivered == []
    _invoke(harness, EMAIL_TEXT)  # the same payload through the API notifies the subscription
    assert delivered == [["https://hooks.example.com/stageguard"]]


def test_try_it_runs_a_version_and_shows_a_paused_stage_as_paused(harness: Harness) -> None:
    stage = harness.create_stage()
    update = harness.client.post(
        f"/stages/{stage['id']}", json={"prioritized_rulesets": [TOXIC]}, headers=harness.headers()
    )
    assert update.json()["version"] == 2
    console_login(harness.client, harness.key())
    v1 = _try(harness, stage["id"], "?version=1", input=EMAIL_TEXT).text
    assert 'class="status-triggered"' in v1 and _rows(v1, "ruleset-result")[0][0] == "no emails"
    assert f"<footer>stageguard {__version__}</footer>" in v1  # the stage's version doesn't shadow it
    latest = _try(harness, stage["id"], input=EMAIL_TEXT).text
    assert 'class="status-not_triggered"' in latest and _rows(latest, "ruleset-result")[0][0] == "toxic"

    paused = harness.client.put(f"/stages/{stage['id']}?pause=true", headers=harness.headers())
    assert paused.status_code == 200, paused.text
    page = _try(harness, stage["id"], input=EMAIL_TEXT).text
    assert '<span id="status" class="status-paused">paused</span>' in page
    assert f'<pre id="action-result">{EMAIL_TEXT}</pre>' in page  # let through unchanged


def test_try_it_on_a_local_stage_uses_the_rulesets_typed(harness: Harness) -> None:
    stage = harness.create_stage("local-guard", type="local", prioritized_rulesets=[])
    console_login(harness.client, harness.key("acme", "app"))  # app keys may run it: it changes nothing
    assert 'id="rulesets-json"' in harness.client.get(f"/console/stages/{stage['id']}/try").text
    rulesets = json.dumps({"prioritized_rulesets": [TOXIC]})
    page = _try(harness, stage["id"], input=INSULT, rulesets=rulesets).text
    assert 'class="status-triggered"' in page and 'id="action-result">be nice<' in page
    assert _rows(page, "rule-result")[0][:4] == ["toxic", "input_toxicity", "gt", "0.5"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input": "hi", "rulesets": '[{"rules": '}, "rulesets: not valid JSON: Expecting value"),
        ({"input": "hi", "context": '["doc one", '}, "context: not valid JSON: Expecting value"),
        ({"input": "   "}, "payload: payload is empty: set at least one of input, output"),
        (
            {"input": "hi", "rulesets": '[{"rules": [{"metric": "input_pii", "operator": "bogus"}]}]'},
            "operator",
        ),
    ],
)
def test_bad_input_is_a_422_with_the_problems_and_the_text_kept(
    harness: Harness, fields: dict[str, str], message: str
) -> None:
    stage = harness.create_stage("local-guard", type="local", prioritized_rulesets=[])
    console_login(harness.client, harness.key())
    response = _try(harness, stage["id"], **fields)
    assert response.status_code == 422
    errors = re.search(r'<ul id="errors"[^>]*>(.*?)</ul>', response.text, re.S)
    assert errors is not None and message in html.unescape(errors.group(1))
    assert 'id="decision"' not in response.text
    typed = fields.get("rulesets") or fields.get("context")
    if typed:
        assert f">{escape(typed)}</textarea>" in response.text


def test_try_it_needs_the_csrf_token_and_the_keys_own_project(harness: Harness) -> None:
    stage = harness.create_stage()
    theirs = harness.create_stage("theirs", project="other")
    console_login(harness.client, harness.key())
    missing = harness.client.post(f"/console/stages/{stage['id']}/try", data={"input": EMAIL_TEXT})
    assert missing.status_code == 403 and "CSRF token is missing" in missing.text
    assert 'id="decision"' not in missing.text
    assert harness.client.get(f"/console/stages/{theirs['id']}/try").status_code == 404
    csrf = csrf_of(harness.client.get(f"/console/stages/{stage['id']}/try").text)
    other = harness.client.post(
        f"/console/stages/{theirs['id']}/try", data={"csrf": csrf, "input": EMAIL_TEXT}
    )
    assert other.status_code == 404 and "not found in project 'acme'" in html.unescape(other.text)
    assert harness.client.get(f"/console/stages/{theirs['id']}/activity").status_code == 404
    harness.client.cookies.clear()
    assert harness.client.get(f"/console/stages/{stage['id']}/try").status_code == 401  # login page


def test_try_it_shows_markup_in_results_as_text(harness: Harness) -> None:
    ruleset = {**TOXIC, "description": MARKUP, "action": {"type": "OVERRIDE", "choices": [MARKUP]}}
    stage = harness.create_stage(MARKUP, prioritized_rulesets=[ruleset])
    console_login(harness.client, harness.key())
    page = _try(harness, stage["id"], input=INSULT).text
    assert 'class="status-triggered"' in page
    assert MARKUP not in page and page.count(ESCAPED) >= 4  # name, ruleset, rule, resulting text


# -- activity ----------------------------------------------------------------------------------------


def test_activity_from_live_and_shadow_invokes(logged: Harness) -> None:
    stage = logged.create_stage()  # v1 blocks e-mail addresses; v2 (shadow) insults
    update = logged.client.post(
        f"/stages/{stage['id']}", json={"prioritized_rulesets": [TOXIC]}, headers=logged.headers()
    )
    assert update.json()["version"] == 2
    for text in (EMAIL_TEXT, "hello there, how are you?", INSULT, EMAIL_TEXT):
        _invoke(logged, text, stage_version=1)
        _invoke(logged, text, stage_version=2, shadow=True)
    assert _flushed(logged) == 8
    console_login(logged.client, logged.key("acme", "app"))
    page = logged.client.get(f"/console/stages/{stage['id']}/activity").text

    chart = re.search(r'<svg id="trigger-chart" class="chart".*?</svg>', page, re.S)
    assert chart is not None
    assert ">toxic</text>" in chart.group(0)  # legend: the current version's ruleset...
    assert ">no emails</text>" in chart.group(0)  # ...and the one that triggered live
    assert 'data-series="no emails"' in chart.group(0) and "<polyline" in chart.group(0)
    assert _rows(page, "trigger-count") == [
        ["v1", "live", "no emails", "2", "50.0%"],
        ["v2", "shadow", "toxic", "1", "25.0%"],
    ]
    status_mix = _rows(page, "status-row")
    assert status_mix[0][:3] == ["v1", "live", "4"]
    assert "2 (50%)" in status_mix[0] and "status-triggered" in page
    assert status_mix[1][:3] == ["v2", "shadow", "4"]
    latency = _rows(page, "latency-row")
    assert [row[:3] for row in latency] == [["v1", "live", "4"], ["v2", "shadow", "4"]]
    assert all(re.fullmatch(r"\d+\.\d", cell) for row in latency for cell in row[3:])
    assert sorted(_rows(page, "shadow-change")) == [
        ["v2", "4", "3", "would let through: no emails (live v1)", "2"],
        ["v2", "4", "3", "would trigger: toxic", "1"],
    ]
    assert " style=" not in page and "<script" not in page  # the CSP allows neither

    bad = logged.client.get(f"/console/stages/{stage['id']}/activity?since=forever")
    assert bad.status_code == 422 and "not a duration" in bad.text


def test_activity_summarises_at_most_the_newest_decisions(
    logged: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy stage's month of decisions can't take the server's memory: the page reads a bounded
    number, the newest, and says so."""
    from stageguard.server.console import _routes_insights

    monkeypatch.setattr(_routes_insights, "MAX_DECISIONS", 3)
    stage = logged.create_stage()
    for text in (EMAIL_TEXT, EMAIL_TEXT, "hello", "hi", "hey"):
        _invoke(logged, text)
    assert _flushed(logged) == 5
    console_login(logged.client, logged.key())
    page = logged.client.get(f"/console/stages/{stage['id']}/activity").text
    assert 'id="truncated"' in page and "Only the newest 3 decisions" in page
    assert _rows(page, "status-row")[0][:3] == ["v1", "live", "3"]
    assert 'data-status="triggered"' not in page  # the two triggered ones were the oldest
    monkeypatch.setattr(_routes_insights, "MAX_DECISIONS", 100)
    full = logged.client.get(f"/console/stages/{stage['id']}/activity").text
    assert 'id="truncated"' not in full and _rows(full, "status-row")[0][:3] == ["v1", "live", "5"]
    assert 'data-status="triggered"' in full


def test_activity_without_decisions(logged: Harness) -> None:
    stage = logged.create_stage()
    console_login(logged.client, logged.key())
    empty = logged.client.get(f"/console/stages/{stage['id']}/activity").text
    assert 'id="no-decisions"' in empty and 'id="trigger-chart"' not in empty


def test_activity_with_the_log_off(harness: Harness) -> None:
    stage = harness.create_stage()
    console_login(harness.client, harness.key())
    page = harness.client.get(f"/console/stages/{stage['id']}/activity").text
    assert 'id="log-off"' in page and "STAGEGUARD_DECISION_LOG=1" in page


def test_the_chart_escapes_its_texts_and_has_no_style() -> None:
    chart = rate_chart("c", f"title {MARKUP}", ["01-01 <b>", "01-02"], [Series(MARKUP, [0.5, None])])
    assert MARKUP not in chart and "<b>" not in chart and "onerror=&#34;" in chart
    assert "style" not in chart and chart.count("<circle") == 1  # no dot where there is no value


# -- reports -----------------------------------------------------------------------------------------


@pytest.fixture
def reports(tmp_path: Path) -> Iterator[tuple[Harness, Path]]:
    """A server listing the reports of ``tmp_path/reports`` (SQLite: the pages read files, not the
    database); acme's folder holds a real ``stageguard eval --save`` result."""
    folder = tmp_path / "reports" / "acme"
    protect = Protect(SQLiteStageStore(str(tmp_path / "eval.db")))
    protect.create_stage("guard", stage_type="central", prioritized_rulesets=[TOXIC])
    protect.close()
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"input": INSULT, "expected": "block"})
        + "\n"
        + json.dumps({"input": "hi", "expected": "allow"})
        + "\n"
    )
    code = cli_main(
        [
            "--db",
            str(tmp_path / "eval.db"),
            "eval",
            str(rows),
            "--stage",
            "guard",
            "--save",
            str(folder / "guard-v1.json"),
        ]
    )
    assert code == 0
    server = make_harness(str(tmp_path / "server.db"), console_reports=str(tmp_path / "reports"))
    with server.client:
        yield server, folder
    server.databases.close()


def test_eval_save_writes_the_json_result_with_its_tables(reports: tuple[Harness, Path]) -> None:
    _, folder = reports
    assert [p.name for p in folder.iterdir()] == ["guard-v1.json"]  # no temporary file left
    data = json.loads((folder / "guard-v1.json").read_text())
    assert data["stage"] == "guard" and data["rows"] == 2 and data["gates"] == {"failed": []}
    assert data["precision"] == 1.0 and data["recall"] == 1.0
    assert data["tables"][0]["title"] == "stage guard" and data["tables"][0]["header"] == ["", "v1"]
    assert len(data["row_outcomes"]) == 2


def test_reports_list_and_page(reports: tuple[Harness, Path]) -> None:
    server, folder = reports
    (folder / "notes.txt").write_text("not a report")
    (folder / ".guard-v2.json.123.tmp").write_text("{")
    (folder / "broken.json").write_text("{")
    console_login(server.client, server.key("acme", "app"))
    listing = server.client.get("/console/reports").text
    names = re.findall(r'<a class="report-link" href="/console/reports/([^"]+)">', listing)
    assert sorted(names) == ["broken.json", "guard-v1.json"]
    listed = {row[0]: row for row in _rows(listing, "report")}
    assert listed["guard-v1.json"][2:] == ["guard", "1", "\N{EN DASH}", "2", "100.0%", "100.0%", "0.0%"]
    assert "not readable as JSON" in listed["broken.json"][2]

    page = server.client.get("/console/reports/guard-v1.json")
    assert page.status_code == 200
    assert 'id="report-stage">guard<' in page.text
    assert "<h2>rulesets and rules, v1</h2>" in page.text and "toxic: input_toxicity gt 0.5" in page.text
    assert server.client.get("/console/reports/broken.json").status_code == 422


@pytest.mark.parametrize(
    "name",
    [
        "..%2Fserver.db",
        "../server.db",
        "%2E%2E%2Facme%2Fguard-v1.json",
        "notes.txt",
        "missing.json",
        ".hidden.json",
    ],
)
def test_only_listed_reports_are_served(reports: tuple[Harness, Path], name: str) -> None:
    server, folder = reports
    (folder / "notes.txt").write_text("{}")
    (folder / ".hidden.json").write_text('{"rows": 1}')
    (folder.parent / "outside.json").write_text('{"rows": 1}')
    console_login(server.client, server.key())
    response = server.client.get(f"/console/reports/{name}")
    assert response.status_code == 404
    assert "outside" not in server.client.get("/console/reports").text


def test_reports_are_per_project_and_escaped(reports: tuple[Harness, Path]) -> None:
    server, folder = reports
    other = folder.parent / server.project_id("other")  # a project's folder may be named by its id
    other.mkdir()
    report = {
        "stage": MARKUP,
        "version": 3,
        "rows": 1,
        "precision": None,
        "gates": {"failed": [MARKUP]},
        "tables": [{"title": MARKUP, "header": [MARKUP], "rows": [[MARKUP]]}],
        "diff": {"changed": 1, "rows": [{"row": 1, "change": "newly_triggered", "cause": MARKUP}]},
        "row_outcomes": [{"row": 2, "error": MARKUP}],
    }
    (other / "xss.json").write_text(json.dumps(report))
    console_login(server.client, server.key("other", "app"))
    listing = server.client.get("/console/reports").text
    assert "xss.json" in listing and "guard-v1.json" not in listing and MARKUP not in listing
    page = server.client.get("/console/reports/xss.json").text
    assert MARKUP not in page and page.count(ESCAPED) >= 6
    assert server.client.get("/console/reports/guard-v1.json").status_code == 404  # acme's

    console_login(server.client, server.key("acme"))
    assert server.client.get("/console/reports/xss.json").status_code == 404


def test_reports_without_a_directory(harness: Harness) -> None:
    console_login(harness.client, harness.key())
    page = harness.client.get("/console/reports")
    assert page.status_code == 200 and 'id="no-reports-dir"' in page.text
    assert harness.client.get("/console/reports/x.json").status_code == 404

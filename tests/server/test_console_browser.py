"""The web console in a real browser: Debian's Chromium driven by Selenium through Debian's chromedriver.

One headless browser and one live server (uvicorn on loopback, SQLite) serve the whole module. Without
``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (``apt-get install chromium chromium-driver``) the
tests are skipped, unless ``STAGEGUARD_REQUIRE_BROWSER=1`` (``.ci/run`` sets it): then they fail. Selenium
Manager never downloads a driver (``SE_OFFLINE=true``).

The tests find elements by the ids and classes the console's templates give them (the pages' contract).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from _server_support import EMAIL_TEXT, PII_RULESET, Harness, LiveServer, make_harness, start_live

from stageguard import __version__

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver import Chrome as WebDriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    HAVE_SELENIUM = True
except ImportError:  # the dev extra installs selenium; without it the tests skip (or fail when required)
    HAVE_SELENIUM = False

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REQUIRE_ENV = "STAGEGUARD_REQUIRE_BROWSER"
# Headless, and nothing that reaches the network or needs a GPU, a sandbox or a big /dev/shm.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
LAPTOP = (1280, 900)
PHONE = (390, 844)
WAIT = 15  # seconds for a page to load after a click (the machine may be busy)

XSS_NAME = "<img src=x onerror=window.__xss=1>"
XSS_DESCRIPTION = "<script>window.__xss=1</script>"
# Version 2 of the stage "guard": the same rule, another description (the diff shows the changed line).
PII_RULESET_V2 = {**PII_RULESET, "description": "block e-mail addresses"}


def browser_problem() -> str | None:
    """Why no browser can be driven here (``None`` when Selenium, Chromium and its driver are installed)."""
    if not HAVE_SELENIUM:
        return "selenium is not installed (pip install -e '.[dev]')"
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        return f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver"
    return None


def chromium(profile: Path, size: tuple[int, int] = LAPTOP) -> WebDriver:
    """Headless Chromium with a fresh profile in ``profile``, its console messages kept for get_log()."""
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def set_viewport(driver: WebDriver, size: tuple[int, int]) -> None:
    """Make the page's viewport ``size`` (the window is bigger by the browser's own bars)."""
    driver.set_window_size(*size)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(2 * size[0] - inner[0], 2 * size[1] - inner[1])


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    problem = browser_problem()
    if problem:
        _unavailable(problem)
    profile = tempfile.mkdtemp(prefix="sg-chromium-")
    try:
        try:
            browser = chromium(Path(profile))
        except WebDriverException as exc:
            _unavailable(f"Chromium did not start: {exc.msg}")
        yield browser
        browser.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Console:
    """The live server and what the tests seeded in it."""

    live: LiveServer
    admin: str  # API keys of project "acme"
    app: str
    guard: str  # stage ids: "guard" has two versions, the other one has markup in its name
    xss: str

    @property
    def harness(self) -> Harness:
        return self.live.harness

    def url(self, path: str = "") -> str:
        return f"{self.live.url}/console/{path}"

    def guard_paused(self) -> bool:
        stage = self.harness.databases.stages.get_stage(self.harness.project_id("acme"), stage_id=self.guard)
        assert stage is not None
        return bool(stage.paused)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    harness = make_harness(str(tmp_path_factory.mktemp("console") / "stages.db"))
    with harness.client:
        guard = harness.create_stage("guard", description="PII checks of the support bot")
        version_2 = harness.client.post(
            f"/stages/{guard['id']}",
            json={"prioritized_rulesets": [PII_RULESET_V2]},
            headers=harness.headers(),
        )
        assert version_2.status_code == 200, version_2.text
        xss = harness.create_stage(
            XSS_NAME, prioritized_rulesets=[{**PII_RULESET, "description": XSS_DESCRIPTION}]
        )
        live = start_live(harness)
        yield Console(live, harness.key("acme", "admin"), harness.key("acme", "app"), guard["id"], xss["id"])
        live.stop()
    harness.databases.close()


# -- helpers


def wait_for(driver: WebDriver, css: str) -> WebElement:
    """The first element matching ``css``, once the page has it."""
    found: WebElement = WebDriverWait(driver, WAIT).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    return found


def click_and_load(driver: WebDriver, element: WebElement) -> None:
    """Click ``element`` (a link or a submit button) and wait until the next page has loaded: a mark left
    on this page's window is gone (asking while the browser navigates may fail: it is asked again)."""
    driver.execute_script("window.sgPageBeforeClick = true")
    element.click()
    WebDriverWait(driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.sgPageBeforeClick && document.readyState === 'complete'")
    )


def _text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _has(driver: WebDriver, css: str) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, css))


def log_in(driver: WebDriver, console_url: str, key: str) -> None:
    """Log in at ``console_url`` (``.../console/``) through the login form, as a person would (a fresh
    session: the old cookies are dropped)."""
    driver.get(console_url + "login")
    driver.delete_all_cookies()
    driver.get(console_url + "login")
    driver.find_element(By.ID, "api-key").send_keys(key)
    click_and_load(driver, driver.find_element(By.ID, "login"))
    body = driver.find_element(By.TAG_NAME, "body").text
    assert driver.find_elements(By.ID, "project-name"), f"not logged in: {driver.current_url}: {body[:300]}"


def _open_stage(driver: WebDriver, console: Console, stage_id: str) -> None:
    driver.get(console.url(f"stages/{stage_id}"))
    wait_for(driver, "h1#stage-name")


def _session_cookie(console: Console, key: str) -> str:
    """The console's session cookie for ``key`` (logged in over HTTP, outside the browser)."""
    response = httpx.post(console.url("login"), data={"api_key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return str(response.cookies["sg_console"])


def _overflows(driver: WebDriver) -> dict[str, Any]:
    sizes: dict[str, Any] = driver.execute_script(
        "return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth}"
    )
    return sizes


# -- the tests


def test_login_with_a_wrong_key_then_the_right_one(driver: WebDriver, console: Console) -> None:
    driver.get(console.url())  # not logged in: the login page
    driver.delete_all_cookies()
    driver.get(console.url())
    form = wait_for(driver, "form#login-form")
    assert form.get_attribute("action") == console.url("login")  # the console's own route, not the API's
    driver.find_element(By.ID, "api-key").send_keys("sgk_not-a-key")
    click_and_load(driver, driver.find_element(By.ID, "login"))
    assert _text(driver, "#login-error")
    assert not _has(driver, "#project-name")

    driver.find_element(By.ID, "api-key").send_keys(console.admin)
    click_and_load(driver, driver.find_element(By.ID, "login"))
    assert _text(driver, "#project-name") == "acme"
    names = [
        link.text for link in driver.find_elements(By.CSS_SELECTOR, "table#stages tr.stage a.stage-link")
    ]
    assert sorted(names) == sorted(["guard", XSS_NAME])


def test_home_to_stage_to_versions_and_a_diff(driver: WebDriver, console: Console) -> None:
    log_in(driver, console.url(), console.admin)
    click_and_load(driver, driver.find_element(By.LINK_TEXT, "guard"))
    assert _text(driver, "h1#stage-name") == "guard"
    assert "central" in _text(driver, "#stage-meta")
    rulesets = driver.find_elements(By.CSS_SELECTOR, "section.ruleset")
    assert len(rulesets) == 1
    rule = rulesets[0].find_element(By.CSS_SELECTOR, "table.rules tr.rule")
    cells = [
        rule.find_element(By.CSS_SELECTOR, f"td.{name}").text for name in ("metric", "operator", "target")
    ]
    assert cells[0] == "input_pii" and "contains" in cells[1] and "email" in cells[2]
    assert "OVERRIDE" in rulesets[0].find_element(By.CSS_SELECTOR, ".action").text.upper()
    assert rulesets[0].find_element(By.CSS_SELECTOR, ".ruleset-description").text == "block e-mail addresses"

    click_and_load(driver, driver.find_element(By.ID, "versions-link"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "ul#version-list li")) == 2
    Select(driver.find_element(By.ID, "a")).select_by_value("1")
    Select(driver.find_element(By.ID, "b")).select_by_value("2")
    click_and_load(driver, driver.find_element(By.ID, "diff-button"))
    title = _text(driver, "h2#diff-title")
    assert "1" in title and "2" in title
    differing = driver.find_elements(
        By.CSS_SELECTOR, "table#diff tr.changed, table#diff tr.added, table#diff tr.removed"
    )
    left = " ".join(row.find_element(By.CSS_SELECTOR, "td.left").text for row in differing)
    right = " ".join(row.find_element(By.CSS_SELECTOR, "td.right").text for row in differing)
    assert "no emails" in left and "block e-mail addresses" in right
    same = " ".join(row.text for row in driver.find_elements(By.CSS_SELECTOR, "table#diff tr.same"))
    assert "input_pii" in same  # the unchanged rule is shown on both sides, unmarked


def test_admin_pauses_and_resumes_a_stage(driver: WebDriver, console: Console) -> None:
    log_in(driver, console.url(), console.admin)
    _open_stage(driver, console, console.guard)
    assert _text(driver, "span#stage-state") == "active"
    assert _has(driver, "a#edit-link") and not _has(driver, "p#read-only")

    click_and_load(driver, driver.find_element(By.ID, "pause"))
    assert _text(driver, "span#stage-state") == "paused"
    assert _text(driver, "p.notice#notice")
    assert _has(driver, "form#resume-form") and not _has(driver, "form#pause-form")
    assert console.guard_paused()

    click_and_load(driver, driver.find_element(By.ID, "resume"))
    assert _text(driver, "span#stage-state") == "active"
    assert _has(driver, "form#pause-form")
    assert not console.guard_paused()


def test_an_app_key_reads_but_cannot_change(driver: WebDriver, console: Console) -> None:
    log_in(driver, console.url(), console.app)
    _open_stage(driver, console, console.guard)
    assert _has(driver, "p#read-only")
    assert not _has(driver, "form#pause-form, form#resume-form, a#edit-link")

    # A page opened as admin, whose session then becomes an app key's: the pause form is refused.
    log_in(driver, console.url(), console.admin)
    _open_stage(driver, console, console.guard)
    driver.delete_cookie("sg_console")
    driver.add_cookie(
        {
            "name": "sg_console",
            "value": _session_cookie(console, console.app),
            "path": "/console/",
            "httpOnly": True,
            "sameSite": "Strict",
        }
    )
    click_and_load(driver, driver.find_element(By.ID, "pause"))
    assert _text(driver, "main h1") == "403"
    assert "admin" in _text(driver, "#error-message")
    assert not console.guard_paused()


def test_try_it_shows_the_decision(driver: WebDriver, console: Console) -> None:
    log_in(driver, console.url(), console.app)  # trying changes nothing: an app key may
    _open_stage(driver, console, console.guard)
    click_and_load(driver, driver.find_element(By.ID, "try-link"))
    driver.find_element(By.ID, "input").send_keys(EMAIL_TEXT)
    click_and_load(driver, driver.find_element(By.ID, "run"))
    status = wait_for(driver, "div#decision span#status")
    assert status.text.lower() == "triggered"
    assert "status-triggered" in (status.get_attribute("class") or "")
    assert "blocked" in _text(driver, "#action-result")
    assert len(driver.find_elements(By.CSS_SELECTOR, "table#ruleset-results tr.ruleset-result")) == 1
    assert "input_pii" in _text(driver, "table#rule-results tr.rule-result")
    assert _has(driver, "table#metric-results tr.metric-result")
    assert driver.find_element(By.ID, "input").get_attribute("value") == EMAIL_TEXT  # kept for another try


def test_markup_in_a_name_or_description_is_shown_as_text(driver: WebDriver, console: Console) -> None:
    log_in(driver, console.url(), console.admin)
    assert XSS_NAME in [link.text for link in driver.find_elements(By.CSS_SELECTOR, "a.stage-link")]
    _open_stage(driver, console, console.xss)
    assert _text(driver, "h1#stage-name") == XSS_NAME
    assert _text(driver, ".ruleset-description") == XSS_DESCRIPTION
    for path in ("", f"stages/{console.xss}", f"stages/{console.xss}/versions", f"stages/{console.xss}/try"):
        driver.get(console.url(path))
        wait_for(driver, "main")
        assert not driver.find_elements(By.CSS_SELECTOR, "main img, main script"), path
        assert driver.execute_script("return window.__xss") is None, path


# The pages checked for a CSP header and for CSP violations in the browser's console.
def _pages(console: Console) -> list[str]:
    stage = f"stages/{console.guard}"
    return [
        "",
        stage,
        f"{stage}/versions?a=1&b=2",
        f"{stage}/edit",
        f"{stage}/try",
        f"{stage}/activity",
        "reports",
    ]


def test_every_page_has_a_strict_csp_and_works_offline(driver: WebDriver, console: Console) -> None:
    cookies = {"sg_console": _session_cookie(console, console.admin)}
    for path in ["login", "static/console.css", *_pages(console)]:
        response = httpx.get(console.url(path), cookies=cookies)
        assert response.status_code == 200, (path, response.status_code)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp

    # The browser does report a violation through get_log (a page of our own making breaks its own CSP).
    driver.get(
        "data:text/html,<meta http-equiv='Content-Security-Policy' content=\"script-src 'none'\">"
        "<script>1</script>"
    )
    assert any("Content Security Policy" in entry["message"] for entry in driver.get_log("browser"))

    log_in(driver, console.url(), console.admin)
    driver.get_log("browser")  # start from an empty log
    for path in _pages(console):
        driver.get(console.url(path))
        wait_for(driver, "main")
        assert _text(driver, "footer") == f"stageguard {__version__}", path  # the whole layout rendered
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(console.live.url + "/") for url in loaded), (path, loaded)
    problems = [
        entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")
    ]
    assert problems == []


def test_readable_at_phone_width(driver: WebDriver, console: Console) -> None:
    log_in(driver, console.url(), console.admin)
    set_viewport(driver, PHONE)
    try:
        for path in ("", f"stages/{console.guard}", f"stages/{console.xss}"):
            driver.get(console.url(path))
            wait_for(driver, "main")
            sizes = _overflows(driver)
            assert sizes["inner"] == PHONE[0]
            assert sizes["scroll"] <= sizes["inner"] + 1, (path, sizes)
    finally:
        set_viewport(driver, LAPTOP)

"""The demo end to end in a real browser: Debian's chromium driven by Playwright, against the
demo's own processes (gateway, gunicorn, Celery worker on its filesystem broker), started by
the demo's launcher on free ports, exactly as ``make run`` starts them.

Never a downloaded browser: the tests use the ``chromium`` on PATH (``scripts/bootstrap``
installs Debian's package). ``HERALD_SKIP_BROWSER=1`` skips them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from herald.apiclient import ApiClient
from tests.browser.helpers import ARTIFACTS, DEMO_DIR, orders_channel, running_demo
from tests.support.timing import seconds

PASSWORD = "demo"
# Headless Chromium as root on a machine with no outside network: no sandbox (root), no
# GPU, and none of the background traffic that would only meet refused connections.
# Playwright itself adds --headless and a fresh, temporary --user-data-dir.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


expect.set_options(timeout=seconds(15) * 1000)


@pytest.fixture(scope="session")
def chromium() -> str:
    if os.environ.get("HERALD_SKIP_BROWSER") == "1":
        pytest.skip("HERALD_SKIP_BROWSER=1")
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("no chromium on PATH: run ./scripts/bootstrap (it installs Debian's chromium package)")
    return path


@pytest.fixture(scope="module")
def demo(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The demo as ``make run`` starts it: one gateway node on the memory engine, gunicorn,
    and a Celery worker on the filesystem broker; free ports and a fresh database."""
    with running_demo(tmp_path_factory.mktemp("demo"), "single-node") as stack:
        yield stack


@pytest.fixture(scope="module")
def api(demo: Any) -> Iterator[ApiClient]:
    """The demo gateway's server API, with the demo's key."""
    key = json.loads((DEMO_DIR / "herald.json").read_text())["api_key"]
    with ApiClient(f"{demo.config.gateway_url(0)}/api", key) as client:
        yield client


@pytest.fixture(scope="package")
def browser(chromium: str) -> Iterator[Browser]:
    # Package scope, not session: while Playwright's sync API is alive it marks its event
    # loop as running in this thread, which would break every asyncio test that comes after.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Remember whether the test itself failed, for the login fixture's teardown.
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def login(browser: Browser, demo: Any, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Page]]:
    """``login("alice")``: a new browser session (its own cookies) on alice's live dashboard.

    When the test fails, each page's screenshot and console go to ``test-artifacts/failures``.
    """
    pages: list[tuple[str, Page, list[str]]] = []
    errors: list[str] = []

    def open_dashboard(username: str) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        console: list[str] = []
        pages.append((username, page, console))
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda exc: errors.append(f"{username}: {exc}"))
        page.goto(f"{demo.config.web_url}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("#login-form button[type=submit]")
        page.wait_for_url("**/dashboard/")
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
        expect(page.locator(f'.sub[data-channel="{orders_channel(page)}"]')).to_contain_text("subscribed")
        # Survives only as long as this document: a reload or navigation would drop it.
        page.evaluate("window.sameDocument = true")
        return page

    try:
        yield open_dashboard
    finally:
        failed = request.node.stash.get(CALL_FAILED, False)
        for username, page, console in pages:
            if failed:
                _keep_evidence(f"{request.node.name}-{username}", page, console)
            page.context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _keep_evidence(name: str, page: Page, console: list[str]) -> None:
    folder = ARTIFACTS / "failures"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    (folder / f"{name}.txt").write_text("\n".join([page.inner_text("body"), "--- console", *console]))

"""The admin web UI in Chromium against a real gateway, with a ``centrifuge-python`` client on
the other side: log in, find the user, disconnect them, publish to them, watch a channel live.

Every check reads what the page shows, and what the SDK client receives. The last test leaves
the page with every section filled in and saves it as ``test-artifacts/admin.png`` (the
operations guide shows a copy).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import CALL_FAILED, _keep_evidence
from tests.browser.helpers import ARTIFACTS, wait_until
from tests.support.admin import ADMIN_PASSWORD, admin_config
from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, running_gateway
from tests.support.sdkthread import ThreadedSdkClient
from tests.support.tokens import token


@pytest.fixture(scope="module")
def gw(chromium: str) -> Iterator[GatewayProcess]:
    with running_gateway(admin_config(name="herald-1")) as gateway:
        yield gateway


@pytest.fixture
def open_admin(browser: Browser, gw: GatewayProcess, request: pytest.FixtureRequest) -> Iterator[Callable[[], Page]]:
    """``open_admin()``: a fresh browser session (no cookies) on the admin page, not logged in."""
    pages: list[tuple[Page, list[str]]] = []
    errors: list[str] = []

    def open_page() -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        console: list[str] = []
        pages.append((page, console))
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{gw.http_url}/admin")  # redirected to /admin/
        expect(page.locator("#login-section")).to_be_visible()
        return page

    try:
        yield open_page
    finally:
        for i, (page, console) in enumerate(pages):
            if request.node.stash.get(CALL_FAILED, False):
                _keep_evidence(f"{request.node.name}-{i}", page, console)
            page.context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def log_in(page: Page, password: str = ADMIN_PASSWORD) -> None:
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")


@pytest.fixture
def logged_in(open_admin: Callable[[], Page]) -> Page:
    page = open_admin()
    log_in(page)
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#nodes tbody tr")).to_have_count(1)
    return page


@pytest.fixture
def sdk(gw: GatewayProcess) -> Iterator[tuple[ThreadedSdkClient, str, str]]:
    """A connected SDK client of a user of its own, subscribed to a fresh watched channel."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    channel = f"watched:room-{uuid.uuid4().hex[:8]}"
    client = ThreadedSdkClient(gw.ws_url, token(user=user, channels=[channel]), [channel]).start()
    try:
        yield client, user, channel
    finally:
        client.close()


def test_a_wrong_password_is_refused(open_admin: Callable[[], Page]) -> None:
    page = open_admin()
    log_in(page, ADMIN_PASSWORD + "?")
    expect(page.locator("#login-error")).to_have_text("Wrong password.")
    expect(page.locator("#dashboard")).to_be_hidden()
    # The session cookie is what a right password gives: none here.
    assert not [c for c in page.context.cookies() if c["name"] == "herald_admin"]


def test_the_session_survives_a_reload_and_ends_with_logout(logged_in: Page) -> None:
    page = logged_in
    cookie = next(c for c in page.context.cookies() if c["name"] == "herald_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # a script cannot read it
    page.reload()
    expect(page.locator("#dashboard")).to_be_visible()
    page.click("#logout")
    expect(page.locator("#login-error")).to_have_text("Logged out.")
    page.reload()
    expect(page.locator("#login-section")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()


def test_find_a_user_and_disconnect_them(logged_in: Page, sdk: tuple[ThreadedSdkClient, str, str]) -> None:
    client, user, channel = sdk
    page = logged_in
    expect(page.locator("#total-clients")).not_to_have_text("0")
    page.fill("#user-id", user)
    page.click("#user-form button[type=submit]")
    rows = page.locator("#user-connections tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(channel)
    expect(rows.first).to_contain_text("herald-1")
    rows.first.locator("button.disconnect").click()
    expect(rows.first).to_have_attribute("data-state", "disconnected")
    event = client.wait_for("disconnected")
    assert event.ctx.code == 3503, event.ctx  # "force disconnect": the SDK does not reconnect
    # Looked up again, the user has no connection left.
    page.click("#user-form button[type=submit]")
    expect(page.locator("#user-empty")).to_be_visible()


def test_publish_from_the_page_reaches_the_sdk_client(logged_in: Page, sdk: tuple[ThreadedSdkClient, str, str]) -> None:
    client, _, channel = sdk
    page = logged_in
    page.fill("#publish-channel", channel)
    page.fill("#publish-data", '{"text": "hello from the admin page"}')
    page.click("#publish-form button[type=submit]")
    expect(page.locator("#publish-result")).to_contain_text(f"Published to {channel} at offset 1 ")
    event = client.wait_for("sub:publication", channel)
    assert event.ctx.pub.data == {"text": "hello from the admin page"}


def test_bad_input_on_the_page_shows_the_servers_error(logged_in: Page) -> None:
    page = logged_in
    page.fill("#publish-channel", "nowhere:x")
    page.fill("#publish-data", "{}")
    page.click("#publish-form button[type=submit]")
    expect(page.locator("#publish-error")).to_have_text("unknown channel (102): no such namespace")
    page.fill("#publish-data", "{not json")
    page.click("#publish-form button[type=submit]")
    expect(page.locator("#publish-error")).to_contain_text("The data is not JSON")
    page.fill("#watch-channel", "nowhere:x")
    page.click("#watch-start")
    expect(page.locator("#watch-error")).to_have_text("unknown channel (102): no such namespace")


def test_watch_a_channel_live_and_look_it_up(
    logged_in: Page, sdk: tuple[ThreadedSdkClient, str, str], gw: GatewayProcess
) -> None:
    client, user, channel = sdk
    page = logged_in
    page.fill("#watch-channel", channel)
    page.click("#watch-start")
    expect(page.locator("#watch-state")).to_have_attribute("data-state", "watching")
    for n in (1, 2, 3):
        publish(gw.api_url, channel, {"order": n, "status": "paid"})
    log = page.locator("#watch-log li")
    expect(log).to_have_count(3)
    expect(log.last).to_contain_text('#3 {"order":3,"status":"paid"}')
    client.wait_for("sub:publication", channel, where=lambda ctx: ctx.pub.data["order"] == 3)

    # The channel's subscribers (the SDK client and this page's watch), presence and history.
    page.fill("#channel-name", channel)
    page.click("#channel-form button[type=submit]")
    expect(page.locator("#channel-subscribers")).to_have_text("2")
    expect(page.locator("#channel-presence-stats")).to_have_text("1 clients, 1 users")
    expect(page.locator("#channel-presence tbody tr")).to_contain_text(user)
    expect(page.locator("#channel-history li")).to_have_count(3)
    expect(page.locator("#channel-history li").first).to_have_text('#3 {"order":3,"status":"paid"}')

    page.fill("#user-id", user)
    page.click("#user-form button[type=submit]")
    expect(page.locator("#user-connections tbody tr")).to_have_count(1)

    # The node counts are current: the SDK client, its subscription and the watch.
    expect(page.locator("#total-clients")).to_have_text("1")
    expect(page.locator("#total-subs")).to_have_text("2")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)

    page.click("#watch-stop")
    expect(page.locator("#watch-state")).to_have_attribute("data-state", "idle")
    # The page stopped reading: the gateway drops its watcher, leaving the SDK client alone.
    wait_until(
        lambda: (
            api(gw.api_url, "channels", {"pattern": channel})["result"]["channels"] == {channel: {"num_clients": 1}}
        ),
        "the watcher to leave the channel",
    )

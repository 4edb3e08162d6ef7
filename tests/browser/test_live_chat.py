"""The demo's live chat in proxy mode, in Chromium: the page connects with no token (the gateway
asks Django about the session cookie), publishes chat lines itself (Django's publish proxy
validates and stores them), and calls the ``orders.search`` RPC (Django answers).
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.helpers import Login


def open_live_chat(page: Page, demo: Any) -> Page:
    """From the logged-in dashboard to the live chat page, connected and subscribed."""
    page.goto(f"{demo.config.web_url}/live-chat/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#chat-channel")).to_have_attribute("data-state", "subscribed")
    return page


def send(page: Page, text: str) -> None:
    page.fill("#live-chat-input", text)
    page.click("#live-chat-form button[type=submit]")


def chat_log(page: Page) -> Any:
    return page.locator("#live-chat-log li")


def test_a_line_reaches_the_same_tenant_is_stored_and_never_reaches_the_other(login: Login, demo: Any) -> None:
    alice = open_live_chat(login("alice"), demo)  # Acme
    bob = open_live_chat(login("bob"), demo)  # Acme
    carol = open_live_chat(login("carol"), demo)  # Globex
    acme_channel = alice.inner_text("#chat-channel")
    assert bob.inner_text("#chat-channel") == acme_channel != carol.inner_text("#chat-channel")

    send(alice, "hello from alice")
    expect(chat_log(bob).filter(has_text="hello from alice")).to_have_count(1)
    expect(chat_log(alice).filter(has_text="alice: hello from alice")).to_have_count(1)
    # carol's page is live: her own line arrives through the same path...
    send(carol, "globex here")
    expect(chat_log(carol).filter(has_text="carol: globex here")).to_have_count(1)
    # ...and Acme's line never did; nor does Acme see hers.
    expect(chat_log(carol).filter(has_text="hello from alice")).to_have_count(0)
    expect(chat_log(bob).filter(has_text="globex here")).to_have_count(0)

    # Stored by the publish proxy: a fresh page of bob's renders it from the database.
    bob.reload()
    open_live_chat(bob, demo)
    expect(chat_log(bob).filter(has_text="hello from alice")).to_have_count(1)

    # carol cannot publish into Acme's chat from her page either: Django refuses it (403).
    code = carol.evaluate(
        """(channel) => window.heraldLiveChat.centrifuge.publish(channel, {text: "sneaky"})
              .then(() => "published", (error) => error.code)""",
        acme_channel,
    )
    assert code == 403
    expect(chat_log(alice).filter(has_text="sneaky")).to_have_count(0)


def test_a_refused_line_shows_the_proxys_custom_error(login: Login, demo: Any) -> None:
    alice = open_live_chat(login("alice"), demo)
    send(alice, "x" * 201)
    expect(alice.locator("#live-chat-error")).to_have_attribute("data-code", "413")
    expect(alice.locator("#live-chat-error")).to_contain_text("at most 200 characters")
    expect(chat_log(alice).filter(has_text="xxxxxxxxxx")).to_have_count(0)
    send(alice, "   ")
    expect(alice.locator("#live-chat-error")).to_have_attribute("data-code", "400")


def test_the_orders_search_rpc_answers_from_the_users_tenant(login: Login, demo: Any) -> None:
    alice = open_live_chat(login("alice"), demo)  # Acme
    carol = open_live_chat(login("carol"), demo)  # Globex
    for page in (alice, carol):
        page.fill("#rpc-query", "standing")
        page.click("#rpc-form button[type=submit]")
        expect(page.locator("#rpc-status")).to_have_text("1 found")
        expect(page.locator("#rpc-results li")).to_contain_text("Standing desk")
    # Both tenants were seeded with a standing desk: each sees only its own.
    acme_id = alice.locator("#rpc-results li").get_attribute("data-order-id")
    globex_id = carol.locator("#rpc-results li").get_attribute("data-order-id")
    assert acme_id and globex_id and acme_id != globex_id

"""The dashboard on the fallback transport, in Chromium: the same page forced onto Server-Sent
Events (``?transport=sse``), as the SDK would be where a proxy breaks WebSockets. The stream
is an ``EventSource`` on the gateway's origin, its commands (subscribes, pongs) are POSTs to
the emulation endpoint, both cross-origin from the Django page (CORS)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.helpers import Login, assert_not_reloaded, place_order_by_click, row


def test_the_dashboard_works_over_sse(login: Login, demo: Any) -> None:
    alice = login("alice")
    alice.goto(f"{demo.config.web_url}/dashboard/?transport=sse")
    expect(alice.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(alice.locator("#activity")).to_contain_text("Connected to the gateway (sse)")
    transport = alice.evaluate("() => window.heraldDemo.centrifuge._transport.name()")
    assert transport == "sse"
    # Its subscribes went as POSTs to the emulation endpoint, and were answered on the stream.
    states = "() => Object.values(window.heraldDemo.centrifuge.subscriptions()).map((s) => s.state)"
    expect(alice.locator("#connection")).to_have_attribute("data-state", "connected")
    alice.wait_for_function(f"() => ({states})().length > 0 && ({states})().every((s) => s === 'subscribed')")

    bob = login("bob")  # on WebSocket, the page's default
    order_id = place_order_by_click(bob)
    # Delivered on alice's event stream: created, then paid by the Celery task.
    expect(row(alice, order_id)).to_be_visible()
    expect(row(alice, order_id)).to_have_attribute("data-status", "paid")
    # The chat: bob's message goes through Django and the gateway to alice's event stream.
    bob.locator("#chat-input").press_sequentially("over sse", delay=30)
    bob.locator("#chat-input").press("Enter")
    expect(alice.locator("#chat-log")).to_contain_text("bob: over sse")
    assert_not_reloaded(alice)

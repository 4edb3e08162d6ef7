"""The demo dashboard in Chromium: live updates, tenant isolation, recovery, token refresh.

Every page is a real login through the form, every order goes through Django, a real
Celery worker and the gateway, and every check reads what a person would see.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from herald.apiclient import ApiClient
from tests.browser.helpers import (
    ARTIFACTS,
    COMPLETE_DELAY,
    TOKEN_TTL,
    Login,
    assert_not_reloaded,
    completed_in_history,
    number,
    orders_channel,
    paid_in_django,
    pay_order_by_command,
    place_order_by_click,
    place_order_by_command,
    row,
    wait_until,
)
from tests.support.timing import seconds


def test_an_order_placed_in_another_session_turns_paid_live(login: Login, demo: Any) -> None:
    alice = login("alice")
    bob = login("bob")
    paid_before = number(alice, "#paid-count")

    order_id = place_order_by_click(bob)

    # alice's page shows bob's order arrive and, a moment later, flip to paid.
    expect(row(alice, order_id)).to_be_visible()
    expect(row(alice, order_id)).to_have_attribute("data-status", "paid")
    expect(row(alice, order_id)).to_contain_text("bob")
    expect(alice.locator("#paid-count")).to_have_text(str(paid_before + 1))
    # Only bob is told about his own order (user_{id} is his channel alone).
    expect(bob.locator(".toast")).to_contain_text(f"Your order #{order_id}")
    expect(alice.locator("#activity")).to_contain_text(f"Order #{order_id} paid")
    assert f"Your order #{order_id}" not in alice.inner_text("#activity")

    # The ephemeral chat: bob types, alice sees it; bob sends, alice reads it.
    bob.locator("#chat-input").press_sequentially("hello", delay=50)
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    bob.locator("#chat-input").press("Enter")
    expect(alice.locator("#chat-log")).to_contain_text("bob: hello")

    # A few more, so the dashboard has paid orders ticking; the last one (from the command
    # line, held pending until the test pays it) is caught on the screenshot still pending.
    more = [place_order_by_click(bob), place_order_by_click(alice)]
    for other in more:
        expect(row(alice, other)).to_have_attribute("data-status", "paid")
    expect(alice.locator("#paid-count")).to_have_text(str(paid_before + 3))
    last = place_order_by_command(demo, "bob")
    expect(row(alice, last)).to_have_attribute("data-status", "pending")
    ARTIFACTS.mkdir(exist_ok=True)
    alice.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    pay_order_by_command(demo, last)
    expect(row(alice, last)).to_have_attribute("data-status", "paid")
    expect(alice.locator("#paid-count")).to_have_text(str(paid_before + 4))
    assert_not_reloaded(alice)
    assert number(alice, "#resyncs") == 0


def test_another_tenant_sees_none_of_the_first_tenants_events(login: Login, demo: Any) -> None:
    carol = login("carol")  # Globex, tenant 2
    alice = login("alice")  # Acme, tenant 1
    events_before = number(carol, "#event-count")

    acme_order = place_order_by_click(alice)
    expect(row(alice, acme_order)).to_have_attribute("data-status", "paid")
    # carol's page is live: dave's order (her tenant) arrives and is paid...
    globex_order = place_order_by_command(demo, "dave", delay=COMPLETE_DELAY)
    expect(row(carol, globex_order)).to_have_attribute("data-status", "paid")
    # ...and that is all she received: its order.created and order.completed, nothing of Acme's.
    expect(carol.locator("#event-count")).to_have_text(str(events_before + 2))
    expect(row(carol, acme_order)).to_have_count(0)
    assert f"#{acme_order}" not in carol.inner_text("#activity")

    # Asking the gateway directly for Acme's channel is refused: not in her token's grants.
    code = carol.evaluate(
        """(channel) => new Promise((resolve) => {
            const sub = window.heraldDemo.centrifuge.newSubscription(channel);
            sub.on("subscribed", () => resolve("subscribed"));
            sub.on("unsubscribed", (ctx) => resolve(ctx.code));
            sub.subscribe();
        })""",
        orders_channel(alice),
    )
    assert code == 103


def test_socket_cut_while_an_order_completes_recovers_the_event(login: Login, demo: Any, api: ApiClient) -> None:
    alice = login("alice")
    channel = orders_channel(alice)
    recoveries = number(alice, "#recoveries")

    alice.context.set_offline(True)
    expect(alice.locator("#connection")).not_to_have_attribute("data-state", "connected")
    order_id = place_order_by_command(demo, "bob", delay=0.2)
    # The order is paid and its event is in the gateway's history while alice is away.
    wait_until(lambda: completed_in_history(api, channel, order_id), "order.completed is in the history")
    expect(row(alice, order_id)).to_have_count(0)

    alice.context.set_offline(False)
    expect(alice.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(alice.locator("#recoveries")).to_have_text(str(recoveries + 1))
    expect(row(alice, order_id)).to_have_attribute("data-status", "paid")
    # Recovered from history (recovered: true), not by reloading the state.
    assert number(alice, "#resyncs") == 0
    expect(alice.locator(f'.sub[data-channel="{channel}"]')).to_contain_text("recovered")
    assert_not_reloaded(alice)


def test_gateway_restart_while_an_order_completes_reloads_the_state(login: Login, demo: Any) -> None:
    # The memory engine keeps history in the gateway process: a restart starts a new epoch,
    # so the client is told recovered: false and the page reloads its state from Django.
    alice = login("alice")
    gateway = demo.gateways[0]
    resyncs = number(alice, "#resyncs")

    order_id = place_order_by_command(demo, "bob")  # pending until paid below
    expect(row(alice, order_id)).to_have_attribute("data-status", "pending")
    gateway.stop()
    try:
        expect(alice.locator("#connection")).not_to_have_attribute("data-state", "connected")
        pay_order_by_command(demo, order_id)
        wait_until(lambda: paid_in_django(demo, alice, order_id), "the order is paid in Django")
        # Nothing reached the page while the gateway was down.
        assert alice.get_attribute(f'#orders tr[data-order-id="{order_id}"]', "data-status") == "pending"
    finally:
        gateway.start()

    expect(alice.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(alice.locator("#resyncs")).to_have_text(str(resyncs + 1))
    expect(row(alice, order_id)).to_have_attribute("data-status", "paid")
    expect(alice.locator("#activity")).to_contain_text("recovered: false")
    assert_not_reloaded(alice)


def test_the_token_is_fetched_again_before_it_expires_without_reconnecting(login: Login) -> None:
    alice = login("alice")
    assert number(alice, "#token-fetches") == 1

    expect(alice.locator("#token-fetches")).to_have_text("2", timeout=seconds(TOKEN_TTL + 15) * 1000)
    # Refreshed over the open connection: still connected, and connected only once.
    expect(alice.locator("#connection")).to_have_attribute("data-state", "connected")
    assert alice.inner_text("#activity").count("Connected to the gateway") == 1
    assert_not_reloaded(alice)


# The same page forced onto Server-Sent Events (``?transport=sse``), as the SDK would be where a
# proxy breaks WebSockets (issue 12): the stream is an ``EventSource`` on the gateway's origin,
# its commands (subscribes, pongs) POSTs to the emulation endpoint, both cross-origin (CORS).
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
    alice.evaluate("window.sameDocument = true")  # as the login fixture does: gone if the page reloads

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

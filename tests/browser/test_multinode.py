"""The demo on two gateway nodes sharing the Redis engine (``scripts/run-demo-multinode``):
users sit on different nodes and still see each other's events, and a restarted node
recovers what its clients missed from the history kept in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from herald.apiclient import ApiClient
from tests.browser.helpers import (
    Login,
    assert_not_reloaded,
    completed_in_history,
    number,
    orders_channel,
    pay_order_by_command,
    place_order_by_click,
    place_order_by_command,
    row,
    running_demo,
    wait_until,
)
from tests.django_app.support.worker import ensure_redis
from tests.support.redis import REDIS_URL, delete_keys, redis_prefix

# Celery's broker here: the database the Django app tests use for theirs, with a queue of
# this run's own. The gateway nodes use db 0 under a key prefix of their own.
REDIS_BROKER_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture(scope="module")
def demo(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two gateway nodes on the Redis engine (a key prefix of their own), and Celery on Redis
    too (a queue of its own), as when ``REDIS_URL`` is set."""
    ensure_redis(REDIS_URL)
    queue = f"herald-demo-test-{uuid.uuid4().hex[:12]}"
    with redis_prefix() as prefix:
        try:
            with running_demo(
                tmp_path_factory.mktemp("demo-multinode"),
                "multi-node",
                nodes=2,
                engine="redis",
                redis_url=REDIS_BROKER_URL,
                extra_env={"HERALD_REDIS_ADDRESS": REDIS_URL, "HERALD_REDIS_PREFIX": prefix, "DEMO_QUEUE": queue},
            ) as stack:
                yield stack
        finally:
            delete_keys(REDIS_BROKER_URL, f"*{queue}*")


def node_of(demo: Any, page: Any) -> Any:
    """The gateway process this page's socket is connected to."""
    url = page.inner_text("#socket-url")
    return next(gw for gw, port in zip(demo.gateways, demo.config.gateway_ports, strict=True) if f":{port}/" in url)


def test_users_on_two_nodes_see_each_others_orders(login: Login, demo: Any) -> None:
    alice = login("alice")
    bob = login("bob")
    assert node_of(demo, alice) is not node_of(demo, bob), "the token view spreads users over the nodes"
    paid_before = number(alice, "#paid-count")

    order_id = place_order_by_click(bob)

    expect(row(alice, order_id)).to_have_attribute("data-status", "paid")
    expect(alice.locator("#paid-count")).to_have_text(str(paid_before + 1))
    expect(bob.locator(".toast")).to_contain_text(f"Your order #{order_id}")
    assert_not_reloaded(alice)


def test_restarting_a_node_while_an_order_completes_recovers_from_redis(
    login: Login, demo: Any, api: ApiClient
) -> None:
    alice = login("alice")
    node = node_of(demo, alice)
    channel = orders_channel(alice)
    assert node is not demo.gateways[0], "the worker publishes through node 1: restart the other one"
    recoveries, resyncs = number(alice, "#recoveries"), number(alice, "#resyncs")

    order_id = place_order_by_command(demo, "bob")  # pending until paid below
    expect(row(alice, order_id)).to_have_attribute("data-status", "pending")
    node.stop()
    try:
        expect(alice.locator("#connection")).not_to_have_attribute("data-state", "connected")
        pay_order_by_command(demo, order_id)
        # Paid, and published through the other node into the history kept in Redis...
        wait_until(lambda: completed_in_history(api, channel, order_id), "the event is in history")
        # ...while alice's page, whose node is down, has not seen it.
        assert alice.get_attribute(f'#orders tr[data-order-id="{order_id}"]', "data-status") == "pending"
    finally:
        node.start()

    expect(alice.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(alice.locator("#recoveries")).to_have_text(str(recoveries + 1))
    expect(row(alice, order_id)).to_have_attribute("data-status", "paid")
    assert number(alice, "#resyncs") == resyncs
    expect(alice.locator(f'.sub[data-channel="{channel}"]')).to_contain_text("recovered")
    assert_not_reloaded(alice)

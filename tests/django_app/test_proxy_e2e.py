"""Proxy mode end to end: a real gateway whose proxy endpoints point at the test project under
gunicorn, and the official Python SDK as the browser, carrying the session cookie of a real
Django login in its WebSocket upgrade and no token at all.

The gateway config uses the proxy spec's v5 keys (§1.1): ``proxy_*_endpoint``,
``proxy_http_headers`` (the Cookie), ``proxy_static_http_headers`` (the shared secret), and
per-namespace ``proxy_subscribe`` / ``proxy_publish``.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from centrifuge import ReplyError
from django.contrib.sessions.models import Session
from django.test import override_settings

from herald.apiclient import ApiClient
from tests.django_app.models import ChatMessage, Order, User
from tests.django_app.settings import TEST_PROXY_SECRET
from tests.django_app.support.proxy_calls import logged_in_browser
from tests.django_app.support.sdk import Listener
from tests.django_app.support.web import Gunicorn, running_gunicorn
from tests.support.gateway import TEST_API_KEY, GatewayProcess, base_config, running_gateway
from tests.support.timing import duration, seconds, wait_until

# Connections made through the connect proxy live this long before the refresh proxy is asked.
PROXY_TTL = max(2, round(seconds(2)))
UserFactory = Callable[..., User]
_tenants = iter(range(5000, 100_000))


def proxy_config(web: Gunicorn) -> dict[str, Any]:
    events = ["connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc"]
    config = base_config(
        proxy_http_headers=["Cookie"],
        proxy_static_http_headers={"X-Realtime-Proxy-Secret": TEST_PROXY_SECRET},
        namespaces=[
            {"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True},
            {"name": "chat", "proxy_subscribe": True, "proxy_publish": True},
        ],
    )
    for event in events:
        config[f"proxy_{event}_endpoint"] = web.proxy_url(event)
        # gunicorn's first answers (imports, first queries) can take longer than the 1 s default.
        config[f"proxy_{event}_timeout"] = duration(5)
    return config


@pytest.fixture(scope="module")
def web(django_db_setup: None) -> Iterator[Gunicorn]:
    with running_gunicorn({"HERALD_TEST_PROXY_TTL": str(PROXY_TTL)}) as server:
        yield server


@pytest.fixture(scope="module")
def proxied(web: Gunicorn) -> Iterator[GatewayProcess]:
    with running_gateway(proxy_config(web)) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _point_at_gateway(proxied: GatewayProcess) -> Iterator[None]:
    with override_settings(REALTIME_API_URL=proxied.api_url, REALTIME_SOCKET_URL=proxied.ws_url):
        yield


@pytest.fixture
def tenant() -> int:
    return next(_tenants)


def cookie_listener(gw: GatewayProcess, cookie: str | None) -> Listener:
    """An SDK client with no token: only the forwarded cookie can authenticate it."""
    return Listener(gw.ws_url, headers={"Cookie": cookie} if cookie else None)


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(scenario())


def test_session_cookie_connects_without_a_token_and_is_subscribed_to_the_users_grants(
    make_user: UserFactory, tenant: int, proxied: GatewayProcess, web: Gunicorn
) -> None:
    user = make_user(tenant_id=tenant)
    _, cookie = logged_in_browser(user)
    own = f"test_tenant_{tenant}"

    async def scenario() -> None:
        listener = cookie_listener(proxied, cookie)
        try:
            await listener.connect()
            # The connect answer's channels (the REALTIME_CHANNELS grants) are server-side
            # subscriptions (proxy spec §3.1): publications arrive without a subscribe.
            with ApiClient(proxied.api_url, TEST_API_KEY) as api:
                api.publish(own, {"hello": 1})
                api.publish(f"test_tenant_{tenant + 1}", {"other": 1})
                api.publish(f"critical:test_tenant_{tenant}", {"critical": 1})
            await listener.recorder.wait_for("publication", f"critical:test_tenant_{tenant}", within=10)
            await listener.recorder.wait_for("publication", own, within=10)
            data = {e.channel: e.ctx.pub.data for e in listener.recorder.of("publication")}
            assert data == {own: {"hello": 1}, f"critical:test_tenant_{tenant}": {"critical": 1}}
            # Anything else needs a grant the proxy did not give: 103.
            refused = await listener.subscribe(f"test_tenant_{tenant + 1}")
            assert refused[0] == "unsubscribed" and refused[2] == 103
        finally:
            await listener.close()

    run(scenario)
    assert "POST /realtime/proxy/connect/" in web.log()


def test_connect_without_a_session_gets_the_terminal_unauthorized_disconnect(db: None, proxied: GatewayProcess) -> None:
    async def scenario() -> None:
        listener = cookie_listener(proxied, "sessionid=not-a-session")
        try:
            await listener.client.connect()
            await listener.wait_for(lambda: ("disconnected", 4501) in listener.events)
            # Terminal: the SDK does not try again.
            assert ("connected", 0) not in listener.events
            assert listener.events.count(("connecting", 0)) <= 1
        finally:
            await listener.close()

    run(scenario)


def test_chat_subscribe_is_decided_by_the_database(
    make_user: UserFactory, tenant: int, proxied: GatewayProcess
) -> None:
    user = make_user(tenant_id=tenant)
    _, cookie = logged_in_browser(user)
    own, other = f"chat:test_tenant_{tenant}", f"chat:test_tenant_{tenant + 1}"

    async def scenario() -> None:
        listener = cookie_listener(proxied, cookie)
        try:
            await listener.connect()
            assert await listener.subscribe(own) == ("subscribed", own)
            refused = await listener.subscribe(other)
            assert refused[0] == "unsubscribed" and refused[2] == 103
        finally:
            await listener.close()

    run(scenario)
    # The user moves to the other tenant: the subscribe proxy now answers the other way.
    User.objects.filter(pk=user.pk).update(tenant_id=tenant + 1)

    async def after_move() -> None:
        listener = cookie_listener(proxied, cookie)
        try:
            await listener.connect()
            assert (await listener.subscribe(own))[2] == 103
            assert await listener.subscribe(other) == ("subscribed", other)
        finally:
            await listener.close()

    run(after_move)


def test_chat_publish_rejected_with_a_custom_error_and_accepted_then_stored(
    make_user: UserFactory, tenant: int, proxied: GatewayProcess
) -> None:
    alice, bob = make_user("alice", tenant_id=tenant), make_user("bob", tenant_id=tenant)
    _, alice_cookie = logged_in_browser(alice)
    _, bob_cookie = logged_in_browser(bob)
    channel = f"chat:test_tenant_{tenant}"

    async def scenario() -> None:
        sender, reader = cookie_listener(proxied, alice_cookie), cookie_listener(proxied, bob_cookie)
        try:
            await sender.connect()
            await reader.connect()
            assert await reader.subscribe(channel) == ("subscribed", channel)
            sub = sender.client.new_subscription(channel, events=sender.recorder.sub_handler(channel))
            await sub.subscribe()
            await sender.recorder.wait_for("sub:subscribed", channel)
            with pytest.raises(ReplyError) as refused:
                await sub.publish({"text": "x" * 201})
            assert (refused.value.code, refused.value.message) == (401, "text longer than 200 characters")
            await sub.publish({"text": "hello bob"})
            await reader.wait_for(lambda: bool(reader.publications.get(channel)))
            [received] = reader.publications[channel]
            assert received["author"] == "alice" and received["text"] == "hello bob"
            return_id: int = received["id"]
            assert await asyncio.to_thread(lambda: ChatMessage.objects.get(pk=return_id).text) == "hello bob"
        finally:
            await sender.close()
            await reader.close()

    run(scenario)
    assert ChatMessage.objects.count() == 1


def test_rpc_success_and_errors(make_user: UserFactory, tenant: int, proxied: GatewayProcess) -> None:
    user = make_user(tenant_id=tenant)
    order = Order.objects.create(tenant_id=tenant, total=25)
    _, cookie = logged_in_browser(user)

    async def scenario() -> None:
        listener = cookie_listener(proxied, cookie)
        try:
            await listener.connect()
            result = await listener.client.rpc("orders.search", {"min_total": "10"})
            assert result.data == {"orders": [{"id": order.pk, "total": "25.00"}]}
            with pytest.raises(ReplyError) as custom:
                await listener.client.rpc("fail.custom", {})
            assert (custom.value.code, custom.value.temporary) == (1404, True)
            with pytest.raises(ReplyError) as unknown:
                await listener.client.rpc("orders.delete", {})
            assert unknown.value.code == 104
            with pytest.raises(ReplyError) as crash:
                await listener.client.rpc("fail.crash", {})
            assert crash.value.code == 100
        finally:
            await listener.close()

    run(scenario)


def test_refresh_ends_the_connection_once_the_session_is_gone(
    make_user: UserFactory, proxied: GatewayProcess, web: Gunicorn
) -> None:
    user = make_user()
    _, cookie = logged_in_browser(user)
    session_key = cookie.split("=", 1)[1]

    async def scenario() -> None:
        listener = cookie_listener(proxied, cookie)
        try:
            await listener.connect()
            # Two refreshes pass (gunicorn logs them): the live session keeps the connection.
            refreshes = web.log().count("/realtime/proxy/refresh/")
            await wait_until(
                lambda: web.log().count("/realtime/proxy/refresh/") >= refreshes + 2,
                "two refresh proxy calls",
                within=PROXY_TTL * 3 + 10,
            )
            assert [e for e in listener.events if e[0] in ("connecting", "disconnected")] == [("connecting", 0)]
            # The session ends without a logout signal (expired, cleared by an admin).
            await asyncio.to_thread(lambda: Session.objects.filter(session_key=session_key).delete())
            # Refresh says expired (3005, reconnect), the reconnect meets the connect proxy: 4501.
            await listener.wait_for(lambda: ("disconnected", 4501) in listener.events, within=PROXY_TTL * 3 + 10)
            assert ("connecting", 3005) in listener.events
        finally:
            await listener.close()

    run(scenario)


def test_logout_ends_the_users_connections_and_only_live_sessions_come_back(
    make_user: UserFactory, proxied: GatewayProcess
) -> None:
    user = make_user()
    laptop, laptop_cookie = logged_in_browser(user)
    _, phone_cookie = logged_in_browser(user)

    async def scenario() -> None:
        on_laptop, on_phone = cookie_listener(proxied, laptop_cookie), cookie_listener(proxied, phone_cookie)
        try:
            await on_laptop.connect()
            await on_phone.connect()
            mark = on_phone.recorder.mark()
            await asyncio.to_thread(laptop.logout)
            # Both closed with 4001 (reconnect); the phone's session lives and reconnects.
            await on_laptop.wait_for(lambda: ("disconnected", 4501) in on_laptop.events)
            assert ("connecting", 4001) in on_laptop.events
            await on_phone.recorder.wait_for("connected", since=mark, within=10)
            assert ("connecting", 4001) in on_phone.events
        finally:
            await on_laptop.close()
            await on_phone.close()

    run(scenario)


def test_a_browser_that_reaches_the_proxy_urls_directly_is_refused(web: Gunicorn, db: None) -> None:
    # Only the gateway knows the secret: the same URLs through gunicorn say 401 to anyone else.
    request = urllib.request.Request(web.proxy_url("connect"), data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=seconds(5))
    refused.value.close()
    assert refused.value.code == 401

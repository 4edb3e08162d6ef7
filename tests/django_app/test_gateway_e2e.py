"""End to end: tokens from the Django views, events through a real Celery worker, a real
gateway process, and the official Python SDK as the browser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from django.test import Client, override_settings

from herald.aioapiclient import AsyncApiClient
from herald.apiclient import ApiClient, TransientApiError
from herald.django.revocation import disconnect_user, invalidate_user_tokens
from herald.django.tasks import publish_realtime_event
from herald.django.tokens import RealtimeTokenService
from tests.django_app.models import User
from tests.django_app.support.common import succeeded, unique
from tests.django_app.support.scripted_api import ScriptedApi, forward, forward_then_stall
from tests.django_app.support.sdk import Listener
from tests.django_app.support.worker import CeleryWorker, Workers
from tests.support.gateway import TEST_API_KEY, TEST_SECRET, GatewayProcess
from tests.support.timing import seconds
from tests.support.tokens import token

_tenants = iter(range(1000, 100_000))


@pytest.fixture
def tenant() -> int:
    """A tenant id no other test uses, so channels never overlap between tests."""
    return next(_tenants)


@pytest.fixture(autouse=True)
def _point_at_gateway(gateway: GatewayProcess) -> Iterator[None]:
    with override_settings(REALTIME_API_URL=gateway.api_url, REALTIME_SOCKET_URL=gateway.ws_url):
        yield


@pytest.fixture
def gateway_worker(workers: Workers, gateway: GatewayProcess) -> CeleryWorker:
    return workers.ensure(HERALD_TEST_API_URL=gateway.api_url)


def token_from_view(user: User) -> dict[str, Any]:
    client = Client()
    client.force_login(user)
    response = client.post("/realtime/token/")
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_token_from_the_view_is_accepted_and_grants_exactly_the_users_channels(
    make_user: Callable[..., User], tenant: int, gateway: GatewayProcess
) -> None:
    user = make_user(tenant_id=tenant)
    body = token_from_view(user)
    assert body["socket_url"] == gateway.ws_url
    granted = jwt.decode(body["token"], TEST_SECRET, algorithms=["HS256"])["channels"]
    assert granted == [
        f"test_user_{user.pk}",
        f"critical:test_user_{user.pk}",
        f"test_tenant_{tenant}",
        f"critical:test_tenant_{tenant}",
    ]
    # The environment prefix is in every grant.
    assert all(ch.split(":")[-1].startswith("test_") for ch in granted)

    async def scenario() -> None:
        listener = Listener(body["socket_url"], token=body["token"])
        try:
            await listener.connect()
            for channel in granted:
                assert await listener.subscribe(channel) == ("subscribed", channel)
            # Another tenant, the other tenant's history channel, a name without the
            # prefix, and a prefix match that is not an exact match: all refused (103).
            for channel in [
                f"test_tenant_{tenant + 1}",
                f"critical:test_tenant_{tenant + 1}",
                f"tenant_{tenant}",
                f"test_tenant_{tenant}0",
            ]:
                assert await listener.subscribe(channel) == ("unsubscribed", channel, 103)
        finally:
            await listener.close()

    asyncio.run(scenario())


def test_subscription_token_opens_a_channel_outside_the_grants(
    make_user: Callable[..., User], tenant: int, gateway: GatewayProcess
) -> None:
    user = make_user(tenant_id=tenant)
    client = Client()
    client.force_login(user)
    token = token_from_view(user)["token"]
    response = client.post(
        "/realtime/subscription-token/", {"channel": f"test_report_{user.pk}"}, content_type="application/json"
    )
    assert response.status_code == 200
    sub_token = response.json()["token"]

    async def scenario() -> None:
        listener = Listener(gateway.ws_url, token=token)
        try:
            await listener.connect()
            channel = f"test_report_{user.pk}"
            assert await listener.subscribe(f"test_report_{user.pk}x") == (
                "unsubscribed",
                f"test_report_{user.pk}x",
                103,
            )
            assert await listener.subscribe(channel, token=sub_token) == ("subscribed", channel)
        finally:
            await listener.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("recoverable", [True, False], ids=["critical", "plain"])
def test_event_published_from_a_celery_task_reaches_the_sdk(
    make_user: Callable[..., User],
    tenant: int,
    gateway: GatewayProcess,
    gateway_worker: CeleryWorker,
    recoverable: bool,
) -> None:
    user = make_user(tenant_id=tenant)
    body = token_from_view(user)
    channel = f"critical:test_tenant_{tenant}" if recoverable else f"test_tenant_{tenant}"

    async def scenario() -> None:
        listener = Listener(body["socket_url"], token=body["token"])
        try:
            await listener.connect()
            assert await listener.subscribe(channel) == ("subscribed", channel)
            await asyncio.to_thread(
                publish_realtime_event.delay,
                channel=f"tenant_{tenant}",
                event_type="order.completed",
                payload={"order_id": 42, "total": "19.99"},
                recoverable=recoverable,
            )
            await listener.wait_for(lambda: len(listener.publications.get(channel, [])) >= 1, within=15)
            assert listener.publications[channel] == [
                {"type": "order.completed", "payload": {"order_id": 42, "total": "19.99"}}
            ]
        finally:
            await listener.close()

    asyncio.run(scenario())


def test_timed_out_publish_that_the_gateway_applied_is_delivered_once(
    make_user: Callable[..., User],
    tenant: int,
    gateway: GatewayProcess,
    scripted: ScriptedApi,
    scripted_worker: CeleryWorker,
) -> None:
    # The scripted server relays the first attempt to the gateway (which applies it),
    # then holds the answer past the worker's timeout; the retry is relayed as well.
    scripted.script(forward_then_stall(gateway.api_url), forward(gateway.api_url))
    user = make_user(tenant_id=tenant)
    body = token_from_view(user)
    channel = f"critical:test_tenant_{tenant}"
    mark = scripted_worker.mark()

    async def scenario() -> None:
        listener = Listener(gateway.ws_url, token=body["token"])
        try:
            await listener.connect()
            assert await listener.subscribe(channel) == ("subscribed", channel)
            sent = await asyncio.to_thread(
                publish_realtime_event.delay,
                channel=f"tenant_{tenant}",
                event_type="order.completed",
                payload={"order_id": 1},
                recoverable=True,
            )
            await asyncio.to_thread(scripted_worker.wait_for_log, succeeded(sent.id), mark)
            attempts = scripted.seen(channel)
            assert len(attempts) == 2
            assert attempts[0].idempotency_key == attempts[1].idempotency_key
            # A later publication on the same channel arrives after any duplicate would have.
            with ApiClient(gateway.api_url, TEST_API_KEY) as api:
                await asyncio.to_thread(api.publish, channel, {"type": "sentinel"})
            await listener.wait_for(lambda: {"type": "sentinel"} in listener.publications.get(channel, []))
            assert listener.publications[channel] == [
                {"type": "order.completed", "payload": {"order_id": 1}},
                {"type": "sentinel"},
            ]
        finally:
            await listener.close()

    asyncio.run(scenario())


def test_invalidate_user_tokens_reconnects_with_current_grants(
    make_user: Callable[..., User], tenant: int, gateway: GatewayProcess
) -> None:
    user = make_user(tenant_id=tenant)
    old_token = token_from_view(user)["token"]
    # The user moves to another tenant; the token they hold still grants the old one.
    user.tenant_id = tenant + 1
    user.save()
    fresh_tokens: list[str] = []

    async def get_token() -> str:
        # Minted from the loaded user, exactly as the view would mint it.
        token = await asyncio.to_thread(RealtimeTokenService().generate_connection_token, user)
        fresh_tokens.append(token)
        return token

    old_channel, new_channel = f"test_tenant_{tenant}", f"test_tenant_{tenant + 1}"

    async def scenario() -> None:
        listener = Listener(gateway.ws_url, token=old_token, get_token=get_token)
        try:
            await listener.connect()
            assert await listener.subscribe(old_channel) == ("subscribed", old_channel)
            events_before = len(listener.events)

            await asyncio.to_thread(invalidate_user_tokens, user.pk)

            # Closed with 3005 (a reconnect code), refused the old token, fetched a new one...
            await listener.wait_for(lambda: ("connecting", 3005) in listener.events[events_before:])
            await listener.wait_for(lambda: ("connected", 0) in listener.events[events_before:], within=15)
            assert fresh_tokens
            # ...which no longer grants the old tenant: the resubscription is refused.
            await listener.wait_for(lambda: ("unsubscribed", old_channel, 103) in listener.events)
            new_grants = jwt.decode(fresh_tokens[-1], TEST_SECRET, algorithms=["HS256"])["channels"]
            assert new_channel in new_grants and old_channel not in new_grants
        finally:
            await listener.close()

    asyncio.run(scenario())


def test_disconnect_user_closes_connections_for_good(
    make_user: Callable[..., User], tenant: int, gateway: GatewayProcess
) -> None:
    user, other = make_user(tenant_id=tenant), make_user("bob", tenant_id=tenant)
    token, other_token = token_from_view(user)["token"], token_from_view(other)["token"]

    async def scenario() -> None:
        listener = Listener(gateway.ws_url, token=token)
        # The fence: a client with the same reconnect settings, closed with a *reconnect*
        # code just after. Once it is back, a reconnect of the first one (which would start
        # with "connecting" at the moment of the close) would have shown.
        control = Listener(gateway.ws_url, token=other_token)
        try:
            await listener.connect()
            await control.connect()
            before = len(listener.events)
            await asyncio.to_thread(disconnect_user, user.pk)
            await listener.wait_for(lambda: len(listener.events) > before)

            control_before = len(control.events)
            with ApiClient(gateway.api_url, TEST_API_KEY) as api:
                await asyncio.to_thread(api.disconnect, str(other.pk), code=4000, reason="come back")
            await control.wait_for(lambda: ("connecting", 4000) in control.events[control_before:])
            await control.wait_for(lambda: ("connected", 0) in control.events[control_before:])

            assert listener.events[before:] == [("disconnected", 3503)]
        finally:
            await listener.close()
            await control.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_timed_out_api_publish_retried_with_its_key_reaches_the_sdk_once(
    gateway: GatewayProcess, scripted: ScriptedApi, kind: str
) -> None:
    # test_apiclient.py counts deliveries with the scripted server's copy of the gateway's
    # deduplication; here the real gateway deduplicates and the official SDK counts.
    scripted.script(forward_then_stall(gateway.api_url), forward(gateway.api_url))
    channel = f"critical:{unique('apiclient')}"

    async def scenario() -> None:
        listener = Listener(gateway.ws_url, token=token(channels=[channel]))
        try:
            await listener.connect()
            assert await listener.subscribe(channel) == ("subscribed", channel)
            if kind == "sync":
                with ApiClient(scripted.url, TEST_API_KEY, timeout=seconds(0.5)) as api:
                    with pytest.raises(TransientApiError, match="timed out"):
                        await asyncio.to_thread(api.publish, channel, {"n": 1}, idempotency_key="same")
                    await asyncio.to_thread(api.publish, channel, {"n": 1}, idempotency_key="same")
            else:
                async with AsyncApiClient(scripted.url, TEST_API_KEY, timeout=seconds(0.5)) as aapi:
                    with pytest.raises(TransientApiError, match="timed out"):
                        await aapi.publish(channel, {"n": 1}, idempotency_key="same")
                    await aapi.publish(channel, {"n": 1}, idempotency_key="same")
            assert len(scripted.seen(channel)) == 2
            with ApiClient(gateway.api_url, TEST_API_KEY) as api:
                await asyncio.to_thread(api.publish, channel, {"type": "sentinel"})
            await listener.wait_for(lambda: {"type": "sentinel"} in listener.publications.get(channel, []))
            assert listener.publications[channel] == [{"n": 1}, {"type": "sentinel"}]
        finally:
            await listener.close()

    asyncio.run(scenario())

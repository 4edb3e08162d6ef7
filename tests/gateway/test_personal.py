"""Personal channels (spec §10.1): ``user_subscribe_to_personal``, its namespace, and
``user_personal_single_connection``, with the official Python SDK."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from centrifuge import Client

from herald.gateway.config import ConfigError, parse_config
from tests.support.api import publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.pyclient import Recorder, close_client
from tests.support.tokens import token

PERSONAL_NS = {"name": "personal", "history_size": 10, "history_ttl": "60s", "force_recovery": True}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    cfg = base_config(
        user_subscribe_to_personal=True,
        user_personal_channel_namespace="personal",
        user_personal_single_connection=True,
    )
    cfg["namespaces"] = [*cfg["namespaces"], PERSONAL_NS]
    with running_gateway(cfg) as gw:
        yield gw


def sdk(gw: GatewayProcess, user: str, recorder: Recorder) -> Client:
    return Client(gw.ws_url, token=token(user=user, channels=[]), events=recorder.client_handler())


async def test_the_user_receives_its_personal_channel_without_subscribing(gateway: GatewayProcess) -> None:
    user, recorder = f"u{uuid.uuid4().hex[:8]}", Recorder()
    client = sdk(gateway, user, recorder)
    try:
        await client.connect()
        channel = f"personal:#{user}"
        subscribed = await recorder.wait_for("subscribed", channel)
        assert subscribed.ctx.recoverable  # the namespace's options apply
        result = await asyncio.to_thread(publish, gateway.api_url, channel, {"for": user})
        pub = await recorder.wait_for("publication", channel)
        assert pub.ctx.pub.data == {"for": user} and pub.ctx.pub.offset == result["offset"]
        # Another user's personal channel does not reach this one.
        await asyncio.to_thread(publish, gateway.api_url, "personal:#someone-else", {"for": "someone else"})
        await asyncio.to_thread(publish, gateway.api_url, channel, {"fence": True})
        await recorder.wait_for("publication", channel, where=lambda ctx: ctx.pub.data == {"fence": True})
        assert [e.ctx.pub.data for e in recorder.of("publication")] == [{"for": user}, {"fence": True}]
    finally:
        await close_client(client)


async def test_a_second_connection_of_the_user_closes_the_first(gateway: GatewayProcess) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    first_events, second_events, other_events = Recorder(), Recorder(), Recorder()
    first, second = sdk(gateway, user, first_events), sdk(gateway, user, second_events)
    other = sdk(gateway, f"other-{user}", other_events)
    try:
        await first.connect()
        await first_events.wait_for("connected")
        await other.connect()
        await other_events.wait_for("connected")
        await second.connect()
        await second_events.wait_for("connected")
        gone = await first_events.wait_for("disconnected")
        assert gone.ctx.code == 3504 and gone.ctx.reason == "connection limit"  # terminal: no reconnect
        # One control message closed the first: the newer connection and the other user's stay.
        assert not second_events.of("disconnected") and not other_events.of("disconnected")
        channel = f"personal:#{user}"
        await asyncio.to_thread(publish, gateway.api_url, channel, {"still": "here"})
        await second_events.wait_for("publication", channel)
    finally:
        for client in (first, second, other):
            await close_client(client)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"user_subscribe_to_personal": True, "user_personal_channel_namespace": "nope"}, "no namespace named"),
        ({"user_personal_single_connection": True}, "needs user_subscribe_to_personal"),
    ],
)
def test_personal_settings_are_checked(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(base_config(**overrides), {})
    assert any(problem in line for line in error.value.problems), error.value.problems

"""Defects a hostile client or a careless config used to find: each answered with the protocol's
error or disconnect code, on that connection only, with one log line and no traceback."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.support.api import api, api_raw, publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.tokens import sub_token, token

BAD_REQUEST = {"code": 107, "message": "bad request"}


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    namespaces = [
        {"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True},
        {"name": "open", "allow_subscribe_for_client": True, "allow_publish_for_subscriber": True},
    ]
    with running_gateway(base_config(client_channel_limit=0, namespaces=namespaces)) as gateway:
        yield gateway


async def listener(gw: GatewayProcess) -> tuple[RawClient, str]:
    """A bystander subscribed to a channel of its own: it must keep receiving whatever others do."""
    channel = f"open:{uuid.uuid4().hex[:8]}"
    client = await RawClient.open(gw.ws_url)
    await client.connect(token())
    assert "subscribe" in await client.subscribe(channel)
    return client, channel


async def still_receives(client: RawClient, gw: GatewayProcess, channel: str) -> None:
    marker = uuid.uuid4().hex
    publish(gw.api_url, channel, {"m": marker})
    assert (await client.push(lambda p: "pub" in p))["pub"]["data"] == {"m": marker}


async def test_a_zero_channel_limit_means_unlimited(gw: GatewayProcess) -> None:
    channels = [f"c{i}" for i in range(130)]  # more than the default limit of 128
    client = await RawClient.open(gw.ws_url)
    await client.connect(token(channels=channels))
    for channel in channels:
        assert "subscribe" in await client.subscribe(channel), channel
    await client.close()


@pytest.mark.parametrize("depth", [1_000, 30_000])
async def test_deeply_nested_json_ends_that_connection_with_3501_and_one_log_line(
    gw: GatewayProcess, depth: int
) -> None:
    bystander, channel = await listener(gw)
    log_before = gw.log()
    client = await RawClient.open(gw.ws_url)
    await client.connect(token())
    nested = "[" * depth + "]" * depth
    await client.send(f'{{"id":2,"publish":{{"channel":"{channel}","data":{nested}}}}}')
    assert await client.closed() == (3501, "bad request")
    await still_receives(bystander, gw, channel)
    new_lines = gw.log()[len(log_before) :]
    assert "Traceback" not in new_lines and "RecursionError" not in new_lines
    assert new_lines.count("sent a bad frame") == 1
    await bystander.close()


def test_deeply_nested_json_to_the_server_api_is_a_bad_request(gw: GatewayProcess) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    body = f'{{"channel":"x","data":{nested}}}'.encode()
    assert api_raw(gw.api_url, "publish", body)[0] == 400
    assert api_raw(gw.api_url, "batch", f'{{"commands":[{{"publish":{body.decode()}}}]}}'.encode())[0] == 400
    assert api_raw(gw.api_url, "", f'{{"method":"publish","params":{body.decode()}}}'.encode())[0] == 400
    assert "Traceback" not in gw.log()


BAD_NAMES = [
    "nul\x00name",
    "new\nline",
    "carriage\rreturn",
    "unit\x1fseparator",
    "del\x7f",
    "c1\x85control",
    "x" * 256,
    "critical:" + "y" * 250,
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_bad_channel_names_are_refused_by_every_client_command(gw: GatewayProcess, name: str) -> None:
    bystander, channel = await listener(gw)
    client = await RawClient.open(gw.ws_url)
    await client.connect(token(channels=[name]))  # even a granted name is refused
    for method, params in [
        ("subscribe", {"channel": name}),
        ("subscribe", {"channel": name, "token": sub_token(name)}),
        ("publish", {"channel": name, "data": {}}),
        ("history", {"channel": name}),
        ("presence", {"channel": name}),
        ("presence_stats", {"channel": name}),
        ("unsubscribe", {"channel": name}),
    ]:
        assert (await client.command(method, params))["error"] == BAD_REQUEST, method
    assert "subscribe" in await client.subscribe(channel)  # the connection stays usable
    await still_receives(bystander, gw, channel)
    await client.close()
    await bystander.close()


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_channel_names_are_refused_by_every_api_method(gw: GatewayProcess, name: str) -> None:
    error = {"error": BAD_REQUEST}
    for method, params in [
        ("publish", {"channel": name, "data": {}}),
        ("history", {"channel": name}),
        ("history_remove", {"channel": name}),
        ("presence", {"channel": name}),
        ("presence_stats", {"channel": name}),
        ("subscribe", {"channel": name, "user": "5"}),
        ("unsubscribe", {"channel": name, "user": "5"}),
    ]:
        assert api(gw.api_url, method, params) == error, method
    reply = api(gw.api_url, "broadcast", {"channels": ["open:fine", name], "data": {}})
    assert reply["result"]["responses"][1] == error


def test_a_lone_surrogate_is_not_a_channel_name(gw: GatewayProcess) -> None:
    assert api_raw(gw.api_url, "publish", b'{"channel":"a\\ud800b","data":{}}')[0] == 400


async def test_a_lone_surrogate_in_a_client_frame_ends_the_connection(gw: GatewayProcess) -> None:
    client = await RawClient.open(gw.ws_url)
    await client.connect(token())
    await client.send('{"id":2,"subscribe":{"channel":"a\\ud800b"}}')
    assert await client.closed() == (3501, "bad request")


async def test_a_token_over_the_size_limit_is_refused_before_decoding(gw: GatewayProcess) -> None:
    huge = token(info={"pad": "x" * 9000})
    assert len(huge) > 8192
    client = await RawClient.open(gw.ws_url)
    await client.send(json.dumps({"id": 1, "connect": {"token": huge}}))
    assert await client.closed() == (3500, "invalid token")
    client = await RawClient.open(gw.ws_url)
    await client.connect(token())
    channel = "$private"
    big_sub = sub_token(channel, info={"pad": "x" * 9000})
    assert (await client.subscribe(channel, token=big_sub))["error"]["code"] == 103
    await client.close()
    assert "longer than 8192" in gw.log()


# --- per-connection command rate limit


@pytest.fixture(scope="module")
def limited() -> Iterator[GatewayProcess]:
    cfg = base_config(
        client_command_rate_limit=1,
        client_command_rate_burst=5,
        namespaces=[{"name": "open", "allow_subscribe_for_client": True}],
    )
    with running_gateway(cfg) as gateway:
        yield gateway


async def test_commands_over_the_rate_get_111_then_sustained_abuse_ends_with_3013(limited: GatewayProcess) -> None:
    client = await RawClient.open(limited.ws_url)
    await client.connect(token())  # 1 of the burst of 5
    frame = "\n".join(json.dumps({"id": i, "subscribe": {"channel": f"open:{i}"}}) for i in range(2, 20))
    await client.send(frame)
    for i in range(2, 6):  # the rest of the burst
        assert "subscribe" in await client.reply(i), i
    for i in range(6, 10):  # refused, temporary: a well-behaved client backs off
        assert (await client.reply(i))["error"] == {"code": 111, "message": "too many requests", "temporary": True}
    assert await client.closed() == (3013, "too many requests")  # the fifth refusal in a row


async def test_the_rate_limit_is_per_connection(limited: GatewayProcess) -> None:
    abuser = await RawClient.open(limited.ws_url)
    await abuser.connect(token())
    await abuser.send("\n".join(json.dumps({"id": i, "subscribe": {"channel": f"open:{i}"}}) for i in range(2, 20)))
    assert (await abuser.closed())[0] == 3013
    calm = await RawClient.open(limited.ws_url)
    await calm.connect(token())
    for i in range(4):
        assert "subscribe" in await calm.subscribe(f"open:calm{i}")
    await calm.close()

"""Connect proxy (proxy.md §3.1, §4, §5): a token-less connect asks the application backend; a
token never does. A real gateway process calls a real aiohttp backend in the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from centrifuge import Client

from tests.support.api import api, publish
from tests.support.app_backend import AppBackend, Reply
from tests.support.gateway import GatewayProcess, base_config, fresh_channel, running_gateway
from tests.support.pyclient import Recorder, close_client
from tests.support.raw import RawClient
from tests.support.timing import duration, seconds
from tests.support.tokens import token

NAMESPACES = [{"name": "news", "presence": True}]


@pytest.fixture(scope="module")
def gateway(backend: AppBackend) -> Iterator[GatewayProcess]:
    config = base_config(
        **backend.endpoints("connect", timeout=duration(1)),
        proxy_http_headers=["Cookie", "X-Forwarded-For"],
        proxy_static_http_headers={"X-Gateway": "herald", "Cookie": "overridden-by-the-client"},
        namespaces=NAMESPACES,
    )
    with running_gateway(config) as gw:
        yield gw


async def test_connect_without_token_takes_user_data_and_channels_from_the_backend(
    gateway: GatewayProcess, backend: AppBackend
) -> None:
    channel = fresh_channel("news")
    backend.answer(
        "connect",
        {
            "result": {
                "user": "alice",
                "info": {"name": "Alice"},
                "data": {"welcome": True},
                "channels": [channel],
            }
        },
    )
    recorder = Recorder()
    client = Client(gateway.ws_url, events=recorder.client_handler(), data={"session": "s1"})
    await client.connect()
    connected = await recorder.wait_for("connected")
    assert connected.ctx.data == {"welcome": True}
    await recorder.wait_for("subscribed", channel)  # a server-side subscription

    [call] = backend.calls("connect")
    assert call.body == {
        "client": connected.ctx.client,
        "transport": "websocket",
        "protocol": "json",
        "encoding": "json",
        "name": "python",
        "data": {"session": "s1"},
    }
    presence = api(gateway.api_url, "presence", {"channel": channel})["result"]["presence"]
    assert [(p["user"], p.get("conn_info")) for p in presence.values()] == [("alice", {"name": "Alice"})]
    publish(gateway.api_url, channel, {"n": 1})
    pub = await recorder.wait_for("publication", channel)
    assert pub.ctx.pub.data == {"n": 1}
    await close_client(client)


async def test_b64_fields_and_subs_with_options(gateway: GatewayProcess, backend: AppBackend) -> None:
    channel = fresh_channel("news")
    backend.answer(
        "connect",
        {
            "result": {
                "user": "bob",
                "b64info": "eyJiIjogMX0=",  # {"b": 1}
                "b64data": "WzEsMl0=",  # [1,2]
                "subs": {channel: {"info": {"room": 7}, "data": {"hello": "sub"}}},
            }
        },
    )
    raw = await RawClient.open(gateway.ws_url)
    reply = await raw.connect()
    assert reply["connect"]["data"] == [1, 2]
    assert reply["connect"]["subs"][channel].get("data") == {"hello": "sub"}
    presence = api(gateway.api_url, "presence", {"channel": channel})["result"]["presence"]
    [entry] = presence.values()
    assert (entry["user"], entry["conn_info"], entry["chan_info"]) == ("bob", {"b": 1}, {"room": 7})
    await raw.close()


async def test_a_token_takes_the_fast_path_without_asking_the_backend(
    gateway: GatewayProcess, backend: AppBackend
) -> None:
    backend.answer("connect", {"error": {"code": 1403, "message": "the backend must not be asked"}})
    recorder = Recorder()
    client = Client(gateway.ws_url, token=token(user="7"), events=recorder.client_handler())
    await client.connect()
    await recorder.wait_for("connected")
    assert backend.calls() == []
    await close_client(client)


async def test_listed_headers_of_the_upgrade_request_are_forwarded(
    gateway: GatewayProcess, backend: AppBackend
) -> None:
    backend.answer("connect", {"result": {"user": "carol"}})
    headers = {"Cookie": "sessionid=abc123", "X-Forwarded-For": "203.0.113.9", "X-Not-Listed": "secret"}
    recorder = Recorder()
    client = Client(gateway.ws_url, events=recorder.client_handler(), headers=headers)
    await client.connect()
    await recorder.wait_for("connected")
    [call] = backend.calls("connect")
    assert call.headers["cookie"] == "sessionid=abc123"  # the client's wins over the static one
    assert call.headers["x-forwarded-for"] == "203.0.113.9"
    assert call.headers["x-gateway"] == "herald"  # a static header
    assert call.headers["content-type"] == "application/json"
    assert "x-not-listed" not in call.headers
    await close_client(client)


async def test_custom_disconnect_reaches_the_client(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("connect", {"disconnect": {"code": 4501, "reason": "banned"}, "error": {"code": 1000}})
    recorder = Recorder()
    client = Client(gateway.ws_url, events=recorder.client_handler())
    await client.connect()
    event = await recorder.wait_for("disconnected")
    assert (event.ctx.code, event.ctx.reason) == (4501, "banned")  # disconnect wins over error
    await close_client(client)


async def test_custom_error_reaches_the_client(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("connect", {"error": {"code": 1403, "message": "log in first"}})
    recorder = Recorder()
    client = Client(gateway.ws_url, events=recorder.client_handler())
    await client.connect()
    event = await recorder.wait_for("disconnected")  # not temporary: the SDK stops
    assert (event.ctx.code, event.ctx.reason) == (1403, "log in first")
    await close_client(client)


async def test_temporary_custom_error_is_passed_verbatim(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("connect", {"error": {"code": 1503, "message": "try later", "temporary": True}})
    raw = await RawClient.open(gateway.ws_url)
    reply = await raw.connect()
    assert reply["error"] == {"code": 1503, "message": "try later", "temporary": True}
    await raw.close()


async def test_empty_result_is_an_anonymous_connection(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("connect", {"result": {}})
    raw = await RawClient.open(gateway.ws_url)
    reply = await raw.connect()
    assert reply["connect"]["client"]
    await raw.close()


async def test_no_result_without_anonymous_access_is_a_bad_request(
    gateway: GatewayProcess, backend: AppBackend
) -> None:
    backend.answer("connect", {})
    raw = await RawClient.open(gateway.ws_url)
    await raw.send('{"id":1,"connect":{}}')
    assert await raw.closed() == (3501, "bad request")


async def test_expire_at_in_the_past_is_error_110(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("connect", {"result": {"user": "dave", "expire_at": 1000}})
    raw = await RawClient.open(gateway.ws_url)
    reply = await raw.connect()
    assert reply["error"]["code"] == 110
    await raw.close()


async def test_unknown_namespace_in_channels_fails_the_connect(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("connect", {"result": {"user": "erin", "channels": ["nowhere:x"]}})
    raw = await RawClient.open(gateway.ws_url)
    reply = await raw.connect()
    assert reply["error"]["code"] == 102
    await raw.close()


@pytest.mark.parametrize(
    "failure",
    [
        Reply(500, b'{"result": {"user": "x"}}'),
        Reply(200, b"not json"),
        Reply(200, b'{"result": {"user": 5}}'),  # the wrong shape
        Reply(200, b'{"result": {"user": "x"}}', delay=3.0),  # past the 1-unit timeout
    ],
    ids=["status-500", "invalid-json", "wrong-shape", "timeout"],
)
async def test_backend_failure_is_a_temporary_internal_error(
    gateway: GatewayProcess, backend: AppBackend, failure: Reply
) -> None:
    failure.delay *= seconds(1)
    backend.answer("connect", failure)
    raw = await RawClient.open(gateway.ws_url)
    reply = await raw.connect()
    assert reply["error"] == {"code": 100, "message": "internal server error", "temporary": True}
    await raw.close()


async def test_sdk_reconnects_after_a_backend_failure(gateway: GatewayProcess, backend: AppBackend) -> None:
    answers = iter([Reply(503), Reply.json({"result": {"user": "frank"}})])
    backend.answer("connect", lambda call: next(answers))
    recorder = Recorder()
    client = Client(gateway.ws_url, events=recorder.client_handler(), min_reconnect_delay=0.05)
    await client.connect()
    await recorder.wait_for("connected")
    error = recorder.of("error")[0]
    assert error.ctx.error.code == 100
    assert len(backend.calls("connect")) == 2
    await close_client(client)

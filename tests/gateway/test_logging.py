"""``log_format: json``: one JSON object per line, and one line per connect, disconnect and
refused connection with its fields (docs/operations.md, "Logs").

A real gateway process logs to the captured stream; each test acts as its own user, so its
lines are told apart from the others'. Before a test counts its lines it has the gateway write
one more line (a fence connection of its own) and waits for it: the gateway handles events in
order, so nothing of the test is still on its way and "exactly these lines" can be asserted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from centrifuge import Client
from websockets.exceptions import InvalidStatus

from herald.gateway.config import ConfigError, parse_config
from herald.gateway.logs import JsonFormatter, TextFormatter
from tests.support.api import api
from tests.support.forge import JWT_HEADER, claims, forge
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.pyclient import Recorder, close_client
from tests.support.raw import RawClient
from tests.support.timing import seconds, wait_until
from tests.support.tokens import token

Line = dict[str, Any]
ALLOWED_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    cfg = base_config(
        log_format="json", uni_http_stream=True, allowed_origins=[ALLOWED_ORIGIN], client_user_connection_limit=2
    )
    with running_gateway(cfg) as gateway:
        yield gateway


def log_lines(gw: GatewayProcess) -> list[Line]:
    """Every line the gateway wrote, each parsed: a line that is not a JSON object fails the test."""
    lines = []
    for number, text in enumerate(gw.log().splitlines(), 1):
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            raise AssertionError(f"log line {number} is not JSON: {text!r}") from None
        assert isinstance(line, dict), text
        assert {"time", "level", "logger", "message"} <= line.keys(), text
        lines.append(line)
    return lines


def user_lines(gw: GatewayProcess, user: str) -> list[Line]:
    return [line for line in log_lines(gw) if line.get("user") == user]


async def fence(gw: GatewayProcess) -> list[Line]:
    """The log once a line caused after everything else has been written (see the module doc)."""
    user = f"fence-{uuid.uuid4().hex[:8]}"
    client = await RawClient.open(gw.ws_url)
    await client.connect(token(user=user))
    await wait_until(lambda: user_lines(gw, user), "the fence's connect line")
    await client.close()
    await wait_until(lambda: len(user_lines(gw, user)) == 2, "the fence's disconnect line")
    return log_lines(gw)


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def assert_connect(line: Line, user: str, client: str, transport: str = "websocket") -> None:
    assert line["level"] == "INFO" and line["logger"] == "herald.connections", line
    assert line["message"] == "client connected", line
    assert {k: line[k] for k in ("event", "user", "client", "transport")} == {
        "event": "connect",
        "user": user,
        "client": client,
        "transport": transport,
    }


def assert_disconnect(line: Line, user: str, client: str, code: int, reason: str, transport: str = "websocket") -> None:
    assert line["level"] == "INFO" and line["logger"] == "herald.connections", line
    assert line["message"] == "client disconnected", line
    assert {k: line[k] for k in ("event", "user", "client", "transport", "code", "reason")} == {
        "event": "disconnect",
        "user": user,
        "client": client,
        "transport": transport,
        "code": code,
        "reason": reason,
    }
    assert isinstance(line["duration"], float) and 0 <= line["duration"] < seconds(30), line


async def test_sdk_connect_and_close_write_one_line_each(gw: GatewayProcess) -> None:
    user, recorder = new_user(), Recorder()
    client = Client(gw.ws_url, token=token(user=user), events=recorder.client_handler())
    await client.connect()
    connected = await recorder.wait_for("connected")
    client_id = connected.ctx.client
    await close_client(client)
    await fence(gw)
    connect, disconnect = user_lines(gw, user)
    assert_connect(connect, user, client_id)
    assert_disconnect(disconnect, user, client_id, 3000, "connection closed")


async def test_a_server_api_disconnect_is_logged_with_its_code_and_reason(gw: GatewayProcess) -> None:
    user = new_user()
    first, second = await RawClient.open(gw.ws_url), await RawClient.open(gw.ws_url)
    ids = [(await c.connect(token(user=user)))["connect"]["client"] for c in (first, second)]
    api(gw.api_url, "disconnect", {"user": user, "client": ids[0]})
    assert await first.closed() == (3503, "force disconnect")
    api(gw.api_url, "disconnect", {"user": user, "disconnect": {"code": 4501, "reason": "moved to node 2"}})
    assert await second.closed() == (4501, "moved to node 2")
    lines = [line for line in await fence(gw) if line.get("user") == user]
    assert [line["event"] for line in lines] == ["connect", "connect", "disconnect", "disconnect"]
    assert_connect(lines[0], user, ids[0])
    assert_connect(lines[1], user, ids[1])
    assert_disconnect(lines[2], user, ids[0], 3503, "force disconnect")
    assert_disconnect(lines[3], user, ids[1], 4501, "moved to node 2")


def refusals(lines: list[Line], code: int) -> list[Line]:
    return [line for line in lines if line.get("event") == "refused" and line.get("code") == code]


async def test_refused_connects_write_one_line_each_with_the_reason_and_no_token(gw: GatewayProcess) -> None:
    user = new_user()
    forged = forge(JWT_HEADER, claims(user), "another-secret-another-secret-another-secret")
    expired = token(user=user, ttl=-60)
    before = log_lines(gw)
    bad = await RawClient.open(gw.ws_url)
    await bad.send(json.dumps({"id": 1, "connect": {"token": forged}}))
    assert await bad.closed() == (3500, "invalid token")
    late = await RawClient.open(gw.ws_url)
    await late.send(json.dumps({"id": 1, "connect": {"token": expired}}))
    assert (await late.reply(1))["error"] == {"code": 109, "message": "token expired"}
    await late.close()
    lines = await fence(gw)

    [invalid] = refusals(lines, 3500)[len(refusals(before, 3500)) :]
    assert {k: invalid[k] for k in ("level", "logger", "message", "transport", "reason", "detail")} == {
        "level": "INFO",
        "logger": "herald.connections",
        "message": "connection refused",
        "transport": "websocket",
        "reason": "invalid token",
        "detail": "invalid connection token: Signature verification failed",
    }
    [too_late] = refusals(lines, 109)[len(refusals(before, 109)) :]
    assert (too_late["reason"], too_late["transport"]) == ("token expired", "websocket")
    # Nothing else about either connection: no connect line, no disconnect line, no traceback.
    for refused in (invalid, too_late):
        assert [line for line in lines if line.get("client") == refused["client"]] == [refused]
    assert not user_lines(gw, user)
    text = "\n".join(json.dumps(line) for line in lines[len(before) :])
    assert "Traceback" not in text
    for secret in (forged, expired, forged.rsplit(".", 1)[1], expired.rsplit(".", 1)[1]):
        assert secret not in gw.log()


async def test_a_connection_over_the_user_limit_is_refused_with_the_user(gw: GatewayProcess) -> None:
    user = new_user()
    allowed = [await RawClient.open(gw.ws_url) for _ in range(2)]
    ids = [(await c.connect(token(user=user)))["connect"]["client"] for c in allowed]
    third = await RawClient.open(gw.ws_url)
    await third.send(json.dumps({"id": 1, "connect": {"token": token(user=user)}}))
    assert await third.closed() == (3504, "connection limit")
    for client in allowed:
        await client.close()
    await fence(gw)
    lines = user_lines(gw, user)
    assert [line["event"] for line in lines] == ["connect", "connect", "refused", "disconnect", "disconnect"]
    refused = lines[2]
    assert refused["client"] not in ids and "detail" not in refused and refused["user"] == user
    assert {k: refused[k] for k in ("message", "code", "reason", "transport")} == {
        "message": "connection refused",
        "code": 3504,
        "reason": "connection limit",
        "transport": "websocket",
    }


async def test_an_upgrade_refused_by_origin_is_one_line_with_the_status(gw: GatewayProcess) -> None:
    before = len([line for line in log_lines(gw) if line.get("status") == 403])
    with pytest.raises(InvalidStatus) as refused:
        await RawClient.open(gw.ws_url, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    lines = await fence(gw)
    origin_lines = [line for line in lines if line.get("status") == 403]
    assert len(origin_lines) == before + 1
    assert {k: origin_lines[-1][k] for k in ("logger", "message", "event", "transport", "reason")} == {
        "logger": "herald.connections",
        "message": "connection refused",
        "event": "refused",
        "transport": "websocket",
        "reason": "origin not allowed",
    }


async def test_stream_transports_are_named_in_their_lines(gw: GatewayProcess) -> None:
    user = new_user()
    url = f"{gw.http_url}/connection/uni_http_stream"
    body = json.dumps({"token": token(user=user)})
    async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
        assert response.status == 200
        first = json.loads(await asyncio.wait_for(response.content.readline(), seconds(5)))
        client_id = first["connect"]["client"]
    await fence(gw)
    connect, disconnect = user_lines(gw, user)
    assert_connect(connect, user, client_id, transport="uni_http_stream")
    assert_disconnect(disconnect, user, client_id, 3000, "connection closed", transport="uni_http_stream")


async def test_no_line_per_socket_from_the_websocket_library(gw: GatewayProcess) -> None:
    """A socket dropped without a close frame (a killed tab, a lost network) is one disconnect
    line, not also the library's unstructured "connection closed" line."""
    users = [new_user() for _ in range(3)]
    for user in users:
        client = await RawClient.open(gw.ws_url)
        await client.connect(token(user=user))
        client.ws.transport.abort()
    lines = await fence(gw)
    for user in users:
        assert [line["event"] for line in lines if line.get("user") == user] == ["connect", "disconnect"]
    assert not [line for line in lines if line["logger"].startswith("herald.gateway.transports.websocket")]
    assert not [line for line in lines if line["message"] == "connection closed"]


def test_every_line_is_json_including_the_start_line(gw: GatewayProcess) -> None:
    lines = log_lines(gw)
    start = lines[0]
    assert start["logger"] == "herald" and "listening on" in start["message"], start
    assert start["time"].endswith("Z") and "T" in start["time"]


async def test_text_format_carries_the_same_fields_as_key_value_pairs() -> None:
    user = f"user with space {uuid.uuid4().hex[:4]}"
    with running_gateway(base_config()) as gw:
        client = await RawClient.open(gw.ws_url)
        client_id = (await client.connect(token(user=user)))["connect"]["client"]
        await client.close()
        wanted = f'client disconnected event=disconnect user="{user}" client={client_id} transport=websocket code=3000'
        await wait_until(lambda: wanted in gw.log(), "the disconnect line in text")
        assert f'INFO herald.connections: client connected event=connect user="{user}" client={client_id}' in gw.log()


def test_a_traceback_stays_inside_its_json_line_and_fields_never_replace_the_four_keys() -> None:
    record = logging.getLogger("herald.test").makeRecord(
        "herald.test", logging.ERROR, __file__, 1, "failed %s", ("once",), None, extra={"level": "x", "code": 3}
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter(with_pid=True).format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["message"], entry["code"], entry["pid"]) == ("ERROR", "failed once", 3, os.getpid())
    assert "RuntimeError: boom" in entry["exc_info"]
    text = TextFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    first, _, rest = text.partition("\n")
    assert first == "ERROR herald.test: failed once level=x code=3" and "RuntimeError: boom" in rest


def test_log_format_is_checked_by_name_in_flat_and_v6_configs() -> None:
    config, _ = parse_config({**base_config(), "log_format": "json"}, environ={})
    assert config.log_format == "json"
    v6, _ = parse_config({"client": {"token": {"hmac_secret_key": "k" * 40}}, "log": {"format": "json"}}, environ={})
    assert v6.log_format == "json"
    with pytest.raises(ConfigError) as bad:
        parse_config({**base_config(), "log_format": "xml"}, environ={})
    assert bad.value.problems == ['log_format: must be one of "text", "json", got "xml"']


async def test_configuration_warnings_are_json_lines_too() -> None:
    cfg = base_config(log_format="json", api_keys=[{"key": "short-key", "channel_prefix": "staging_"}])
    with running_gateway(cfg) as gw:
        lines = log_lines(gw)  # every line parses
        warnings = [line for line in lines if line["logger"] == "herald.config"]
        assert [(line["level"], line["message"].split(":")[0]) for line in warnings] == [("WARNING", "api_keys")]
        assert "short-key" not in gw.log()

"""No token, key or secret ever reaches the gateway's log, at any level (docs/security.md).

One scripted scenario against a gateway logging at ``debug``: good, forged, garbage and expired
connection tokens on connect and refresh, subscription tokens on subscribe and sub_refresh,
good and bad API keys in all three places a key may travel (``X-API-Key``,
``Authorization: apikey``, ``?api_key=``), a malformed HTTP request carrying a key in its
query. Then every captured line is searched for each credential used, for each JWT's signature
segment alone, and for any 16 characters in a row of a signature or key (a truncated dump of a
frame or a header would show those). The scenario runs once per ``log_format`` (text, JSON):
the connection lines (connect, disconnect, refused, with their ``detail``) are searched too.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.api import api_raw
from tests.support.forge import JWT_HEADER, claims, forge, sub_claims
from tests.support.gateway import TEST_API_KEY, TEST_SECRET, GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.timing import seconds, wait_until
from tests.support.tokens import sub_token, token

WINDOW = 16  # this many characters of a credential in a row count as a leak
SCOPED_SECRET = "scoped-secret-scoped-secret-scoped-secret-0123456789"
SCOPED_API_KEY = "scoped-api-key-0123456789abcdef"
ATTACKER_KEY = "attacker-key-attacker-key-attacker-key-0123456789"


@pytest.fixture(scope="module", params=["text", "json"])
def gw(request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    cfg = base_config(
        log_level="debug",
        log_format=request.param,
        api_keys=[{"key": SCOPED_API_KEY, "channel_prefix": "staging_"}],
        token_hmac_secret_keys=[{"key": SCOPED_SECRET, "channel_prefix": "staging_"}],
    )
    with running_gateway(cfg) as gateway:
        yield gateway


def windows(secret: str) -> set[str]:
    """Every run of WINDOW characters of ``secret`` (the whole of a shorter one)."""
    if len(secret) <= WINDOW:
        return {secret}
    return {secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)}


async def answer(client: RawClient, cmd: dict[str, Any]) -> dict[str, Any] | int:
    """The reply to ``cmd``, or the close code when the server ends the connection instead."""
    await client.send(json.dumps(cmd))
    try:
        return await client.reply(cmd["id"])
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"no close frame: {exc!r}"
        return exc.rcvd.code


def raw_http(gw: GatewayProcess, request: bytes) -> bytes:
    """Send bytes as they are (a malformed request the HTTP client would not write)."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=seconds(5)) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def log_after_a_last_line(gw: GatewayProcess) -> str:
    """The log once a line caused after everything else has been written (the gateway handles
    events in order, one thread), so nothing of the scenario is still on its way."""
    marker = "sent a bad frame"
    before = gw.log().count(marker)
    c = await RawClient.open(gw.ws_url)
    await c.send('{"id":1,"connect":{"name":5}}')
    assert (await c.closed())[0] == 3501
    await wait_until(lambda: gw.log().count(marker) > before, "the last line", within=5)
    return gw.log()


async def test_no_credential_reaches_the_log(gw: GatewayProcess) -> None:
    channel, private = "tenant_42", "$secret-room"
    good = token(channels=[channel])
    refreshed = token(channels=[channel])
    scoped = forge(JWT_HEADER, claims(channels=["staging_a"]), SCOPED_SECRET)
    forged = forge(JWT_HEADER, claims(), ATTACKER_KEY)
    garbage = f"garbage-{uuid.uuid4().hex}"  # short enough for a whole frame dump
    expired = token(ttl=-60)
    good_sub = sub_token(private)
    refreshed_sub = sub_token(private)
    forged_sub = forge(JWT_HEADER, sub_claims(private), ATTACKER_KEY)
    expired_sub = sub_token(private, ttl=-60)
    wrong_keys = [f"wrong-api-key-{uuid.uuid4().hex}" for _ in range(4)]
    jwts = [good, refreshed, scoped, forged, expired, good_sub, refreshed_sub, forged_sub, expired_sub]

    client = await RawClient.open(gw.ws_url)
    reply = await answer(client, {"id": 1, "connect": {"token": good}})
    assert isinstance(reply, dict) and "connect" in reply
    reply = await answer(client, {"id": 2, "subscribe": {"channel": private, "token": good_sub}})
    assert isinstance(reply, dict) and "subscribe" in reply
    reply = await answer(client, {"id": 3, "sub_refresh": {"channel": private, "token": refreshed_sub}})
    assert isinstance(reply, dict) and "sub_refresh" in reply
    reply = await answer(client, {"id": 4, "subscribe": {"channel": "$other", "token": forged_sub}})
    assert isinstance(reply, dict) and reply["error"] == {"code": 103, "message": "permission denied"}
    reply = await answer(client, {"id": 5, "subscribe": {"channel": private + "2", "token": expired_sub}})
    assert isinstance(reply, dict) and "error" in reply  # 109: another channel's token would be 3500
    reply = await answer(client, {"id": 6, "refresh": {"token": refreshed}})
    assert isinstance(reply, dict) and "refresh" in reply
    assert await answer(client, {"id": 7, "sub_refresh": {"channel": private, "token": forged_sub}}) == 3500

    for bad, code in [(forged, 3500), (garbage, 3500), (expired, 109)]:
        c = await RawClient.open(gw.ws_url)
        result = await answer(c, {"id": 1, "connect": {"token": bad}})
        assert result == ({"id": 1, "error": {"code": 109, "message": "token expired"}} if code == 109 else code)
        await c.close()
    for bad, code in [(forged, 3500), (garbage, 3500), (expired, 3005), (scoped, 3500)]:
        c = await RawClient.open(gw.ws_url)
        await c.connect(token(channels=[channel]))
        assert await answer(c, {"id": 2, "refresh": {"token": bad}}) == code
        await c.close()
    c = await RawClient.open(gw.ws_url)
    assert "connect" in await c.connect(scoped)
    await c.close()

    body = json.dumps({"channel": channel, "data": {"x": 1}}).encode()
    url = gw.api_url
    for key in [TEST_API_KEY, SCOPED_API_KEY]:
        assert api_raw(url, "publish", body, headers={"X-API-Key": key})[0] == 200
        assert api_raw(url, "publish", body, headers={"Authorization": f"apikey {key}"})[0] == 200
        assert api_raw(f"{url}/publish?api_key={key}", "", body, headers={})[0] == 200
    assert api_raw(url, "publish", body, headers={"X-API-Key": wrong_keys[0]})[0] == 401
    assert api_raw(url, "publish", body, headers={"Authorization": f"apikey {wrong_keys[1]}"})[0] == 401
    assert api_raw(f"{url}/publish?api_key={wrong_keys[2]}", "", body, headers={})[0] == 401
    assert api_raw(url, "publish", b"{not json", headers={"X-API-Key": TEST_API_KEY})[0] == 400
    malformed = f"POST /api/publish?api_key={wrong_keys[3]} HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".encode()
    assert b" 400 Bad Request" in raw_http(gw, malformed).split(b"\r\n", 1)[0]
    await client.close()
    log = await log_after_a_last_line(gw)
    # The refusals were logged (one line each, without the token): the scenario did run.
    assert log.count("invalid connection token") >= 4 and log.count("invalid subscription token") >= 2, log
    # ...and so were the connection lines: 3 refused connects, 6 connects, their disconnects.
    assert log.count("connection refused") >= 3 and log.count("client connected") >= 6, log
    assert log.count("client disconnected") >= 6 and log.count("token expired") >= 1, log
    if gw.config["log_format"] == "json":
        for line in log.splitlines():
            try:
                assert isinstance(json.loads(line), dict), line
            except json.JSONDecodeError:
                raise AssertionError(f"not JSON: {line!r}") from None
    credentials = [*jwts, garbage, TEST_SECRET, SCOPED_SECRET, TEST_API_KEY, SCOPED_API_KEY, *wrong_keys]
    for credential in credentials:
        assert credential not in log, credential
    for tok in jwts:
        signature = tok.rsplit(".", 1)[1]
        assert signature not in log
        for window in windows(signature):
            assert window not in log, f"part of a token's signature is in the log: {window}"
    for key in [TEST_SECRET, SCOPED_SECRET, TEST_API_KEY, SCOPED_API_KEY, *wrong_keys, garbage]:
        for window in windows(key):
            assert window not in log, f"part of a key is in the log: {window}"

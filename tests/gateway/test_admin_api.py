"""The admin web UI's HTTP endpoints against a real gateway: off by default, the config's
password rules, login and sessions, every action the page offers (each a server API method),
watching a channel, and the JSON errors for bad input."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from centrifuge import Client

from herald.gateway.admin.checks import MIN_SECRET_BYTES
from herald.gateway.admin.session import FAILURE_DELAY, MAX_FAILURES, LoginGuard, Sessions
from herald.gateway.config import MIN_HMAC_SECRET_BYTES, ConfigError, parse_config
from tests.support.admin import ADMIN_PASSWORD, ADMIN_SECRET, admin_call, admin_config, admin_login, admin_request
from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, fresh_channel, running_gateway
from tests.support.pyclient import Recorder, close_client
from tests.support.timing import seconds, wait_until
from tests.support.tokens import token


@pytest.fixture(scope="module")
def admin_gw() -> Iterator[GatewayProcess]:
    with running_gateway(admin_config()) as gw:
        yield gw


@pytest.fixture(scope="module")
def cookie(admin_gw: GatewayProcess) -> str:
    return admin_login(admin_gw)


@pytest.fixture
async def subscriber(admin_gw: GatewayProcess) -> AsyncIterator[tuple[Client, Recorder, str, str]]:
    """An SDK client of a user of its own, subscribed to a fresh channel keeping presence and history."""
    channel = fresh_channel("watched")
    user = f"u{time.monotonic_ns()}"
    recorder = Recorder()
    client = Client(admin_gw.ws_url, token=token(user=user, channels=[channel]), events=recorder.client_handler())
    sub = client.new_subscription(channel, events=recorder.sub_handler(channel))
    await client.connect()
    await sub.subscribe()
    await recorder.wait_for("sub:subscribed", channel)
    yield client, recorder, user, channel
    await close_client(client)


# --------------------------------------------------------------------------- off by default


def test_admin_is_off_by_default(gateway: GatewayProcess) -> None:
    for path, method in [("", "GET"), ("auth", "POST"), ("api/info", "POST"), ("watch?channel=x", "GET")]:
        body = {"password": ADMIN_PASSWORD} if method == "POST" else None
        assert admin_request(gateway, path, body, method=method).status == 404, path


# --------------------------------------------------------------------------- config


def admin_problems(**keys: Any) -> str:
    base = {"admin": True, "admin_password": ADMIN_PASSWORD, "admin_secret": ADMIN_SECRET}
    with pytest.raises(ConfigError) as caught:
        parse_config({**base, **keys}, environ={})
    return "\n".join(caught.value.problems)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("", "required when admin is true"),
        ("Sh0rt!pw", "at least 12 characters"),
        ("aaaaaaaaaaaaaaaa", "only 1 different characters"),
        ("abcdefghijklmn", "too simple"),  # one kind of character
        ("abcdefgh123456", "too simple"),  # two kinds, not a passphrase
    ],
)
def test_config_refuses_a_weak_admin_password(password: str, why: str) -> None:
    text = admin_problems(admin_password=password)
    assert "admin_password" in text and why in text, text


def test_config_accepts_a_strong_password_or_a_long_passphrase() -> None:
    for password in (ADMIN_PASSWORD, "correct horse battery staple"):
        config, _ = parse_config({"admin": True, "admin_password": password, "admin_secret": ADMIN_SECRET}, environ={})
        assert config.admin and config.admin_password == password


@pytest.mark.parametrize(
    ("secret", "why"),
    [("", "required when admin is true"), ("too-short-secret", "at least 32 bytes")],
)
def test_config_refuses_a_missing_or_short_admin_secret(secret: str, why: str) -> None:
    text = admin_problems(admin_secret=secret)
    assert "admin_secret" in text and why in text, text


def test_the_admin_secret_minimum_is_the_token_secrets() -> None:
    assert MIN_SECRET_BYTES == MIN_HMAC_SECRET_BYTES  # decisions §4, one rule for every HMAC secret


def test_config_refuses_the_admin_password_reused_as_the_api_key() -> None:
    assert "must differ" in admin_problems(api_key=ADMIN_PASSWORD)


def test_config_refuses_secrets_shared_with_the_token_secrets() -> None:
    scoped = [{"key": ADMIN_SECRET, "channel_prefix": "staging_"}]
    assert "admin_secret: must differ" in admin_problems(token_hmac_secret_keys=scoped)
    assert "admin_password: must differ" in admin_problems(api_keys=[{"key": ADMIN_PASSWORD, "channel_prefix": "x"}])


def test_config_keeps_admin_paths_for_the_admin_ui() -> None:
    text = admin_problems(api_handler_prefix="/admin/api")
    assert "api_handler_prefix: /admin belongs to the admin web UI" in text
    parse_config({"api_handler_prefix": "/admin/api"}, environ={})  # free while admin is off


def test_config_refuses_centrifugos_insecure_admin() -> None:
    assert "admin_insecure: a Centrifugo option Herald does not support" in admin_problems(admin_insecure=True)


def test_config_warns_when_a_password_is_set_but_admin_is_off() -> None:
    _, warnings = parse_config({"admin_password": ADMIN_PASSWORD}, environ={})
    assert any(w.startswith("admin_password: set but admin is false") for w in warnings), warnings


# --------------------------------------------------------------------------- login and sessions


def test_the_page_is_served(admin_gw: GatewayProcess) -> None:
    page = admin_request(admin_gw, "", method="GET")
    assert page.status == 200 and b'id="login-form"' in page.raw
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    script = admin_request(admin_gw, "static/admin.js", method="GET")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert admin_request(admin_gw, "static/nope.js", method="GET").status == 404


def test_wrong_paths_and_methods_are_json_errors(admin_gw: GatewayProcess, cookie: str) -> None:
    for path, method, status in [
        ("nope", "GET", 404),
        ("api/info", "GET", 405),
        ("auth", "GET", 405),
        ("watch?channel=watched:x", "POST", 405),
        ("", "POST", 405),
    ]:
        answer = admin_request(admin_gw, path, {} if method == "POST" else None, method=method, cookie=cookie)
        assert answer.status == status and answer.json["error"]["message"], (path, method, answer.raw)


def test_a_wrong_password_is_refused_after_a_delay(admin_gw: GatewayProcess) -> None:
    started = time.monotonic()
    answer = admin_request(admin_gw, "auth", {"password": ADMIN_PASSWORD + "x"})
    assert answer.status == 401
    assert answer.json == {"error": {"message": "wrong password"}}
    assert answer.cookie("herald_admin") is None
    assert time.monotonic() - started >= FAILURE_DELAY


def test_the_right_password_gives_a_strict_http_only_cookie(admin_gw: GatewayProcess) -> None:
    answer = admin_request(admin_gw, "auth", {"password": ADMIN_PASSWORD})
    assert answer.status == 200 and answer.json["expires_at"] > time.time()
    morsel = answer.cookie("herald_admin")
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/admin"
    assert not morsel["secure"]  # plain HTTP here; over TLS (or X-Forwarded-Proto: https) it is Secure
    over_tls = admin_request(admin_gw, "auth", {"password": ADMIN_PASSWORD}, headers={"X-Forwarded-Proto": "https"})
    assert over_tls.cookie("herald_admin")["secure"]


@pytest.mark.parametrize("body", [b"", b"{", b'{"pass": "x"}', b'{"password": 5}'])
def test_a_malformed_login_is_a_400(admin_gw: GatewayProcess, body: bytes) -> None:
    answer = admin_request(admin_gw, "auth", raw=body)
    assert answer.status == 400 and "password" in answer.json["error"]["message"]


def test_without_a_session_every_action_is_401(admin_gw: GatewayProcess, cookie: str) -> None:
    forged = cookie.rsplit(".", 1)[0] + "." + "0" * 64
    for bad in ("", "nonsense", forged):
        for method in ("info", "publish", "disconnect", "connections"):
            answer = admin_request(admin_gw, f"api/{method}", {}, cookie=bad)
            assert answer.status == 401 and answer.json["error"]["message"] == "log in first", (method, bad)
        assert admin_request(admin_gw, "watch?channel=watched:x", method="GET", cookie=bad).status == 401


def test_logout_ends_the_session(admin_gw: GatewayProcess) -> None:
    session = admin_login(admin_gw)
    assert admin_request(admin_gw, "api/info", {}, cookie=session).status == 200
    answer = admin_request(admin_gw, "logout", {}, cookie=session)
    assert answer.status == 200 and answer.cookie("herald_admin").value == ""
    assert admin_request(admin_gw, "api/info", {}, cookie=session).status == 401


def test_posts_must_be_json_and_same_origin(admin_gw: GatewayProcess, cookie: str) -> None:
    foreign = admin_request(admin_gw, "api/info", {}, cookie=cookie, headers={"Origin": "https://evil.example"})
    assert foreign.status == 403 and "cross-origin" in foreign.json["error"]["message"]
    same = admin_request(admin_gw, "api/info", {}, cookie=cookie, headers={"Origin": admin_gw.http_url})
    assert same.status == 200
    form = admin_request(
        admin_gw, "auth", raw=b"password=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status == 415


def test_sessions_expire_and_signatures_bind_password_and_secret() -> None:
    sessions = Sessions(ADMIN_PASSWORD, ADMIN_SECRET, ttl=60)
    issued, expires = sessions.issue(now=1000.0)
    assert expires == 1060 and sessions.valid(issued, now=1059.0)
    assert not sessions.valid(issued, now=1060.0)
    assert not Sessions(ADMIN_PASSWORD + "!", ADMIN_SECRET).valid(issued, now=1000.0)
    assert not Sessions(ADMIN_PASSWORD, ADMIN_SECRET + "!").valid(issued, now=1000.0)
    longer = issued.replace(".1060.", ".9999.")
    assert not sessions.valid(longer, now=1000.0)


def test_the_guard_locks_an_address_out_and_lets_it_back() -> None:
    guard = LoginGuard(max_failures=3, window=60, lockout=30)
    for at in (0.0, 1.0):
        guard.failed("a", now=at)
    assert guard.locked_for("a", now=2.0) == 0
    guard.failed("a", now=2.0)
    assert guard.locked_for("a", now=3.0) == 29 and guard.locked_for("b", now=3.0) == 0
    assert guard.locked_for("a", now=32.0) == 0
    guard.failed("a", now=100.0)  # the old failures left the window: one is not enough
    assert guard.locked_for("a", now=100.5) == 0


def test_repeated_wrong_passwords_lock_the_address_out() -> None:
    with running_gateway(admin_config()) as gw:
        for _ in range(MAX_FAILURES):
            assert admin_request(gw, "auth", {"password": "Wrong-password-123"}).status == 401
        locked = admin_request(gw, "auth", {"password": ADMIN_PASSWORD})
        assert locked.status == 429, locked.raw  # even the right password, while locked
        assert int(locked.headers["Retry-After"]) > 0
        assert "too many wrong passwords" in locked.json["error"]["message"]
        assert "admin login refused: wrong password from 127.0.0.1" in gw.log()
        assert ADMIN_PASSWORD not in gw.log() and "Wrong-password-123" not in gw.log()


# --------------------------------------------------------------------------- actions


def test_info_lists_the_node_with_its_counts(admin_gw: GatewayProcess, cookie: str) -> None:
    nodes = admin_call(admin_gw, cookie, "info")["nodes"]
    assert len(nodes) == 1
    assert {"name", "uid", "version", "num_clients", "num_users", "num_subs", "num_channels"} <= set(nodes[0])
    assert nodes[0]["uptime"] >= 0


async def test_channel_lookup_shows_subscribers_presence_and_history(
    admin_gw: GatewayProcess, cookie: str, subscriber: tuple[Client, Recorder, str, str]
) -> None:
    _, recorder, user, channel = subscriber
    publish(admin_gw.api_url, channel, {"n": 1})
    await recorder.wait_for("sub:publication", channel)
    assert admin_call(admin_gw, cookie, "channels", {"pattern": channel}) == {"channels": {channel: {"num_clients": 1}}}
    assert admin_call(admin_gw, cookie, "presence_stats", {"channel": channel}) == {"num_clients": 1, "num_users": 1}
    presence = admin_call(admin_gw, cookie, "presence", {"channel": channel})["presence"]
    assert [info["user"] for info in presence.values()] == [user]
    history = admin_call(admin_gw, cookie, "history", {"channel": channel, "limit": 10, "reverse": True})
    assert [pub["data"] for pub in history["publications"]] == [{"n": 1}] and history["offset"] == 1
    # The same answers as the server API's own endpoint: one code path.
    assert api(admin_gw.api_url, "presence_stats", {"channel": channel})["result"] == {"num_clients": 1, "num_users": 1}
    # A node shows the client.
    nodes = admin_call(admin_gw, cookie, "info")["nodes"]
    assert nodes[0]["num_clients"] >= 1 and nodes[0]["num_subs"] >= 1


async def test_user_lookup_lists_connections_and_disconnect_reaches_the_sdk(
    admin_gw: GatewayProcess, cookie: str, subscriber: tuple[Client, Recorder, str, str]
) -> None:
    _, recorder, user, channel = subscriber
    found = admin_call(admin_gw, cookie, "connections", {"user": user})["connections"]
    assert len(found) == 1
    ((client_id, info),) = found.items()
    assert info["user"] == user and info["channels"] == [channel] and info["protocol"] == "json"
    assert info["node"] == admin_call(admin_gw, cookie, "info")["nodes"][0]["name"]
    assert admin_call(admin_gw, cookie, "connections", {"user": "nobody-here"}) == {"connections": {}}

    assert admin_call(admin_gw, cookie, "disconnect", {"user": user, "client": client_id}) == {}
    event = await recorder.wait_for("disconnected")
    assert event.ctx.code == 3503, event.ctx  # force disconnect, no reconnect
    await wait_until(
        lambda: admin_call(admin_gw, cookie, "connections", {"user": user}) == {"connections": {}},
        "the connection to leave the list",
    )


async def test_publish_reaches_the_sdk_subscriber(
    admin_gw: GatewayProcess, cookie: str, subscriber: tuple[Client, Recorder, str, str]
) -> None:
    _, recorder, _, channel = subscriber
    result = admin_call(admin_gw, cookie, "publish", {"channel": channel, "data": {"from": "admin"}})
    assert result["offset"] == 1 and result["epoch"]
    event = await recorder.wait_for("sub:publication", channel)
    assert event.ctx.pub.data == {"from": "admin"}


@pytest.mark.parametrize(
    ("method", "params", "status", "code"),
    [
        ("publish", {"channel": "nowhere:x", "data": {}}, 404, 102),  # unknown namespace
        ("publish", {"channel": "watched:x"}, 400, 107),  # no data
        ("publish", {"channel": "", "data": {}}, 400, 107),
        ("publish", {"channel": "watched:\u0007bell", "data": {}}, 400, 107),  # the API's name check
        ("publish", {"channel": 5, "data": {}}, 400, 107),  # wrong type
        ("presence", {"channel": "critical:x"}, 400, 108),  # presence not kept there
        ("connections", {}, 400, 107),  # no user
        ("connections", {"user": "5", "expression": "true"}, 400, 107),  # a PRO filter not offered
        ("disconnect", {"user": "5", "disconnect": {"code": 1000}}, 400, 107),
        ("no_such_method", {}, 404, 104),
    ],
)
def test_bad_input_is_a_json_error_with_a_status(
    admin_gw: GatewayProcess, cookie: str, method: str, params: dict[str, Any], status: int, code: int
) -> None:
    answer = admin_request(admin_gw, f"api/{method}", params, cookie=cookie)
    assert answer.status == status, answer.raw
    assert answer.json["error"]["code"] == code and answer.json["error"]["message"]


def test_a_large_publish_arrives_whole_and_a_too_large_one_is_413(admin_gw: GatewayProcess, cookie: str) -> None:
    # Several TCP segments: the handler must read the whole body, not what arrived first.
    text = "x" * 300_000
    channel = fresh_channel("watched")
    assert admin_call(admin_gw, cookie, "publish", {"channel": channel, "data": {"text": text}})["offset"] == 1
    history = admin_call(admin_gw, cookie, "history", {"channel": channel, "limit": 1})
    assert history["publications"][0]["data"] == {"text": text}
    too_large = admin_request(admin_gw, "api/publish", {"channel": channel, "data": "y" * 1_100_000}, cookie=cookie)
    assert too_large.status == 413 and too_large.json["error"]["message"] == "request body too large"


async def test_a_body_sent_in_pieces_is_read_whole(admin_gw: GatewayProcess, cookie: str) -> None:
    channel = fresh_channel("watched")
    body = json.dumps({"channel": channel, "data": {"text": "z" * 5000}}).encode()
    head = (
        f"POST /admin/api/publish HTTP/1.1\r\nHost: 127.0.0.1:{admin_gw.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Cookie: herald_admin={cookie}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", admin_gw.port)
    writer.write(head + body[:100])
    await writer.drain()
    await asyncio.sleep(0.2)  # pacing the input, not a wait for a result: the rest comes later
    writer.write(body[100:])
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), seconds(5))
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    history = admin_call(admin_gw, cookie, "history", {"channel": channel, "limit": 1})
    assert history["publications"][0]["data"] == {"text": "z" * 5000}


def test_a_body_that_is_not_json_is_a_400(admin_gw: GatewayProcess, cookie: str) -> None:
    for raw in (b"{", b"[1]", b'{"channel": "watched:x", "data": \xff}'):
        answer = admin_request(admin_gw, "api/publish", raw=raw, cookie=cookie)
        assert answer.status == 400 and answer.json["error"]["code"] == 107, raw


# --------------------------------------------------------------------------- watch


async def test_watch_streams_publications_made_through_the_api(admin_gw: GatewayProcess, cookie: str) -> None:
    channel = fresh_channel("watched")
    headers = {"Cookie": f"herald_admin={cookie}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{admin_gw.http_url}/admin/watch", params={"channel": channel}, headers=headers) as resp,
    ):
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        first = await _event(resp)
        assert first == ("subscribed", {"channel": channel})
        publish(admin_gw.api_url, channel, {"live": 1})
        assert await _event(resp) == ("message", {"channel": channel, "pub": {"data": {"live": 1}, "offset": 1}})
        # While watched, the channel has a subscriber on this node.
        assert admin_call(admin_gw, cookie, "channels", {"pattern": channel})["channels"] == {
            channel: {"num_clients": 1}
        }
    # The page went away: the watcher unsubscribes.
    await wait_until(
        lambda: admin_call(admin_gw, cookie, "channels", {"pattern": channel})["channels"] == {},
        "the watcher to leave the channel",
    )


@pytest.mark.parametrize(
    ("query", "status", "code"), [("", 400, 107), ("?channel=nowhere:x", 404, 102), ("?channel=a%07b", 400, 107)]
)
def test_watch_refuses_a_bad_channel_with_json(
    admin_gw: GatewayProcess, cookie: str, query: str, status: int, code: int
) -> None:
    answer = admin_request(admin_gw, f"watch{query}", method="GET", cookie=cookie)
    assert answer.status == status and answer.json["error"]["code"] == code


async def _event(resp: aiohttp.ClientResponse) -> tuple[str, Any]:
    """The next Server-Sent Event: (event name, decoded data); comments are skipped."""
    kind, data = "message", ""
    while True:
        line = (await _readline(resp)).rstrip("\n")
        if not line:
            if data:
                return kind, json.loads(data)
            continue
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


async def _readline(resp: aiohttp.ClientResponse) -> str:
    return (await asyncio.wait_for(resp.content.readline(), seconds(5))).decode()

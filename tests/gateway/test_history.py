"""History: the client ``history`` command (spec §2.7) and the API ``history`` / ``history_remove`` (spec §8.2).

Client requests are capped at 300 publications and need history permission in the channel's
namespace; API requests are not capped. ``limit`` 0 = only the stream top, -1 = all; ``since``
is exclusive; a stale ``since.epoch`` is error 112; ``reverse`` reads newest first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from centrifuge import Client, StreamPosition
from centrifuge.exceptions import ReplyError

from tests.support.api import api, api_raw, publish
from tests.support.gateway import TEST_API_KEY, GatewayProcess, base_config, fresh_channel, running_gateway
from tests.support.pyclient import Recorder, close_client
from tests.support.raw import RawClient
from tests.support.tokens import token

NAMESPACES = [
    {"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True},
    {"name": "hist", "history_size": 400, "history_ttl": "300s", "allow_history_for_client": True},
    {
        "name": "subhist",
        "history_size": 10,
        "history_ttl": "300s",
        "allow_history_for_subscriber": True,
        "allow_subscribe_for_client": True,
    },
]


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    with running_gateway(base_config(namespaces=NAMESPACES)) as gateway:
        yield gateway


def fill(gw: GatewayProcess, channel: str, count: int) -> dict[str, Any]:
    """Publish ``{"n": 1..count}`` (offsets 1..count on a fresh channel); the last API result."""
    commands = [{"publish": {"channel": channel, "data": {"n": n}}} for n in range(1, count + 1)]
    replies = api(gw.api_url, "batch", {"commands": commands})["replies"]
    last: dict[str, Any] = replies[-1]["publish"]
    assert last["offset"] == count
    return last


def ns(pubs: list[dict[str, Any]]) -> list[int]:
    return [p["data"]["n"] for p in pubs]


async def client_history(gw: GatewayProcess, channel: str, subscribe: bool = False, **params: Any) -> dict[str, Any]:
    c = await RawClient.open(gw.ws_url)
    try:
        await c.connect(token())
        if subscribe:
            assert "subscribe" in await c.subscribe(channel)
        return await c.command("history", {"channel": channel, **params})
    finally:
        await c.close()


def api_history(gw: GatewayProcess, channel: str, **params: Any) -> dict[str, Any]:
    return api(gw.api_url, "history", {"channel": channel, **params})


# --- the client command


async def test_client_limit_zero_gives_the_top_only(gw: GatewayProcess) -> None:
    ch = fresh_channel("hist")
    top = fill(gw, ch, 3)
    reply = await client_history(gw, ch, limit=0)
    assert reply["history"] == {"publications": [], "epoch": top["epoch"], "offset": 3}


async def test_client_limit_zero_on_an_empty_channel_still_has_the_fields(gw: GatewayProcess) -> None:
    reply = (await client_history(gw, fresh_channel("hist")))["history"]
    assert reply["publications"] == [] and reply["offset"] == 0 and len(reply["epoch"]) == 4


@pytest.mark.parametrize(("limit", "expected"), [(-1, 300), (301, 300), (1000, 300), (300, 300), (7, 7)])
async def test_client_limit_is_capped_at_300(gw: GatewayProcess, limit: int, expected: int) -> None:
    ch = fresh_channel("hist")
    fill(gw, ch, 310)
    reply = (await client_history(gw, ch, limit=limit))["history"]
    assert ns(reply["publications"]) == list(range(1, expected + 1))  # oldest first
    assert reply["offset"] == 310


async def test_client_since_and_reverse(gw: GatewayProcess) -> None:
    ch = fresh_channel("hist")
    epoch = fill(gw, ch, 6)["epoch"]
    since = {"offset": 3, "epoch": epoch}
    assert ns((await client_history(gw, ch, limit=-1, since=since))["history"]["publications"]) == [4, 5, 6]
    assert ns((await client_history(gw, ch, limit=2, since=since))["history"]["publications"]) == [4, 5]
    assert ns((await client_history(gw, ch, limit=-1, reverse=True))["history"]["publications"]) == [6, 5, 4, 3, 2, 1]
    assert ns((await client_history(gw, ch, limit=2, reverse=True))["history"]["publications"]) == [6, 5]
    reply = await client_history(gw, ch, limit=-1, reverse=True, since=since)
    assert ns(reply["history"]["publications"]) == [2, 1]
    future = {"offset": 99, "epoch": epoch}
    assert (await client_history(gw, ch, limit=-1, since=future))["history"] == {
        "publications": [],
        "epoch": epoch,
        "offset": 6,
    }
    no_epoch = {"offset": 4}  # an empty epoch is not checked
    assert ns((await client_history(gw, ch, limit=-1, since=no_epoch))["history"]["publications"]) == [5, 6]


async def test_client_stale_epoch_is_112_and_reverse_from_zero_is_107(gw: GatewayProcess) -> None:
    ch = fresh_channel("hist")
    epoch = fill(gw, ch, 3)["epoch"]
    stale = await client_history(gw, ch, limit=-1, since={"offset": 1, "epoch": "Xyzw"})
    assert stale["error"] == {"code": 112, "message": "unrecoverable position"}
    zero = await client_history(gw, ch, limit=-1, reverse=True, since={"offset": 0, "epoch": epoch})
    assert zero["error"] == {"code": 107, "message": "bad request"}


@pytest.mark.parametrize(
    ("channel", "subscribe", "error"),
    [
        ("critical:tenant_42", False, 103),  # history kept, but clients may not read it
        ("tenant_42", False, 108),  # no history in the top-level namespace
        ("nope:x", False, 102),  # unknown namespace
        ("subhist:x", False, 103),  # only subscribers may read it
    ],
)
async def test_client_history_permissions(gw: GatewayProcess, channel: str, subscribe: bool, error: int) -> None:
    assert (await client_history(gw, channel, subscribe=subscribe, limit=-1))["error"]["code"] == error


async def test_subscribers_read_history_where_allowed(gw: GatewayProcess) -> None:
    ch = fresh_channel("subhist")
    fill(gw, ch, 2)
    assert ns((await client_history(gw, ch, subscribe=True, limit=-1))["history"]["publications"]) == [1, 2]


async def test_client_history_without_a_channel_is_a_bad_request(gw: GatewayProcess) -> None:
    c = await RawClient.open(gw.ws_url)
    await c.connect(token())
    await c.send(json.dumps({"id": 2, "history": {"limit": 1}}))
    assert await c.closed() == (3501, "bad request")


async def test_python_sdk_history(gw: GatewayProcess) -> None:
    ch = fresh_channel("hist")
    epoch = fill(gw, ch, 5)["epoch"]
    client = Client(gw.ws_url, token=token(), events=Recorder().client_handler())
    try:
        await client.connect()
        top = await client.history(ch)  # the SDK's default limit 0: only the position
        assert (top.publications, top.offset, top.epoch) == ([], 5, epoch)
        page = await client.history(ch, limit=2, since=StreamPosition(offset=2, epoch=epoch))
        assert [p.data["n"] for p in page.publications] == [3, 4] and [p.offset for p in page.publications] == [3, 4]
        newest = await client.history(ch, limit=1, reverse=True)
        assert [p.data["n"] for p in newest.publications] == [5]
        with pytest.raises(ReplyError) as raised:
            await client.history(ch, limit=1, since=StreamPosition(offset=1, epoch="Xyzw"))
        assert raised.value.code == 112
    finally:
        await close_client(client)


# --- the server API


async def test_api_history_limits_are_not_capped(gw: GatewayProcess) -> None:
    ch = fresh_channel("hist")
    epoch = fill(gw, ch, 310)["epoch"]
    assert api_history(gw, ch) == {"result": {"publications": [], "epoch": epoch, "offset": 310}}
    assert ns(api_history(gw, ch, limit=-1)["result"]["publications"]) == list(range(1, 311))
    assert len(api_history(gw, ch, limit=500)["result"]["publications"]) == 310
    assert ns(api_history(gw, ch, limit=3)["result"]["publications"]) == [1, 2, 3]


async def test_api_since_reverse_and_stale_epoch(gw: GatewayProcess) -> None:
    ch = fresh_channel("hist")
    epoch = fill(gw, ch, 5)["epoch"]
    since = {"offset": 2, "epoch": epoch}
    assert ns(api_history(gw, ch, limit=-1, since=since)["result"]["publications"]) == [3, 4, 5]
    assert ns(api_history(gw, ch, limit=-1, since=since, reverse=True)["result"]["publications"]) == [1]
    assert ns(api_history(gw, ch, limit=-1, reverse=True)["result"]["publications"]) == [5, 4, 3, 2, 1]
    assert api_history(gw, ch, limit=-1, since={"offset": 50, "epoch": epoch})["result"]["publications"] == []
    stale = api_history(gw, ch, limit=-1, since={"offset": 1, "epoch": "Xyzw"})
    assert stale == {"error": {"code": 112, "message": "unrecoverable position"}}
    zero = api_history(gw, ch, limit=-1, reverse=True, since={"offset": 0, "epoch": epoch})
    assert zero == {"error": {"code": 107, "message": "bad request"}}


async def test_api_stale_epoch_in_transport_error_mode_is_http_416(gw: GatewayProcess) -> None:
    ch = fresh_channel("hist")
    fill(gw, ch, 1)
    body = json.dumps({"channel": ch, "limit": -1, "since": {"offset": 1, "epoch": "Xyzw"}}).encode()
    headers = {"X-API-Key": TEST_API_KEY, "X-Centrifugo-Error-Mode": "transport"}
    status, raw = await asyncio.to_thread(api_raw, gw.api_url, "history", body, headers)
    assert (status, json.loads(raw)) == (416, {"code": 112, "message": "unrecoverable position"})


@pytest.mark.parametrize(
    ("params", "code"),
    [({"channel": "tenant_42"}, 108), ({"channel": "nope:x"}, 102), ({}, 107)],
    ids=["no-history", "unknown-namespace", "no-channel"],
)
async def test_api_history_errors(gw: GatewayProcess, params: dict[str, Any], code: int) -> None:
    assert api(gw.api_url, "history", params)["error"]["code"] == code
    assert api(gw.api_url, "history_remove", params)["error"]["code"] == code


async def test_history_remove_keeps_the_stream_position(gw: GatewayProcess) -> None:
    ch = fresh_channel("critical")
    top = fill(gw, ch, 4)
    assert api(gw.api_url, "history_remove", {"channel": ch}) == {"result": {}}
    assert api_history(gw, ch, limit=-1) == {"result": {"publications": [], "epoch": top["epoch"], "offset": 4}}
    assert publish(gw.api_url, ch, {"n": 5}) == {"offset": 5, "epoch": top["epoch"]}
    assert ns(api_history(gw, ch, limit=-1)["result"]["publications"]) == [5]


async def test_history_keeps_history_size_and_publish_returns_the_position(gw: GatewayProcess) -> None:
    ch = fresh_channel("critical")
    top = fill(gw, ch, 60)  # history_size 50
    page = api_history(gw, ch, limit=-1)["result"]
    assert ns(page["publications"]) == list(range(11, 61)) and page["offset"] == 60 == top["offset"]
    assert publish(gw.api_url, ch, {"n": 0}, skip_history=True) == {}  # not in the stream: no position
    assert api_history(gw, ch)["result"]["offset"] == 60

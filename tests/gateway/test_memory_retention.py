"""What a connection leaves behind once it is gone: nothing (found by bench/abuse.py).

* The protocol's errors are shared instances (``herald.errors``), raised again and again; every
  raise extends the traceback the instance already holds. Whatever handles one last must drop
  it, or every frame that ever raised it, and the connection and request in it, stays in memory.
* A token's expiry can be hours away: the timer that checks it must not keep a closed
  connection (or its subscriptions) alive until then.
"""

from __future__ import annotations

import gc
import json

from aiohttp.test_utils import TestClient, TestServer

from herald import errors
from herald.errors import Disconnect, ReplyError
from herald.gateway.api import ServerAPI
from herald.gateway.session.client import Client
from herald.gateway.transports.http import HttpServer
from tests.support.gateway import TEST_API_KEY
from tests.support.inproc import FakeConnection, connected, in_process_node, send, settle
from tests.support.timing import wait_until
from tests.support.tokens import sub_token, token

SHARED = [value for value in vars(errors).values() if isinstance(value, ReplyError | Disconnect)]


def raised_frames(error: BaseException) -> int:
    """How many frames the error's traceback (and the context chained to it) still holds."""
    count, seen = 0, set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            count += 1
            tb = tb.tb_next
        current = current.__context__
    return count


async def test_errors_answered_to_clients_keep_no_frames() -> None:
    async with in_process_node() as node:
        client, conn = await connected(node, channels=[])
        for i in range(2, 40):
            await send(client, i, "subscribe", {"channel": "tenant_1"})  # 103 each time
            await send(client, 100 + i, "history", {"channel": "tenant_1"})  # 108
        assert {m["error"]["code"] for m in conn.take()} == {103, 108}
        for _ in range(20):  # refused tokens: a close, raised from deep in the token check
            refused = Client(node, FakeConnection())
            await refused.handle_frame(json.dumps({"id": 1, "connect": {"token": "a.b.c"}}))
        await settle()
        assert [e for e in SHARED if raised_frames(e)] == []


async def test_errors_answered_by_the_server_api_keep_no_frames() -> None:
    async with in_process_node() as node:
        http = HttpServer(node, ServerAPI(node))
        async with TestClient(TestServer(http.app)) as api:
            headers = {"X-API-Key": TEST_API_KEY}
            bad = {"channel": "nowhere:x", "data": {}}
            for _ in range(20):
                reply = await api.post("/api/publish", json=bad, headers=headers)
                assert (await reply.json())["error"]["code"] == 102
                reply = await api.post("/api/batch", json={"commands": [{"publish": bad}]}, headers=headers)
                assert (await reply.json())["replies"][0]["error"]["code"] == 102
                reply = await api.post("/api/broadcast", json={"channels": ["nowhere:x"], "data": {}}, headers=headers)
                assert (await reply.json())["result"]["responses"][0]["error"]["code"] == 102
                reply = await api.post("/api", data=json.dumps({"method": "publish", "params": bad}), headers=headers)
                assert json.loads(await reply.read())["error"]["code"] == 102
        assert [e for e in SHARED if raised_frames(e)] == []


def clients_alive(client_id: str) -> int:
    gc.collect()
    # type(), not isinstance(): the latter would wake lazy proxies (Django's) among all objects.
    return sum(1 for o in gc.get_objects() if type(o) is Client and o.id == client_id)


async def test_a_closed_connection_is_not_kept_until_its_tokens_expire() -> None:
    # The first ping and the stale check soon due: then only the hour-long token deadlines are left.
    async with in_process_node(ping_interval="1s", pong_timeout="0s", client_stale_close_delay="50ms") as node:
        client, conn = await connected(node, ttl=3600)
        await send(client, 2, "subscribe", {"channel": "$room", "token": sub_token("$room", ttl=3600)})
        await send(client, 3, "refresh", {"token": token(ttl=3600)})
        assert [sorted(m) for m in conn.take()] == [["id", "subscribe"], ["id", "refresh"]]
        client_id = client.id
        client.transport_closed()
        del client, conn
        await wait_until(lambda: clients_alive(client_id) == 0, "the closed connection to be freed")

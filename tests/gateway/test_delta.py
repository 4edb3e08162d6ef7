"""Fossil delta compression (spec §2.2 ``delta``, issue 12) with centrifuge-python.

A delta subscriber and a plain one share a channel; the delta one must end up with exactly the
payloads the plain one got, over JSON and Protobuf, across a reconnect with recovery, while
actually receiving deltas. The encoder itself is checked against the SDK's own decoder.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from centrifuge import Client, DeltaType
from centrifuge.fossil import apply_delta

from herald.gateway.codecs import fossil
from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.proxy import TcpProxy
from tests.support.pyclient import PROTOCOLS, Recorder, close_client
from tests.support.tokens import token

DELTA_NS = {
    "name": "live",
    "history_size": 100,
    "history_ttl": "300s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
    "allowed_delta_types": ["fossil"],
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    cfg = base_config()
    cfg["namespaces"] = [*cfg["namespaces"], DELTA_NS, {**DELTA_NS, "name": "always", "delta_publish": True}]
    with running_gateway(cfg) as gw:
        yield gw


@pytest.fixture
async def proxy(gateway: GatewayProcess) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(gateway.port) as p:
        yield p


def document(rng: random.Random, seq: int) -> dict[str, Any]:
    """A dashboard-like JSON document that changes a little from one publication to the next."""
    return {
        "seq": seq,
        "orders": [{"id": i, "status": rng.choice(["new", "paid", "shipped"]), "total": i * 10} for i in range(15)],
        "note": "ünïcödé ✓ " * rng.randint(1, 3),
    }


def client(url: str, user: str, recorder: Recorder, protocol: str) -> Client:
    return Client(
        url,
        token=token(user=user, channels=[]),
        events=recorder.client_handler(),
        use_protobuf=protocol == "protobuf",
        min_reconnect_delay=0.05,
        max_reconnect_delay=0.3,
    )


def payloads(recorder: Recorder, channel: str) -> list[Any]:
    return [e.ctx.pub.data for e in recorder.of("sub:publication", channel)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("namespace", ["live", "always"])
async def test_delta_subscriber_gets_what_a_plain_one_gets_across_a_recovery(
    gateway: GatewayProcess, proxy: TcpProxy, protocol: str, namespace: str
) -> None:
    """``live`` deltas only publications made with the API's ``delta: true``; ``always`` has
    ``delta_publish`` and deltas every one."""
    channel, rng = f"{namespace}:{uuid.uuid4().hex[:8]}", random.Random(7)
    extra = {"delta": True} if namespace == "live" else {}
    delta_events, plain_events = Recorder(), Recorder()
    delta_client = client(proxy.ws_url, "d", delta_events, protocol)
    plain_client = client(gateway.ws_url, "p", plain_events, protocol)
    delta_sub = delta_client.new_subscription(channel, events=delta_events.sub_handler(channel), delta=DeltaType.FOSSIL)
    plain_sub = plain_client.new_subscription(channel, events=plain_events.sub_handler(channel))
    docs = [document(rng, seq) for seq in range(30)]
    try:
        await delta_client.connect()
        await plain_client.connect()
        await delta_sub.subscribe()
        await plain_sub.subscribe()
        await delta_events.wait_for("sub:subscribed", channel)
        await plain_events.wait_for("sub:subscribed", channel)
        for doc in docs[:10]:
            await asyncio.to_thread(publish, gateway.api_url, channel, doc, **extra)
        await delta_events.wait_for("sub:publication", channel, where=lambda ctx: ctx.pub.data["seq"] == 9)

        # Away while ten more are published; back with recovery (the recovered ones are a delta chain).
        proxy.hold()
        assert proxy.cut_all() == 1
        await delta_events.wait_for("connecting", where=lambda ctx: ctx.code != 0)
        for doc in docs[10:20]:
            await asyncio.to_thread(publish, gateway.api_url, channel, doc, **extra)
        mark = delta_events.mark()
        proxy.release()
        again = await delta_events.wait_for("sub:subscribed", channel, since=mark)
        assert again.ctx.recovered is True
        for doc in docs[20:]:
            await asyncio.to_thread(publish, gateway.api_url, channel, doc, **extra)
        await delta_events.wait_for("sub:publication", channel, where=lambda ctx: ctx.pub.data["seq"] == 29)
        await plain_events.wait_for("sub:publication", channel, where=lambda ctx: ctx.pub.data["seq"] == 29)

        assert payloads(delta_events, channel) == payloads(plain_events, channel) == docs
        flags = [e.ctx.pub.delta for e in delta_events.of("sub:publication", channel)]
        # The first one whole, then deltas; after the reconnect the recovered chain starts whole.
        assert flags[0] is False and flags.count(True) >= 25, flags
        assert not any(e.ctx.pub.delta for e in plain_events.of("sub:publication", channel))
    finally:
        await close_client(delta_client)
        await close_client(plain_client)


async def test_without_the_delta_flag_publications_go_whole(gateway: GatewayProcess) -> None:
    """In ``live`` only publications made with ``delta: true`` are deltas (no ``delta_publish``)."""
    channel, events = f"live:{uuid.uuid4().hex[:8]}", Recorder()
    sdk = client(gateway.ws_url, "d", events, "json")
    sub = sdk.new_subscription(channel, events=events.sub_handler(channel), delta=DeltaType.FOSSIL)
    try:
        await sdk.connect()
        await sub.subscribe()
        await events.wait_for("sub:subscribed", channel)
        for seq in range(3):
            await asyncio.to_thread(publish, gateway.api_url, channel, {"seq": seq, "pad": "x" * 200})
        await events.wait_for("sub:publication", channel, where=lambda ctx: ctx.pub.data["seq"] == 2)
        assert [e.ctx.pub.delta for e in events.of("sub:publication", channel)] == [False, False, False]
    finally:
        await close_client(sdk)


async def test_delta_is_not_negotiated_where_the_namespace_does_not_allow_it(gateway: GatewayProcess) -> None:
    channel, events = "tenant_42", Recorder()
    sdk = Client(gateway.ws_url, token=token(), events=events.client_handler())
    sub = sdk.new_subscription(channel, events=events.sub_handler(channel), delta=DeltaType.FOSSIL)
    try:
        await sdk.connect()
        await sub.subscribe()
        await events.wait_for("sub:subscribed", channel)
        await asyncio.to_thread(publish, gateway.api_url, channel, {"plain": True}, delta=True)
        pub = await events.wait_for("sub:publication", channel)
        assert pub.ctx.pub.data == {"plain": True} and pub.ctx.pub.delta is False
    finally:
        await close_client(sdk)


async def test_history_never_shows_the_delta_mark(gateway: GatewayProcess) -> None:
    channel = f"always:{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(publish, gateway.api_url, channel, {"n": 1})
    reply = await asyncio.to_thread(api, gateway.api_url, "history", {"channel": channel, "limit": -1})
    assert reply["result"]["publications"] == [{"data": {"n": 1}, "offset": 1}]


def test_deltas_decode_with_the_sdk_decoder_byte_for_byte() -> None:
    rng = random.Random(12)
    alphabet = b'{}[]":,abcdefghij0123456789 \xc3\xa9'
    for case in range(300):
        size = rng.choice([0, 5, 16, 17, 100, 1000, 5000])
        source = bytes(rng.choice(alphabet) for _ in range(size))
        target = bytearray(source)
        for _ in range(rng.randint(0, 8)):  # a few edits: replace, insert, delete
            at = rng.randint(0, len(target))
            target[at : at + rng.randint(0, 20)] = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        if case % 10 == 0:
            target = bytearray(rng.randbytes(rng.randint(0, 300)))  # nothing in common
        delta = fossil.create(source, bytes(target))
        assert bytes(apply_delta(source, delta)) == target, (case, source, target, delta)
        assert fossil.apply(source, delta) == target


def test_similar_json_documents_compress() -> None:
    rng = random.Random(3)
    prev = json.dumps(document(rng, 0)).encode()
    cur = json.dumps(document(rng, 1)).encode()
    delta = fossil.create(prev, cur)
    assert len(delta) < len(cur) / 2, (len(delta), len(cur))


@pytest.mark.parametrize("delta", [b"", b"5\n", b"3\n3:abc", b"3\n3:abc9;", b"3\n9@0,3:abc0;"])
def test_malformed_deltas_are_refused(delta: bytes) -> None:
    with pytest.raises(fossil.DeltaError):
        fossil.apply(b"source", delta)

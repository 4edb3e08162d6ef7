"""The Celery task against a real gateway when things die: the worker (SIGKILL in the middle
of a publish) and the gateway (down, then back). Each event reaches the official SDK once."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from herald.apiclient import ApiClient
from herald.django.tasks import publish_realtime_event
from tests.django_app.support.common import succeeded, unique
from tests.django_app.support.scripted_api import ScriptedApi, forward, forward_then_hold
from tests.django_app.support.sdk import SyncListener
from tests.django_app.support.worker import Workers
from tests.support.gateway import TEST_API_KEY, GatewayProcess, base_config
from tests.support.redis_server import RedisServer
from tests.support.timing import seconds
from tests.support.tokens import token


def fence(listener: SyncListener, api_url: str, channel: str) -> list[object]:
    """Publish a sentinel and wait for it: whatever else was going to arrive has arrived."""
    with ApiClient(api_url, TEST_API_KEY) as api:
        api.publish(channel, {"type": "sentinel"})
    listener.wait_for(lambda: {"type": "sentinel"} in listener.listener.publications.get(channel, []))
    return listener.publications(channel)


@pytest.mark.parametrize("killed", ["pool child", "whole worker"])
def test_a_worker_killed_mid_publish_delivers_the_event_once_after_a_restart(
    gateway: GatewayProcess, scripted: ScriptedApi, workers: Workers, killed: str
) -> None:
    # The first attempt reaches the gateway, which applies it; its answer is held, and the
    # worker is killed (SIGKILL) while it waits. Either the prefork pool's child dies (the
    # parent gives the unacknowledged message back: acks_late + reject_on_worker_lost, and
    # a new child runs it) or the whole worker dies (Redis hands the unacknowledged message
    # out again after the visibility timeout, to the worker started next). The second run
    # has the same idempotency key, so the gateway answers "already applied" instead of
    # delivering it twice.
    release = threading.Event()
    scripted.script(forward_then_hold(gateway.api_url, release))
    scripted.default = forward(gateway.api_url)
    env = {"HERALD_TEST_API_URL": scripted.url, "HERALD_TEST_POOL": "prefork" if killed == "pool child" else "solo"}
    if killed == "whole worker":
        env["HERALD_TEST_VISIBILITY_TIMEOUT"] = str(seconds(2))
    worker = workers.ensure(**env)
    name = unique("tenant")
    channel = f"critical:test_{name}"
    try:
        with SyncListener(gateway.ws_url, token("u1", [channel])) as listener:
            listener.subscribe(channel)
            mark = worker.mark()
            sent = publish_realtime_event.delay(
                channel=name, event_type="order.paid", payload={"id": 1}, recoverable=True
            )
            assert scripted.wait_until(lambda: len(scripted.seen(channel)) == 1, seconds(15))
            listener.wait_count(channel, 1)
            if killed == "pool child":
                [child] = worker.pool_children()
                os.kill(child, signal.SIGKILL)
            else:
                worker.kill()
                worker = workers.ensure(**env)  # a new worker, a new log
                mark = 0
            release.set()

            worker.wait_for_log(succeeded(sent.id), mark, timeout=30)
            # Redis may hand a message out more than once (that is what the key is for): every
            # attempt carries the one key, and the subscriber sees the event once.
            keys = [s.idempotency_key for s in scripted.seen(channel)]
            assert len(keys) >= 2 and len(set(keys)) == 1 and keys[0] is not None, keys
            assert fence(listener, gateway.api_url, channel) == [
                {"type": "order.paid", "payload": {"id": 1}},
                {"type": "sentinel"},
            ]
    finally:
        release.set()
        workers.close()  # the next test gets a worker with the usual settings


@pytest.fixture
def redis_gateway(broker_server: RedisServer) -> Iterator[GatewayProcess]:
    """A gateway on the Redis engine: history (and its epoch) outlive a restart, so a
    client that was away recovers what was published meanwhile."""
    prefix = f"herald-test-{uuid.uuid4().hex[:8]}"
    config = base_config(engine="redis", redis_address=f"redis://127.0.0.1:{broker_server.port}", redis_prefix=prefix)
    gw = GatewayProcess(config)
    try:
        gw.start()
        yield gw
    finally:
        gw.close()
        client = redis.Redis.from_url(broker_server.url)
        try:
            stale = list(client.scan_iter(match=f"{prefix}*"))
            if stale:
                client.delete(*stale)
        finally:
            client.close()


def test_a_task_publishing_while_the_gateway_is_down_delivers_once_when_it_is_back(
    redis_gateway: GatewayProcess, workers: Workers
) -> None:
    gw = redis_gateway
    # Enough retries (backoff capped at 1 time unit) to outlast a gateway restart.
    worker = workers.ensure(HERALD_TEST_API_URL=gw.api_url, HERALD_TEST_MAX_RETRIES="40")
    name = unique("tenant")
    channel = f"critical:test_{name}"
    with SyncListener(gw.ws_url, token("u1", [channel])) as listener:
        listener.subscribe(channel)
        gw.stop()
        try:
            mark = worker.mark()
            sent = publish_realtime_event.delay(
                channel=name, event_type="order.paid", payload={"id": 2}, recoverable=True
            )
            worker.wait_for_log(rf"realtime publish to {re.escape(channel)} failed \(connection failed", mark, count=2)
        finally:
            gw.start()
        worker.wait_for_log(succeeded(sent.id), mark, timeout=30)
        # Live or recovered from history after the reconnect: once either way.
        assert fence(listener, gw.api_url, channel) == [
            {"type": "order.paid", "payload": {"id": 2}},
            {"type": "sentinel"},
        ]


def test_the_queued_message_already_carries_its_idempotency_key(broker: str) -> None:
    # On a queue no worker reads, so the message can be read as the broker holds it.
    queue = f"herald-inspect-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(broker)
    try:
        publish_realtime_event.apply_async(kwargs={"channel": "a", "event_type": "x", "payload": {}}, queue=queue)
        publish_realtime_event.apply_async(args=("b", "x", {}), queue=queue)
        raw = client.lrange(queue, 0, -1)
        bodies = [json.loads(base64.b64decode(json.loads(m)["body"])) for m in reversed(raw)]
        keys = [kwargs.get("idempotency_key") for _args, kwargs, _embed in bodies]
        assert len(keys) == 2 and all(isinstance(k, str) and re.fullmatch(r"[0-9a-f]{32}", k) for k in keys), bodies
        assert keys[0] != keys[1]
    finally:
        client.delete(queue)
        stale = list(client.scan_iter(match=f"*{queue}*"))
        if stale:
            client.delete(*stale)
        client.close()

"""``herald serve --workers N``: N nodes on one port, sharing the Redis engine.

A real supervisor process with real worker processes; clients are raw WebSockets and the
official centrifuge-python SDK.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from centrifuge import Client

from tests.support.api import api, publish
from tests.support.delivery import assert_exactly_once_in_order
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.pyclient import Recorder, close_client
from tests.support.raw import RawClient
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.timing import seconds, wait_until, wait_until_sync
from tests.support.tokens import token


def workers_config(prefix: str, **extra: Any) -> dict[str, Any]:
    return base_config(**{"engine": "redis", "redis_address": REDIS_URL, "redis_prefix": prefix, "workers": 2, **extra})


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    with redis_prefix() as prefix, running_gateway(workers_config(prefix)) as gateway:
        wait_for_workers(gateway, 2)
        yield gateway


def nodes(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    """The nodes ``info`` lists, by name (asked of whichever worker takes the request)."""
    return {node["name"]: node for node in api(gw.api_url, "info")["result"]["nodes"]}


def wait_for_workers(gw: GatewayProcess, count: int) -> None:
    """Until every worker knows every other: ``info`` agrees however the requests spread."""
    wait_until_sync(
        lambda: all(len(nodes(gw)) == count for _ in range(8)), f"{count} workers to know each other", within=15
    )


def publish_retrying(gw: GatewayProcess, channel: str, data: dict[str, Any], key: str) -> None:
    """Publish as the Django task does: retry a dropped request with the same idempotency key, so
    a request that reached a worker as it died is never delivered twice."""
    for attempt in range(5):
        try:
            publish(gw.api_url, channel, data, idempotency_key=key)
            return
        except (ConnectionError, urllib.error.URLError):
            if attempt == 4:
                raise
            time.sleep(0.1)


def worker_pids(gw: GatewayProcess) -> list[int]:
    children = Path(f"/proc/{gw.pid}/task/{gw.pid}/children").read_text().split()
    return sorted(int(pid) for pid in children)


async def open_clients(gw: GatewayProcess, count: int, user: str, channel: str = "") -> list[RawClient]:
    clients = []
    for _ in range(count):
        client = await RawClient.open(gw.ws_url)
        await client.connect(token(user=user, channels=[channel] if channel else []))
        if channel:
            assert "subscribe" in await client.subscribe(channel)
        clients.append(client)
    return clients


async def test_each_worker_is_a_node_and_connections_spread_over_them(gw: GatewayProcess) -> None:
    names = sorted(nodes(gw))
    assert len(names) == 2 and names[0].endswith("_w0") and names[1].endswith("_w1")
    user = uuid.uuid4().hex[:8]
    clients = await open_clients(gw, 30, user)

    def both_hold_some() -> bool:
        return all(node["num_clients"] > 0 for node in nodes(gw).values())

    await wait_until(both_hold_some, "both workers to hold connections", within=10)
    total = await wait_until(lambda: sum(n["num_clients"] for n in nodes(gw).values()) >= 30, "the counts", within=10)
    assert total
    for client in clients:
        await client.close()


async def test_a_publish_through_any_worker_reaches_subscribers_on_all(gw: GatewayProcess) -> None:
    channel = f"tenant_{uuid.uuid4().hex[:6]}"
    clients = await open_clients(gw, 20, "5", channel)
    for n in range(5):
        publish(gw.api_url, channel, {"n": n})  # each call may land on either worker
    for client in clients:
        got = [(await client.push(lambda p: "pub" in p))["pub"]["data"]["n"] for _ in range(5)]
        assert got == [0, 1, 2, 3, 4]
        await client.close()


async def test_disconnect_reaches_a_user_on_any_worker(gw: GatewayProcess) -> None:
    user = uuid.uuid4().hex[:8]
    clients = await open_clients(gw, 12, user)
    assert api(gw.api_url, "disconnect", {"user": user}) == {"result": {}}
    codes = await asyncio.gather(*(client.closed() for client in clients))
    assert codes == [(3503, "force disconnect")] * 12


async def test_a_killed_worker_loses_only_its_connections_which_reconnect_and_recover() -> None:
    channel = f"critical:{uuid.uuid4().hex[:8]}"
    with redis_prefix() as prefix, running_gateway(workers_config(prefix)) as gw:
        wait_for_workers(gw, 2)
        recorders = [Recorder() for _ in range(10)]
        clients = []
        for n, recorder in enumerate(recorders):
            client = Client(
                gw.ws_url,
                token=token(user=str(n), channels=[channel]),
                events=recorder.client_handler(),
                min_reconnect_delay=0.05,
                max_reconnect_delay=0.3,
            )
            sub = client.new_subscription(channel, events=recorder.sub_handler(channel))
            await client.connect()
            await sub.subscribe()
            clients.append(client)
        for recorder in recorders:
            await recorder.wait_for("sub:subscribed", channel)
        await wait_until(
            lambda: all(node["num_clients"] > 0 for node in nodes(gw).values()), "clients on both workers", within=10
        )
        for seq in range(10):
            publish_retrying(gw, channel, {"seq": seq}, f"seq-{seq}")
        marks = [recorder.mark() for recorder in recorders]
        victim = worker_pids(gw)[0]
        os.kill(victim, signal.SIGKILL)
        for seq in range(10, 20):
            publish_retrying(gw, channel, {"seq": seq}, f"seq-{seq}")

        def seqs(recorder: Recorder) -> list[int]:
            return [event.ctx.pub.data["seq"] for event in recorder.of("sub:publication", channel)]

        for recorder in recorders:
            await wait_until(lambda r=recorder: len(seqs(r)) >= 20, lambda r=recorder: f"20 seqs, saw {seqs(r)}")  # type: ignore[misc]
        cut = [bool(r.of("connecting", since=m)) for r, m in zip(recorders, marks, strict=True)]
        assert any(cut) and not all(cut), f"the clients cut off: {cut}"
        for recorder, was_cut, mark in zip(recorders, cut, marks, strict=True):
            assert_exactly_once_in_order(seqs(recorder), range(20))
            if was_cut:  # it resubscribed and recovered from the shared history
                resubscribed = recorder.of("sub:subscribed", channel, since=mark)
                assert resubscribed and resubscribed[-1].ctx.recovered
        assert f"(pid {victim}) was killed by signal 9; starting it again" in gw.log()
        wait_until_sync(lambda: victim not in worker_pids(gw) and len(worker_pids(gw)) == 2, "a new worker 0")
        for client in clients:
            await close_client(client)


async def test_sigterm_drains_every_worker_and_the_supervisor_exits() -> None:
    with redis_prefix() as prefix:
        gw = GatewayProcess(workers_config(prefix))
        try:
            gw.start()
            wait_for_workers(gw, 2)
            clients = await open_clients(gw, 12, "5")
            await wait_until(
                lambda: all(node["num_clients"] > 0 for node in nodes(gw).values()), "clients on both", within=10
            )
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(client.closed(timeout=seconds(15)) for client in clients))
            assert codes == [(3001, "shutdown")] * 12
            assert await asyncio.to_thread(gw.proc.wait, seconds(30)) == 0
            assert "all workers stopped" in gw.log()
        finally:
            gw.close()


async def test_workers_share_a_socket_handed_over_by_a_supervisor() -> None:
    with redis_prefix() as prefix:
        gw = GatewayProcess(workers_config(prefix), socket_activated=True)
        try:
            gw.start()
            wait_for_workers(gw, 2)
            channel = f"tenant_{uuid.uuid4().hex[:6]}"
            clients = await open_clients(gw, 10, "5", channel)
            publish(gw.api_url, channel, {"via": "inherited socket"})
            for client in clients:
                assert (await client.push(lambda p: "pub" in p))["pub"]["data"] == {"via": "inherited socket"}
                await client.close()
        finally:
            gw.close()


def test_auto_starts_one_worker_per_core() -> None:
    with redis_prefix() as prefix, running_gateway(workers_config(prefix, workers="auto")) as gw:
        cores = os.cpu_count() or 1
        wait_for_workers(gw, cores)
        assert len(worker_pids(gw)) == cores


def herald(*args: str, config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "herald.json"
    path.write_text(__import__("json").dumps(config))
    command = [sys.executable, "-m", "herald.gateway", *args, "--config", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=seconds(30))


def test_more_than_one_worker_needs_a_shared_engine(tmp_path: Path) -> None:
    fix = 'set "engine": "redis"'
    result = herald("serve", "--workers", "2", config=base_config(), tmp_path=tmp_path)
    assert result.returncode == 1 and "error: workers: 2 workers need a shared engine" in result.stderr
    assert fix in result.stderr
    result = herald("check", config=base_config(workers="auto"), tmp_path=tmp_path)
    assert result.returncode == 1 and "workers: auto workers need a shared engine" in result.stderr
    result = herald("serve", "--workers", "0", config=base_config(), tmp_path=tmp_path)
    assert result.returncode == 2 and "workers must be 1 or more" in result.stderr


def test_a_taken_port_is_reported_by_the_supervisor(tmp_path: Path) -> None:
    with redis_prefix() as prefix, running_gateway(base_config()) as taken:
        cfg = workers_config(prefix, port=taken.port, address="127.0.0.1")
        result = herald("serve", config=cfg, tmp_path=tmp_path)
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{taken.port}" in result.stderr

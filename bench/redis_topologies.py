"""Redis topologies: what the Redis engine costs next to the memory engine, and what failures cost.

* **fan-out** (``bench.fanout``'s paced phase): one channel, S subscribers, P publications
  through the HTTP API, against ``herald`` (memory engine), ``herald-redis`` (one
  ``redis-server`` of the benchmark's own) and ``herald-redis-sharded`` (two, the channels shared
  out by hash), each ``--repeat`` times, interleaved, in the same run. Herald's CPU-µs per
  delivery (median), and its ratio to the memory engine's (goal at most 1.3x); the Redis
  servers' CPU separately.
* **Sentinel failover**: one node on a Sentinel group (a master, its replica, three sentinels,
  ``down-after-milliseconds`` 1000), a ``centrifuge-python`` subscriber on a ``critical:``
  channel, a publication every 20 ms through the API, each retried until accepted. The master is
  killed (SIGKILL); measured from the kill: until the sentinels name the replica, until the API
  accepts a publish again, until the subscriber receives the first publication made after the kill.
* **Cluster failover**: the same on a three-master Redis Cluster (``cluster-node-timeout`` 1000),
  killing the master that owns the channel's slot.
* **stalled PUB/SUB**: one node reaching Redis through a proxy that stops forwarding the node's
  PUB/SUB connection (and keeps it open); measured from the stall: until the node reports it and
  rebuilds the connection, until the subscriber receives the first publication made after the
  stall (live or recovered).

The Redis processes and the stalling proxy are the test suite's (``tests/support``).

    python -m bench.redis_topologies --subs 1000,10000 --pubs 100 --repeat 3 --rounds 5
    python -m bench.redis_topologies --parts failover,cluster,stall   # the failures only
    python -m bench.redis_topologies --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import itertools
import json
import math
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from centrifuge import Client, SubscriptionEventHandler
from tests.support.proxy import Link, TcpProxy
from tests.support.redis_server import SENTINEL_MASTER, RedisClusterGroup, RedisServer, SentinelGroup

from bench.common import append_results, fmt, fmt_ratio, install_signal_cleanup, note, percentile, ratio, table
from bench.fanout import run_fanout
from bench.targets import API_KEY, HERALD, SECRET, HeraldTarget, Target, make_target
from herald.tokens import mint_connection_token

HERALD_REDIS_ONE = "herald-redis"
HERALD_REDIS_SHARDED = "herald-redis-sharded"
PUBLISH_EVERY = 0.02


class RedisTarget(HeraldTarget):
    """Herald on Redis servers of the benchmark's own, whose CPU is reported as the helpers'."""

    def __init__(self, workdir: Path, name: str, servers: list[RedisServer]) -> None:
        self.servers = servers
        super().__init__(workdir, name, engine="redis", redis_address=[s.url for s in servers])

    def helper_pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers if s.proc is not None]


def fanout_targets(servers: list[RedisServer]) -> Callable[[str, Path], Target]:
    def make(name: str, workdir: Path) -> Target:
        workdir.mkdir(parents=True, exist_ok=True)
        if name == HERALD_REDIS_ONE:
            return RedisTarget(workdir, name, servers[:1])
        if name == HERALD_REDIS_SHARDED:
            return RedisTarget(workdir, name, servers[:2])
        return make_target(name, workdir)

    return make


def run_fanouts(subs: list[int], pubs: int, rate: float, repeat: int, workdir: Path) -> list[dict[str, Any]]:
    """Each engine ``repeat`` times per S, interleaved, so load from other work on the machine
    falls on all of them alike; the report takes the median."""
    results = []
    for s in subs:
        for attempt in range(repeat):
            for name in (HERALD, HERALD_REDIS_ONE, HERALD_REDIS_SHARDED):
                # Fresh, empty servers for each run: nothing left over from the one before.
                servers = [RedisServer().start(), RedisServer().start()]
                try:
                    result = run_fanout(
                        name, s, pubs, rate, workdir / f"run{attempt}", burst=False, make=fanout_targets(servers)
                    )
                finally:
                    for server in servers:
                        server.close()
                results.append(result)
    return results


def fanout_report(results: list[dict[str, Any]]) -> str:
    def median(values: list[float]) -> float:
        return percentile(sorted(values), 50)

    cpu: dict[tuple[str, int], list[float]] = {}
    redis_cpu: dict[tuple[str, int], list[float]] = {}
    p99: dict[tuple[str, int], list[float]] = {}
    lost_dup: dict[tuple[str, int], list[int]] = {}
    failed: dict[tuple[str, int], str] = {}
    for r in results:
        key = (r["target"], r["subs"])
        if "paced" not in r:
            failed[key] = r.get("error", "failed")
            continue
        p = r["paced"]
        cpu.setdefault(key, []).append(p["cpu_us_per_delivery"])
        redis_cpu.setdefault(key, []).append(p["helper_us_per_delivery"])
        p99.setdefault(key, []).append(p["p99_ms"])
        totals = lost_dup.setdefault(key, [0, 0])
        totals[0] += p["lost"]
        totals[1] += p["dups"]
    rows = []
    for key in dict.fromkeys((r["target"], r["subs"]) for r in results):
        name, subs = key
        if key not in cpu:
            rows.append([name, fmt(subs), failed.get(key, "failed"), "", "", "", "", ""])
            continue
        memory = median(cpu.get((HERALD, subs), [math.nan]))
        values = cpu[key]
        rows.append(
            [
                name,
                fmt(subs),
                f"{fmt(median(values), 2)} ({fmt(min(values), 2)} to {fmt(max(values), 2)})",
                fmt_ratio(ratio(median(values), memory)),
                fmt(median(redis_cpu[key]), 2),
                fmt(median(p99[key])),
                str(len(values)),
                f"{lost_dup[key][0]} / {lost_dup[key][1]}",
            ]
        )
    header = [
        "engine",
        "S",
        "Herald CPU-µs/delivery, median (min to max)",
        "x memory engine",
        "+ Redis CPU-µs/del.",
        "p99 ms",
        "runs",
        "lost / dup",
    ]
    return table(header, rows)


# --- failures


class Deliveries(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.received: dict[int, float] = {}  # seq -> loop time received (the first time)

    async def on_publication(self, ctx: Any) -> None:
        self.received.setdefault(int(ctx.pub.data["seq"]), asyncio.get_running_loop().time())


class Publisher:
    """A publication every PUBLISH_EVERY, each retried until the API accepts it."""

    def __init__(self, port: int, channel: str) -> None:
        self.url = f"http://127.0.0.1:{port}/api/publish"
        self.channel = channel
        self.accepted: dict[int, float] = {}  # seq -> loop time the API accepted it
        self._stop = False

    def _post(self, seq: int) -> bool:
        body = json.dumps({"channel": self.channel, "data": {"seq": seq}, "idempotency_key": f"s{seq}"}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"X-API-Key": API_KEY})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return "result" in json.loads(resp.read())
        except (OSError, urllib.error.URLError, ValueError):
            return False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        while not self._stop:
            seq += 1
            for _attempt in itertools.count():
                if self._stop:
                    return
                if await asyncio.to_thread(self._post, seq):
                    break
                await asyncio.sleep(PUBLISH_EVERY)
            self.accepted[seq] = loop.time()
            await asyncio.sleep(PUBLISH_EVERY)

    def stop(self) -> None:
        self._stop = True


def delivered_after(deliveries: Deliveries, publisher: Publisher, since: float) -> bool:
    return not math.isnan(first_after(deliveries, publisher, since))


def first_after(deliveries: Deliveries, publisher: Publisher, since: float) -> float:
    """Seconds from ``since`` to the first delivery of a publication accepted after ``since``."""
    times = [deliveries.received[s] for s, at in publisher.accepted.items() if at > since and s in deliveries.received]
    return min(times) - since if times else math.nan


async def wait_for(predicate: Callable[[], bool], limit: float = 60.0) -> bool:
    """Poll ``predicate`` for up to ``limit`` seconds; whether it came true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@contextlib.asynccontextmanager
async def subscribed(node: HeraldTarget, channel: str) -> Any:
    deliveries = Deliveries()
    client = Client(
        f"ws://127.0.0.1:{node.port}/connection/websocket",
        token=mint_connection_token(SECRET, "bench", channels=[channel], ttl=3600),
        min_reconnect_delay=0.05,
        max_reconnect_delay=0.5,
    )
    sub = client.new_subscription(channel, events=deliveries, min_resubscribe_delay=0.05, max_resubscribe_delay=0.5)
    await client.connect()
    await sub.subscribe()
    publisher = Publisher(node.port, channel)
    task = asyncio.create_task(publisher.run())
    try:
        await wait_for(lambda: len(deliveries.received) >= 20)
        yield deliveries, publisher
    finally:
        publisher.stop()
        await task
        await client.disconnect()


async def sentinel_rounds(rounds: int, workdir: Path) -> list[dict[str, float]]:
    group = SentinelGroup()
    await asyncio.to_thread(group.start)
    (workdir / "sentinel").mkdir(parents=True, exist_ok=True)
    node = HeraldTarget(
        workdir / "sentinel",
        "herald-sentinel",
        engine="redis",
        redis_sentinel_address=group.addresses,
        redis_sentinel_master_name=SENTINEL_MASTER,
    )
    results = []
    try:
        await asyncio.to_thread(node.start)
        loop = asyncio.get_running_loop()
        for i in range(rounds):
            async with subscribed(node, f"critical:failover{i}") as (deliveries, publisher):
                master = group.master()
                await asyncio.to_thread(master.kill)
                killed = loop.time()
                await asyncio.to_thread(group.wait_failover, master.port)
                promoted = loop.time() - killed
                await wait_for(functools.partial(delivered_after, deliveries, publisher, killed))
                accepted = min(at for at in publisher.accepted.values() if at > killed)
                result = {
                    "promoted_s": promoted,
                    "publish_ok_s": accepted - killed,
                    "delivered_s": first_after(deliveries, publisher, killed),
                }
                note(
                    f"sentinel failover {i + 1}: replica named after {result['promoted_s']:.2f}s, "
                    f"API accepts after {result['publish_ok_s']:.2f}s, "
                    f"first delivery after {result['delivered_s']:.2f}s"
                )
                results.append(result)
            await asyncio.to_thread(group.rejoin, master)
    finally:
        await asyncio.to_thread(node.close)
        await asyncio.to_thread(group.close)
    return results


async def cluster_rounds(rounds: int, workdir: Path) -> list[dict[str, float]]:
    cluster = RedisClusterGroup()
    await asyncio.to_thread(cluster.start)
    (workdir / "cluster").mkdir(parents=True, exist_ok=True)
    node = HeraldTarget(workdir / "cluster", "herald-cluster", engine="redis", redis_cluster_address=cluster.seeds)
    results = []
    try:
        await asyncio.to_thread(node.start)
        loop = asyncio.get_running_loop()
        for i in range(rounds):
            channel = f"critical:cluster{i}"
            async with subscribed(node, channel) as (deliveries, publisher):
                owner = cluster.owner_of(f"herald.client.{{{channel}}}")
                await asyncio.to_thread(owner.kill)
                killed = loop.time()
                await asyncio.to_thread(cluster.wait_promoted, owner)
                promoted = loop.time() - killed
                await wait_for(functools.partial(delivered_after, deliveries, publisher, killed))
                accepted = min(at for at in publisher.accepted.values() if at > killed)
                result = {
                    "promoted_s": promoted,
                    "publish_ok_s": accepted - killed,
                    "delivered_s": first_after(deliveries, publisher, killed),
                }
                note(
                    f"cluster failover {i + 1}: replica promoted after {result['promoted_s']:.2f}s, "
                    f"API accepts after {result['publish_ok_s']:.2f}s, "
                    f"first delivery after {result['delivered_s']:.2f}s"
                )
                results.append(result)
            await asyncio.to_thread(cluster.rejoin, owner)
    finally:
        await asyncio.to_thread(node.close)
        await asyncio.to_thread(cluster.close)
    return results


def _is_pubsub(link: Link) -> bool:
    return b"SUBSCRIBE" in link.sent


async def stall_rounds(rounds: int, workdir: Path) -> list[dict[str, float]]:
    results = []
    server = await asyncio.to_thread(RedisServer().start)
    try:
        for i in range(rounds):
            async with TcpProxy(server.port) as proxy:
                (workdir / f"stall{i}").mkdir(parents=True, exist_ok=True)
                node = HeraldTarget(
                    workdir / f"stall{i}", "herald-stall", engine="redis", redis_address=f"127.0.0.1:{proxy.port}"
                )
                await asyncio.to_thread(node.start)
                try:
                    async with subscribed(node, f"critical:stall{i}") as (deliveries, publisher):
                        loop = asyncio.get_running_loop()
                        proxy.stall(_is_pubsub)
                        stalled = loop.time()
                        await wait_for(functools.partial(node.server.log_grep, "stalled"))
                        found = loop.time() - stalled
                        await wait_for(functools.partial(delivered_after, deliveries, publisher, stalled))
                        result = {"found_s": found, "delivered_s": first_after(deliveries, publisher, stalled)}
                        note(
                            f"stall {i + 1}: found and rebuilt after ≤ {found:.2f}s, "
                            f"first delivery after {result['delivered_s']:.2f}s"
                        )
                        results.append(result)
                finally:
                    await asyncio.to_thread(node.close)
    finally:
        await asyncio.to_thread(server.close)
    return results


def failure_report(
    failover: list[dict[str, float]], cluster: list[dict[str, float]], stalls: list[dict[str, float]]
) -> str:
    def stats(values: list[float]) -> str:
        ordered = sorted(v for v in values if not math.isnan(v))
        if not ordered:
            return "n/a"
        return f"{fmt(percentile(ordered, 50), 2)} ({fmt(ordered[0], 2)} to {fmt(ordered[-1], 2)})"

    rows = [
        [
            "Sentinel failover (master SIGKILLed)",
            "sentinels name the replica",
            stats([r["promoted_s"] for r in failover]),
        ],
        ["", "the publish API accepts again", stats([r["publish_ok_s"] for r in failover])],
        ["", "first publication delivered", stats([r["delivered_s"] for r in failover])],
        ["Cluster master SIGKILLed", "the replica is promoted", stats([r["promoted_s"] for r in cluster])],
        ["", "the publish API accepts again", stats([r["publish_ok_s"] for r in cluster])],
        ["", "first publication delivered", stats([r["delivered_s"] for r in cluster])],
        ["stalled PUB/SUB connection", "found by the probe, rebuilt", stats([r["found_s"] for r in stalls])],
        ["", "first publication delivered", stats([r["delivered_s"] for r in stalls])],
    ]
    return table(["failure", "seconds until", "median (min to max)"], rows) + (
        f"\n\n{len(failover)} Sentinel failovers, {len(cluster)} Cluster failovers, {len(stalls)} stalls; "
        f"a publication every {PUBLISH_EVERY * 1000:.0f} ms, retried until accepted; Sentinel "
        "`down-after-milliseconds` 1000, Cluster `cluster-node-timeout` 1000."
    )


def redis_versions() -> str:
    import redis

    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
    version = next((part[2:] for part in server.split() if part.startswith("v=")), "?")
    return (
        f"Redis: redis-server {version}, redis-py {redis.__version__}, hiredis {importlib.metadata.version('hiredis')}"
    )


def load_line(when: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {when}: {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, 2 CPUs)"


def main() -> None:
    parser = argparse.ArgumentParser(description="Redis topologies: fan-out cost and failure times")
    parser.add_argument("--subs", default="1000,10000", help="comma-separated subscriber counts")
    parser.add_argument("--pubs", type=int, default=100, help="publications per fan-out phase")
    parser.add_argument("--delivery-rate", type=float, default=20000, help="offered deliveries/s (paced phase)")
    parser.add_argument("--rounds", type=int, default=3, help="failovers and stalls each")
    parser.add_argument("--repeat", type=int, default=3, help="fan-out runs per engine and S (median reported)")
    parser.add_argument("--parts", default="fanout,failover,cluster,stall")
    parser.add_argument("--quick", action="store_true", help="S=1000, 30 publications, one round")
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args()
    install_signal_cleanup()
    subs = [1000] if args.quick else [int(s) for s in args.subs.split(",")]
    pubs = 30 if args.quick else args.pubs
    rounds = 1 if args.quick else args.rounds
    repeat = 1 if args.quick else args.repeat
    parts = args.parts.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    sections = [redis_versions(), load_line("at the start")]
    if "fanout" in parts:
        sections.append(fanout_report(run_fanouts(subs, pubs, args.delivery_rate, repeat, workdir)))
    failover: list[dict[str, float]] = []
    cluster: list[dict[str, float]] = []
    stalls: list[dict[str, float]] = []
    if "failover" in parts:
        failover = asyncio.run(sentinel_rounds(rounds, workdir))
    if "cluster" in parts:
        cluster = asyncio.run(cluster_rounds(rounds, workdir))
    if "stall" in parts:
        stalls = asyncio.run(stall_rounds(rounds, workdir))
    if failover or cluster or stalls:
        sections.append(failure_report(failover, cluster, stalls))
    sections.append(load_line("at the end"))
    text = "\n\n".join(sections)
    print(text)
    if not args.no_record:
        append_results("Redis topologies", text)


if __name__ == "__main__":
    main()

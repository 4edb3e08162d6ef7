"""Chaos: the Redis Cluster master that holds the channel dies and its replica takes over."""

from __future__ import annotations

import asyncio

from tests.chaos.helpers import blocking, eventually, gateways, ready, redis_config
from tests.support.chaos import ChaosRun, assert_nothing_lost_or_duplicated
from tests.support.redis_server import redis_cluster


async def test_a_cluster_master_killed_loses_nothing_silently() -> None:
    """The master owning the channel's slot is killed between two publishes, once its replica
    has every write. The cluster promotes the replica; the nodes read the new topology, subscribe
    the channel (sharded PUB/SUB) on the new master, and every subscriber ends with every
    publication exactly once."""
    with redis_cluster() as cluster:
        config = redis_config(redis_cluster_address=cluster.seeds)
        async with gateways(config, config) as nodes, ChaosRun(nodes) as run:
            await run.publisher.wait_for(30)
            await run.publisher.pause()
            owner = cluster.owner_of(f"herald.client.{{{run.channel}}}")
            await blocking(owner.wait_replicas_in_sync)
            await blocking(owner.kill)
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            run.publisher.resume()
            await blocking(cluster.wait_promoted, owner)
            promoted_after = loop.time() - killed_at
            await eventually(lambda: all(ready(n) == 200 for n in nodes), "both nodes are ready again")
            await run.publisher.wait_for(60)
            tallies = await run.finish()
            report = run.report(f"Cluster master killed (replica promoted after {promoted_after:.1f}s)", tallies)
            assert_nothing_lost_or_duplicated(tallies, report)
            assert run.publisher.errors["error 100"] >= 1, f"the failover went unnoticed\n{report}"

"""Chaos: Sentinel fails the master over to its replica while publications flow."""

from __future__ import annotations

import asyncio

from tests.chaos.helpers import blocking, eventually, gateways, ready, redis_config
from tests.support.chaos import ChaosRun, assert_nothing_lost_or_duplicated
from tests.support.redis_server import SENTINEL_MASTER, sentinel_group


async def test_a_sentinel_failover_loses_nothing_silently() -> None:
    """The master is killed (SIGKILL) between two publishes, once its replica has every write
    (Redis replicates asynchronously: a write the replica never got is Redis's loss, not this
    test's subject). Publishes fail with error 100 and are retried until the sentinels have
    promoted the replica; the nodes find the new master by themselves, and every subscriber ends
    with every publication exactly once, recovered from history where PUB/SUB missed it."""
    with sentinel_group() as group:
        config = redis_config(redis_sentinel_address=group.addresses, redis_sentinel_master_name=SENTINEL_MASTER)
        async with gateways(config, config) as nodes, ChaosRun(nodes) as run:
            await run.publisher.wait_for(30)
            await run.publisher.pause()
            master = group.master()
            await blocking(master.wait_replicas_in_sync)
            await blocking(master.kill)
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            run.publisher.resume()
            await blocking(group.wait_failover, master.port)
            promoted_after = loop.time() - killed_at
            await eventually(lambda: all(ready(n) == 200 for n in nodes), "both nodes are ready again")
            await run.publisher.wait_for(60)
            tallies = await run.finish()
            report = run.report(f"Sentinel failover (promoted after {promoted_after:.1f}s)", tallies)
            assert_nothing_lost_or_duplicated(tallies, report)
            assert run.publisher.errors["error 100"] >= 1, f"the failover went unnoticed\n{report}"

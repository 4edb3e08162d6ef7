"""Chaos: one node's PUB/SUB connection stops delivering without breaking (a stalled proxy)."""

from __future__ import annotations

import asyncio

from tests.chaos.helpers import eventually, gateways, redis_config
from tests.support.chaos import ChaosRun, assert_nothing_lost_or_duplicated
from tests.support.proxy import Link, TcpProxy
from tests.support.redis_server import redis_server


def is_pubsub(link: Link) -> bool:
    return b"SUBSCRIBE" in link.sent


async def test_a_stalled_pubsub_connection_is_found_and_nothing_is_lost() -> None:
    """Node 1 reaches Redis through a proxy that then stops forwarding its PUB/SUB connection,
    keeping it open: no error, no publication. Its probe notices within seconds and rebuilds the
    connection; its subscribers, checked at once, recover what the stall kept from them."""
    with redis_server() as server:
        async with TcpProxy(server.port) as proxy:
            through_proxy = redis_config(redis_address=f"redis://127.0.0.1:{proxy.port}/0")
            direct = redis_config(redis_address=server.url)
            async with gateways(through_proxy, direct) as nodes, ChaosRun(nodes) as run:
                await run.publisher.wait_for(30)
                assert proxy.stall(is_pubsub) == 1
                loop = asyncio.get_running_loop()
                stalled_at = loop.time()
                await eventually(lambda: "stalled" in nodes[0].log(), "node 1 found its PUB/SUB stalled")
                found_after = loop.time() - stalled_at
                await run.publisher.wait_for(60)
                tallies = await run.finish()
                report = run.report(f"stalled PUB/SUB (found after {found_after:.1f}s)", tallies)
                assert_nothing_lost_or_duplicated(tallies, report)
                on_stalled_node = [t for t in tallies if t.name.startswith("node1/")]
                assert all(t.recovered >= 1 for t in on_stalled_node), report

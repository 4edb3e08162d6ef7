"""Chaos: the one Redis server restarts empty while publications flow and subscribers listen."""

from __future__ import annotations

from tests.chaos.helpers import blocking, eventually, gateways, ready, redis_config
from tests.support.chaos import ChaosRun, assert_nothing_lost_or_duplicated
from tests.support.redis_server import redis_server


async def test_a_redis_restart_loses_nothing_silently() -> None:
    """Redis stops between two publishes and comes back without its data. While it is down the
    publish API answers error 100 and the publisher retries with the same idempotency key; the
    nodes reconnect and resubscribe by themselves, and every subscriber, told its stream is gone,
    gets ``recovered: false``; whatever is published afterwards arrives exactly once."""
    with redis_server() as server:
        config = redis_config(redis_address=server.url)
        async with gateways(config, config) as nodes, ChaosRun(nodes) as run:
            await run.publisher.wait_for(30)
            await run.publisher.pause()
            await blocking(server.stop)
            run.publisher.resume()
            await eventually(lambda: run.publisher.errors["error 100"] >= 3, "publishes answer error 100")
            await eventually(lambda: all(ready(n) == 503 for n in nodes), "both nodes answer /ready with 503")
            await blocking(server.start)
            await eventually(lambda: all(ready(n) == 200 for n in nodes), "both nodes are ready again")
            await run.publisher.wait_for(60)
            tallies = await run.finish()
            report = run.report("Redis restart (empty)", tallies)
            assert_nothing_lost_or_duplicated(tallies, report)
            # The restart replaced every stream: no subscriber may believe it has everything.
            assert all(t.told_unrecovered >= 1 for t in tallies), report

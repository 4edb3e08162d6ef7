"""The broker contract (``broker_contract.py``) against the Redis engine, plus what only it does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from herald.gateway.engines.redis import RedisEngine
from tests.gateway.broker_contract import BrokerContract, Engine, channel, publish, started
from tests.support.redis import REDIS_URL, redis_prefix


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    with redis_prefix() as prefix:
        redis_engine = RedisEngine(REDIS_URL, prefix=prefix)
        eng = await started(redis_engine.broker, redis_engine.presence)
        yield eng
        await eng.close()


class TestRedisBroker(BrokerContract):
    """Every rule of the contract, on the multi-node engine (real time, real Redis)."""


async def test_two_brokers_on_one_prefix_see_each_others_publications() -> None:
    with redis_prefix() as prefix:
        first, second = RedisEngine(REDIS_URL, prefix=prefix), RedisEngine(REDIS_URL, prefix=prefix)
        a = await started(first.broker, first.presence)
        b = await started(second.broker, second.presence)
        try:
            ch = channel()
            await b.broker.subscribe(ch)  # returns once Redis confirmed the subscription
            result = await publish(a, ch, 1)
            ((pub, epoch),) = await b.events.wait_publications(ch, 1)
            assert (pub.offset, epoch) == (result.position.offset, result.position.epoch)
            assert not a.events.publications  # a never subscribed to the channel
        finally:
            await a.close()
            await b.close()


async def test_revocations_are_stored_and_loaded() -> None:
    with redis_prefix() as prefix:
        engine = RedisEngine(REDIS_URL, prefix=prefix)
        try:
            await engine.revocations.revoke("jti-1", 4_000_000_000, "")
            await engine.revocations.revoke("jti.2", 0, "staging_")
            await engine.revocations.invalidate_user("42", 1_700_000_000, 0, "")
            await engine.revocations.invalidate_user("4.2", 1_700_000_001, 4_000_000_000, "prod.")
            revoked, invalidated = await engine.revocations.load()
            assert revoked == {("jti-1", ""): 4_000_000_000, ("jti.2", "staging_"): 0}
            assert invalidated == {("42", ""): (1_700_000_000, 0), ("4.2", "prod."): (1_700_000_001, 4_000_000_000)}
        finally:
            await engine.close()

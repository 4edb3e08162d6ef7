"""The broker contract (``broker_contract.py``) against the memory engine, plus what only it does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from herald.gateway.engines.broker import PublishOptions
from herald.gateway.engines.memory import MemoryBroker, MemoryPresence
from tests.gateway.broker_contract import META_TTL, BrokerContract, Engine, publish, started


class ManualClock:
    """Monotonic time that moves only when told, so ttl rules run instantly."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def engine(clock: ManualClock) -> AsyncIterator[Engine]:
    eng = await started(MemoryBroker(clock), MemoryPresence(clock), elapse=clock.advance, clock=clock)
    yield eng
    await eng.close()


class TestMemoryBroker(BrokerContract):
    """Every rule of the contract, on the single-node engine."""


async def test_memory_epochs_are_four_letters(engine: Engine) -> None:
    epoch = (await publish(engine, "c", 1)).position.epoch
    assert len(epoch) == 4 and epoch.isalpha()


async def test_sweep_forgets_expired_streams_and_idempotency_results(engine: Engine, clock: ManualClock) -> None:
    broker = engine.broker
    assert isinstance(broker, MemoryBroker)
    short = PublishOptions(history_size=5, history_ttl=1.0, history_meta_ttl=2.0, idempotency_key="k")
    first = await publish(engine, "short", 1, short)
    await publish(engine, "long", 1)
    await clock.advance(301.0)
    broker.sweep()
    assert "short" not in broker._streams and "long" in broker._streams
    assert not broker._results
    again = await publish(engine, "short", 2, short)
    assert not again.from_cache and again.position.epoch != first.position.epoch


async def test_a_zero_meta_ttl_never_expires(engine: Engine, clock: ManualClock) -> None:
    opts = PublishOptions(history_size=5, history_ttl=1.0, history_meta_ttl=0.0)
    top = (await publish(engine, "c", 1, opts)).position
    await clock.advance(10 * META_TTL)
    assert (await publish(engine, "c", 2, opts)).position.epoch == top.epoch

"""The Broker / PresenceManager contract, as one reusable test suite for every engine.

An engine's test module provides a pytest fixture ``engine`` returning an :class:`Engine`
(made with :func:`started`) and subclasses :class:`BrokerContract`::

    @pytest.fixture
    async def engine() -> AsyncIterator[Engine]:
        eng = await started(MyBroker(...), MyPresence(...))   # elapse = real sleep by default
        yield eng
        await eng.close()

    class TestMyBroker(BrokerContract):
        pass

Rules the suite holds an engine to (spec §6.1, §9.1, decisions §6):

* offsets start at 1 per channel, grow by one per publication and are never reused within an
  epoch; a stream read or publish creates the epoch; the handler receives every publication
  with its offset and epoch, in order;
* history filters: ``limit`` 0 = top only, -1 = all, ``since`` exclusive, ``reverse`` newest
  first, a stale ``since.epoch`` raises :class:`UnrecoverablePosition`;
* ``history_size`` trims, ``history_ttl`` drops the data but keeps offset and epoch, an expired
  meta ttl starts a new epoch at offset 0, reading keeps the meta alive;
* ``remove_history`` keeps offset and epoch; publishing without history stores nothing;
* an idempotency key returns the first result within its window, stores and delivers once;
* join/leave reach the handler; presence adds, removes, counts users and expires by ttl.

Time-based rules call ``engine.elapse``: engines with an injectable clock move it, others
sleep. Their ttls are multiples of ``engine.ttl``: one time unit (``tests/support/timing.py``)
in whole seconds, so engines with one-second expiry resolution pass too, and a loaded machine
gets longer ttls with ``HERALD_TEST_TIME_UNIT``. A rule that something expires sleeps past the
ttl (sleeping longer only makes it more expired). A rule that renewing keeps something alive
(:func:`paced`) spaces its renewals 0.3 lifetimes apart, well within a lifetime each, over more
than a lifetime in all; it times the steps on ``engine.clock`` and, should the machine stall so
long that a renewal came a lifetime late, runs the rule again rather than report a renewal bug.
Delivery may be asynchronous (PUB/SUB), so the suite waits for events with a deadline and
uses a later publication as a fence to prove that nothing else was delivered.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import pytest
from msgspec import Raw

from herald.gateway.codecs.messages import ClientInfo, Publication, StreamPosition
from herald.gateway.engines.broker import (
    Broker,
    HistoryFilter,
    PresenceManager,
    PublishOptions,
    PublishResult,
    UnrecoverablePosition,
)
from tests.support.timing import seconds, wait_until

T = TypeVar("T")

PAST = 1.6  # times a ttl: comfortably past it
META_TTL = 3600.0
HISTORY = PublishOptions(history_size=10, history_ttl=60.0, history_meta_ttl=META_TTL)


class RecordingHandler:
    """A BrokerEventHandler that records everything and lets tests wait for it."""

    def __init__(self) -> None:
        self.publications: list[tuple[str, Publication, str]] = []
        self.joins: list[tuple[str, ClientInfo]] = []
        self.leaves: list[tuple[str, ClientInfo]] = []
        self.controls: list[bytes] = []
        self._changed = asyncio.Event()

    def handle_publication(self, channel: str, pub: Publication, epoch: str) -> None:
        self.publications.append((channel, pub, epoch))
        self._changed.set()

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info))
        self._changed.set()

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info))
        self._changed.set()

    def handle_control(self, data: bytes) -> None:
        self.controls.append(data)
        self._changed.set()

    def publications_on(self, channel: str) -> list[tuple[Publication, str]]:
        return [(pub, epoch) for ch, pub, epoch in self.publications if ch == channel]

    async def wait_publications(self, channel: str, count: int) -> list[tuple[Publication, str]]:
        await self._wait(lambda: len(self.publications_on(channel)) >= count, f"{count} publications on {channel}")
        return self.publications_on(channel)

    async def wait_join(self, channel: str) -> ClientInfo:
        await self._wait(lambda: any(ch == channel for ch, _ in self.joins), f"a join on {channel}")
        return next(info for ch, info in self.joins if ch == channel)

    async def wait_leave(self, channel: str) -> ClientInfo:
        await self._wait(lambda: any(ch == channel for ch, _ in self.leaves), f"a leave on {channel}")
        return next(info for ch, info in self.leaves if ch == channel)

    async def _wait(self, done: Callable[[], bool], what: str) -> None:
        await wait_until(done, lambda: f"{what}; got {len(self.publications)} publications in all", wake=self._changed)


async def real_sleep(secs: float) -> None:
    await asyncio.sleep(secs)


def unit_ttl() -> float:
    """The ttl unit of the time-based rules: one time unit, in whole seconds."""
    return float(max(1, math.ceil(seconds(1))))


@dataclass
class Engine:
    """What the contract drives: a started broker, its presence manager and the recorded events."""

    broker: Broker
    presence: PresenceManager
    events: RecordingHandler
    # Let ``seconds`` of engine time pass: move a fake clock, or really wait.
    elapse: Callable[[float], Awaitable[None]] = real_sleep
    # The engine's time, as the time-based rules measure it.
    clock: Callable[[], float] = time.monotonic
    ttl: float = field(default_factory=unit_ttl)

    async def close(self) -> None:
        await self.broker.close()


async def started(
    broker: Broker,
    presence: PresenceManager,
    elapse: Callable[[float], Awaitable[None]] = real_sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Engine:
    events = RecordingHandler()
    await broker.start(events)
    return Engine(broker, presence, events, elapse, clock)


Step = Callable[[], Awaitable[Any]]


async def paced(engine: Engine, lifetime: float, steps: Sequence[Step]) -> list[Any] | None:
    """Run ``steps`` 0.3 ``lifetime`` apart (the first sets something up, the others renew or
    read it), so they span more than a lifetime while each comes well within one of the last.

    Their results; None when a step ended a lifetime or more after the previous one began (the
    machine stalled): what should have been renewed may rightly have expired, so the rule was
    not tested and :func:`premise_held` runs it again.
    """
    results: list[Any] = []
    previous_began: float | None = None
    for i, step in enumerate(steps):
        if i:
            await engine.elapse(0.3 * lifetime)
        began = engine.clock()
        results.append(await step())
        if previous_began is not None and engine.clock() - previous_began >= lifetime:
            return None
        previous_began = began
    return results


async def premise_held(attempt: Callable[[], Awaitable[T | None]], tries: int = 3) -> T:
    """The result of the first of ``tries`` runs of a :func:`paced` rule that was not stalled."""
    for _ in range(tries):
        result = await attempt()
        if result is not None:
            return result
    raise AssertionError(f"a renewal came a whole lifetime late in all {tries} tries: raise HERALD_TEST_TIME_UNIT")


def channel() -> str:
    """A channel no other test (or test run sharing the engine's storage) uses."""
    return f"contract:{uuid.uuid4().hex}"


def data(n: int) -> Raw:
    return Raw(b'{"n":%d}' % n)


def numbers(pubs: list[Publication]) -> list[int]:
    return [int(bytes(p.data)[5:-1]) for p in pubs]


async def publish(engine: Engine, ch: str, n: int, opts: PublishOptions = HISTORY) -> PublishResult:
    return await engine.broker.publish(ch, Publication(data=data(n)), opts)


async def history(
    engine: Engine, ch: str, *, limit: int = 0, since: StreamPosition | None = None, reverse: bool = False
) -> tuple[list[Publication], StreamPosition]:
    page = await engine.broker.history(ch, HistoryFilter(since=since, limit=limit, reverse=reverse), META_TTL)
    return page.publications, page.top


async def watched(engine: Engine) -> str:
    """A fresh channel this node receives publications of."""
    ch = channel()
    await engine.broker.subscribe(ch)
    return ch


def info(user: str, client: str) -> ClientInfo:
    return ClientInfo(user=user, client=client, conn_info=Raw(b'{"name":"%s"}' % user.encode()))


class BrokerContract:
    """Every engine passes these; see the module docstring for how to run them."""

    # --- offsets, epochs, delivery

    async def test_offsets_start_at_one_in_one_epoch_and_reach_the_handler_in_order(self, engine: Engine) -> None:
        ch = await watched(engine)
        results = [await publish(engine, ch, n) for n in (10, 20, 30)]
        assert [r.position.offset for r in results] == [1, 2, 3]
        epoch = results[0].position.epoch
        assert epoch and all(r.position.epoch == epoch for r in results)
        assert not any(r.from_cache for r in results)
        delivered = await engine.events.wait_publications(ch, 3)
        assert [(p.offset, e) for p, e in delivered] == [(1, epoch), (2, epoch), (3, epoch)]
        assert numbers([p for p, _ in delivered]) == [10, 20, 30]

    async def test_reading_a_new_channel_creates_its_epoch_at_offset_zero(self, engine: Engine) -> None:
        ch = channel()
        pubs, top = await history(engine, ch, limit=-1)
        assert pubs == [] and top.offset == 0 and top.epoch
        assert (await history(engine, ch))[1] == top  # the same epoch on the next read
        result = await publish(engine, ch, 1)
        assert result.position == StreamPosition(1, top.epoch)

    async def test_channels_have_their_own_streams(self, engine: Engine) -> None:
        a, b = channel(), channel()
        await publish(engine, a, 1)
        await publish(engine, a, 2)
        assert (await publish(engine, b, 1)).position.offset == 1
        assert (await history(engine, a))[1].offset == 2

    async def test_publication_fields_survive_storage_and_delivery(self, engine: Engine) -> None:
        ch = await watched(engine)
        sent = Publication(data=Raw(b'{"a":[1,2],"s":"x"}'), info=info("42", "c1"), tags={"k": "v"})
        await engine.broker.publish(ch, sent, HISTORY)
        (stored,), _ = await history(engine, ch, limit=-1)
        ((delivered, _),) = await engine.events.wait_publications(ch, 1)
        for pub in (stored, delivered):
            assert bytes(pub.data) == b'{"a":[1,2],"s":"x"}'
            assert pub.info == info("42", "c1") and pub.tags == {"k": "v"} and pub.offset == 1

    # --- history filters

    async def test_limit_zero_gives_only_the_top_and_minus_one_gives_all(self, engine: Engine) -> None:
        ch = channel()
        for n in range(1, 6):
            await publish(engine, ch, n)
        pubs, top = await history(engine, ch, limit=0)
        assert pubs == [] and top.offset == 5
        pubs, _ = await history(engine, ch, limit=-1)
        assert [p.offset for p in pubs] == [1, 2, 3, 4, 5] and numbers(pubs) == [1, 2, 3, 4, 5]
        pubs, _ = await history(engine, ch, limit=2)
        assert [p.offset for p in pubs] == [1, 2]

    async def test_since_is_exclusive_and_forward(self, engine: Engine) -> None:
        ch = channel()
        for n in range(1, 6):
            top = (await publish(engine, ch, n)).position
        pubs, _ = await history(engine, ch, limit=-1, since=StreamPosition(2, top.epoch))
        assert [p.offset for p in pubs] == [3, 4, 5]
        pubs, _ = await history(engine, ch, limit=2, since=StreamPosition(2, top.epoch))
        assert [p.offset for p in pubs] == [3, 4]
        pubs, got_top = await history(engine, ch, limit=-1, since=top)
        assert pubs == [] and got_top == top
        pubs, _ = await history(engine, ch, limit=-1, since=StreamPosition(99, top.epoch))  # in the future
        assert pubs == []
        pubs, _ = await history(engine, ch, limit=-1, since=StreamPosition(3, ""))  # no epoch: not checked
        assert [p.offset for p in pubs] == [4, 5]

    async def test_reverse_reads_newest_first(self, engine: Engine) -> None:
        ch = channel()
        for n in range(1, 6):
            top = (await publish(engine, ch, n)).position
        pubs, _ = await history(engine, ch, limit=-1, reverse=True)
        assert [p.offset for p in pubs] == [5, 4, 3, 2, 1]
        pubs, _ = await history(engine, ch, limit=2, reverse=True)
        assert [p.offset for p in pubs] == [5, 4]
        pubs, _ = await history(engine, ch, limit=-1, reverse=True, since=StreamPosition(4, top.epoch))
        assert [p.offset for p in pubs] == [3, 2, 1]
        pubs, _ = await history(engine, ch, limit=1, reverse=True, since=StreamPosition(4, top.epoch))
        assert [p.offset for p in pubs] == [3]
        pubs, _ = await history(engine, ch, limit=-1, reverse=True, since=StreamPosition(1, top.epoch))
        assert pubs == []

    async def test_a_stale_epoch_is_an_unrecoverable_position(self, engine: Engine) -> None:
        ch = channel()
        await publish(engine, ch, 1)
        with pytest.raises(UnrecoverablePosition):
            await history(engine, ch, limit=-1, since=StreamPosition(1, "stale-epoch"))
        with pytest.raises(UnrecoverablePosition):
            await history(engine, ch, limit=0, since=StreamPosition(0, "stale-epoch"))

    # --- retention

    async def test_history_size_keeps_the_newest_and_offsets_go_on(self, engine: Engine) -> None:
        ch = channel()
        opts = PublishOptions(history_size=3, history_ttl=60.0, history_meta_ttl=META_TTL)
        for n in range(1, 6):
            await publish(engine, ch, n, opts)
        pubs, top = await history(engine, ch, limit=-1)
        assert [p.offset for p in pubs] == [3, 4, 5] and top.offset == 5
        assert (await publish(engine, ch, 6, opts)).position.offset == 6
        pubs, _ = await history(engine, ch, limit=-1, since=StreamPosition(1, top.epoch))
        assert [p.offset for p in pubs] == [4, 5, 6]  # what is left after the trimmed gap

    async def test_history_ttl_drops_the_data_and_keeps_the_position(self, engine: Engine) -> None:
        ch = channel()
        opts = PublishOptions(history_size=10, history_ttl=engine.ttl, history_meta_ttl=META_TTL)
        await publish(engine, ch, 1, opts)
        top = (await publish(engine, ch, 2, opts)).position
        await engine.elapse(PAST * engine.ttl)
        pubs, got_top = await history(engine, ch, limit=-1)
        assert pubs == [] and got_top == top
        assert (await publish(engine, ch, 3, opts)).position == StreamPosition(3, top.epoch)

    async def test_each_publish_extends_the_history_ttl(self, engine: Engine) -> None:
        lifetime = 2 * engine.ttl
        opts = PublishOptions(history_size=10, history_ttl=lifetime, history_meta_ttl=META_TTL)

        async def attempt() -> list[Publication] | None:
            ch = channel()
            steps = [partial(publish, engine, ch, n, opts) for n in (1, 2, 3, 4)]
            done = await paced(engine, lifetime, [*steps, partial(history, engine, ch, limit=-1)])
            return None if done is None else done[-1][0]

        # The first publication is more than a lifetime old, and kept by the later ones.
        assert [p.offset for p in await premise_held(attempt)] == [1, 2, 3, 4]

    async def test_an_expired_meta_starts_a_new_epoch_at_offset_zero(self, engine: Engine) -> None:
        ch = channel()
        opts = PublishOptions(history_size=10, history_ttl=engine.ttl, history_meta_ttl=engine.ttl)
        old = (await publish(engine, ch, 1, opts)).position
        await engine.elapse(PAST * engine.ttl)  # one read only: reading would keep the meta alive
        page = await engine.broker.history(ch, HistoryFilter(limit=-1), engine.ttl)
        assert page.publications == [] and page.top.offset == 0 and page.top.epoch != old.epoch
        new = (await publish(engine, ch, 2, opts)).position
        assert new == StreamPosition(1, page.top.epoch)

    async def test_reading_keeps_the_meta_alive(self, engine: Engine) -> None:
        lifetime = 2 * engine.ttl
        opts = PublishOptions(history_size=10, history_ttl=lifetime, history_meta_ttl=lifetime)

        async def attempt() -> list[Any] | None:
            ch = channel()
            read = partial(engine.broker.history, ch, HistoryFilter(limit=0), lifetime)
            return await paced(engine, lifetime, [partial(publish, engine, ch, 1, opts), read, read, read, read])

        published, *pages = await premise_held(attempt)
        # The last read is more than a lifetime after the publication: the reads kept the stream.
        assert [page.top for page in pages] == [published.position] * 4

    async def test_remove_history_keeps_offset_and_epoch(self, engine: Engine) -> None:
        ch = channel()
        for n in range(1, 4):
            top = (await publish(engine, ch, n)).position
        await engine.broker.remove_history(ch)
        pubs, got_top = await history(engine, ch, limit=-1)
        assert pubs == [] and got_top == top
        assert (await publish(engine, ch, 4)).position == StreamPosition(4, top.epoch)
        await engine.broker.remove_history(channel())  # a channel without a stream: no error

    async def test_publishing_without_history_stores_nothing_but_is_delivered(self, engine: Engine) -> None:
        ch = await watched(engine)
        top = (await publish(engine, ch, 1)).position
        result = await publish(engine, ch, 2, PublishOptions())
        assert result.position == StreamPosition() and not result.from_cache
        await publish(engine, ch, 3)
        delivered = await engine.events.wait_publications(ch, 3)
        assert [(p.offset, e) for p, e in delivered] == [(1, top.epoch), (0, ""), (2, top.epoch)]
        pubs, _ = await history(engine, ch, limit=-1)
        assert numbers(pubs) == [1, 3]

    # --- idempotent publish (decisions §6)

    async def test_a_repeated_idempotency_key_returns_the_first_result(self, engine: Engine) -> None:
        ch = await watched(engine)
        opts = PublishOptions(history_size=10, history_ttl=60.0, history_meta_ttl=META_TTL, idempotency_key="k1")
        first = await publish(engine, ch, 1, opts)
        again = await publish(engine, ch, 2, opts)
        assert again.position == first.position and again.from_cache and not first.from_cache
        fence = await publish(engine, ch, 3)  # no key: always stored
        assert fence.position.offset == first.position.offset + 1
        delivered = await engine.events.wait_publications(ch, 2)
        assert numbers([p for p, _ in delivered]) == [1, 3]
        pubs, _ = await history(engine, ch, limit=-1)
        assert numbers(pubs) == [1, 3]

    async def test_concurrent_publishes_with_one_key_store_one(self, engine: Engine) -> None:
        ch = await watched(engine)
        opts = PublishOptions(history_size=10, history_ttl=60.0, history_meta_ttl=META_TTL, idempotency_key="same")
        results = await asyncio.gather(*(publish(engine, ch, n, opts) for n in range(5)))
        assert len({r.position for r in results}) == 1
        assert sum(not r.from_cache for r in results) == 1
        await publish(engine, ch, 99)
        delivered = await engine.events.wait_publications(ch, 2)
        assert len(delivered) == 2 and numbers([delivered[1][0]]) == [99]
        pubs, _ = await history(engine, ch, limit=-1)
        assert len(pubs) == 2

    async def test_different_keys_and_channels_do_not_collide(self, engine: Engine) -> None:
        ch, other = channel(), channel()

        def keyed(key: str) -> PublishOptions:
            return PublishOptions(history_size=10, history_ttl=60.0, history_meta_ttl=META_TTL, idempotency_key=key)

        a = await publish(engine, ch, 1, keyed("a"))
        b = await publish(engine, ch, 2, keyed("b"))
        assert (a.position.offset, b.position.offset) == (1, 2) and not b.from_cache
        c = await publish(engine, other, 3, keyed("a"))  # the same key on another channel
        assert c.position.offset == 1 and not c.from_cache
        pubs, _ = await history(engine, ch, limit=-1)
        assert numbers(pubs) == [1, 2]

    async def test_idempotency_without_history_delivers_once(self, engine: Engine) -> None:
        ch = await watched(engine)
        opts = PublishOptions(idempotency_key="ephemeral")
        first = await publish(engine, ch, 1, opts)
        again = await publish(engine, ch, 2, opts)
        assert again.from_cache and not first.from_cache
        await publish(engine, ch, 3, PublishOptions())
        delivered = await engine.events.wait_publications(ch, 2)
        assert numbers([p for p, _ in delivered]) == [1, 3]

    async def test_an_idempotency_key_expires_after_its_window(self, engine: Engine) -> None:
        ch = channel()
        opts = PublishOptions(
            history_size=10,
            history_ttl=60.0,
            history_meta_ttl=META_TTL,
            idempotency_key="k",
            idempotent_result_ttl=engine.ttl,
        )
        first = await publish(engine, ch, 1, opts)
        await engine.elapse(PAST * engine.ttl)
        later = await publish(engine, ch, 2, opts)
        assert not later.from_cache and later.position.offset == first.position.offset + 1

    # --- join / leave

    async def test_join_and_leave_reach_the_handler(self, engine: Engine) -> None:
        ch = await watched(engine)
        await engine.broker.publish_join(ch, info("42", "c1"))
        assert await engine.events.wait_join(ch) == info("42", "c1")
        await engine.broker.publish_leave(ch, info("42", "c1"))
        assert await engine.events.wait_leave(ch) == info("42", "c1")

    # --- presence

    async def test_presence_add_remove_and_stats(self, engine: Engine) -> None:
        ch = channel()
        presence = engine.presence
        assert await presence.presence(ch) == {} and await presence.presence_stats(ch) == (0, 0)
        await presence.add_presence(ch, "c1", info("42", "c1"), 60.0)
        await presence.add_presence(ch, "c2", info("42", "c2"), 60.0)
        await presence.add_presence(ch, "c3", info("7", "c3"), 60.0)
        await presence.add_presence(ch, "c3", info("7", "c3"), 60.0)  # re-adding is not a second entry
        assert await presence.presence(ch) == {"c1": info("42", "c1"), "c2": info("42", "c2"), "c3": info("7", "c3")}
        assert await presence.presence_stats(ch) == (3, 2)
        await presence.remove_presence(ch, "c2", "42")
        assert await presence.presence_stats(ch) == (2, 2)
        await presence.remove_presence(ch, "c1", "42")
        assert set(await presence.presence(ch)) == {"c3"} and await presence.presence_stats(ch) == (1, 1)
        await presence.remove_presence(ch, "gone", "x")  # unknown entries: no error
        await presence.remove_presence(ch, "c3", "7")
        assert await presence.presence(ch) == {} and await presence.presence_stats(ch) == (0, 0)

    async def test_presence_expires_unless_renewed(self, engine: Engine) -> None:
        presence, lifetime = engine.presence, 2 * engine.ttl

        async def attempt() -> list[Any] | None:
            ch = channel()

            async def add_both() -> None:
                await presence.add_presence(ch, "kept", info("1", "kept"), lifetime)
                await presence.add_presence(ch, "dropped", info("2", "dropped"), lifetime)

            renew = partial(presence.add_presence, ch, "kept", info("1", "kept"), lifetime)  # a live connection

            async def look() -> tuple[set[str], tuple[int, int]]:
                return set(await presence.presence(ch)), await presence.presence_stats(ch)

            return await paced(engine, lifetime, [add_both, renew, renew, renew, look])

        # The last look is more than a lifetime after both were added; only "kept" was renewed.
        assert (await premise_held(attempt))[-1] == ({"kept"}, (1, 1))

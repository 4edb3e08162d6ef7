"""Chaos runs that count every message: sequence-numbered publishing, SDK subscribers, a tally.

A run has two gateway nodes on one Redis topology, ``centrifuge-python`` subscribers on a
recoverable ``critical:`` channel on both nodes, and a publisher that sends ``{"seq": n}`` once
every ``interval`` through the server API of either node. A publish that fails is retried with
the same idempotency key until it succeeds, as the Django task does, so every sequence number is
published exactly once in the end. The test injects its fault while this runs.

The tally, per subscriber:

* **delivered**: sequence numbers it received (live or recovered), each counted once;
* **recovered**: those that came in the publications of a ``recovered: true`` resubscribe;
* **recovered:false**: resubscribes that told it the gap could not be filled (reload your state);
* **lost**: sequence numbers it never received and no ``recovered: false`` covered: published
  (in that stream's epoch, at or before the position the reply gave) before it was told. Must be 0;
* **duplicated**: sequence numbers received more than once. Must be 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from centrifuge import Client, ClientEventHandler, SubscriptionEventHandler

from tests.support.api import api_raw
from tests.support.gateway import GatewayProcess
from tests.support.pyclient import close_client
from tests.support.timing import seconds
from tests.support.tokens import token

CRITICAL_NAMESPACE = {"name": "critical", "history_size": 1000, "history_ttl": "300s", "force_recovery": True}


@dataclass
class Published:
    seq: int
    offset: int
    epoch: str
    at: float  # loop time the successful publish returned


@dataclass
class Told:
    """A resubscribe that answered ``recovered: false``: where the stream stood, and when."""

    offset: int
    epoch: str
    at: float


@dataclass
class Subscriber:
    name: str
    client: Client
    received: list[int] = field(default_factory=list)
    recovered: int = 0
    told_unrecovered: list[Told] = field(default_factory=list)
    subscribed: int = 0
    # Set by a recovered:true subscribe; the SDK hands the recovered publications over right after
    # it, in the same task, so publications seen before the loop turns are the recovered ones.
    in_recovery_batch: bool = False


class SubscriberEvents(SubscriptionEventHandler):
    def __init__(self, sub: Subscriber) -> None:
        self._sub = sub

    async def on_subscribed(self, ctx: Any) -> None:
        sub = self._sub
        sub.subscribed += 1
        loop = asyncio.get_running_loop()
        if ctx.was_recovering and not ctx.recovered:
            position = ctx.stream_position
            sub.told_unrecovered.append(Told(position.offset, position.epoch, loop.time()))
        elif ctx.was_recovering and ctx.recovered:
            sub.in_recovery_batch = True
            loop.call_soon(self._batch_over)

    def _batch_over(self) -> None:
        self._sub.in_recovery_batch = False

    async def on_publication(self, ctx: Any) -> None:
        sub = self._sub
        sub.received.append(int(ctx.pub.data["seq"]))
        if sub.in_recovery_batch:
            sub.recovered += 1


@dataclass
class Tally:
    name: str
    delivered: int
    recovered: int
    told_unrecovered: int
    lost: list[int]
    duplicated: list[int]

    def row(self) -> str:
        return (
            f"{self.name:<14} {self.delivered:>9} {self.recovered:>9} {self.told_unrecovered:>15} "
            f"{len(self.lost):>6} {len(self.duplicated):>10}"
        )


def tally(sub: Subscriber, published: dict[int, Published]) -> Tally:
    counts = Counter(sub.received)
    duplicated = sorted(seq for seq, n in counts.items() if n > 1)
    lost = []
    for seq, pub in sorted(published.items()):
        if seq in counts:
            continue
        covered = any(
            (told.epoch == pub.epoch and pub.offset <= told.offset) or (told.epoch != pub.epoch and pub.at < told.at)
            for told in sub.told_unrecovered
        )
        if not covered:
            lost.append(seq)
    return Tally(sub.name, len(counts), sub.recovered, len(sub.told_unrecovered), lost, duplicated)


class SequencePublisher:
    """Publishes ``{"seq": n}``, n = 1, 2, ..., retrying each with its idempotency key until it
    succeeds; :meth:`pause` holds it between two publishes (nothing in flight)."""

    def __init__(self, nodes: list[GatewayProcess], channel: str, interval: float = 0.03) -> None:
        self._nodes = nodes
        self._channel = channel
        self._interval = interval
        self._run_id = uuid.uuid4().hex[:8]
        self.published: dict[int, Published] = {}
        self.errors: Counter[str] = Counter()
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._stop = False
        self._task: asyncio.Task[None] | None = None
        self._turn = 0

    @property
    def last(self) -> int:
        return max(self.published, default=0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop = True
        self._open.set()
        if self._task is not None:
            await self._task

    async def pause(self) -> None:
        """Return once the publisher is between two publishes and holds there."""
        self._idle.clear()
        self._open.clear()
        await asyncio.wait_for(self._idle.wait(), seconds(30))

    def resume(self) -> None:
        self._open.set()

    async def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` more sequence numbers were published."""
        target = self.last + count
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds(timeout)
        while self.last < target:
            assert loop.time() < deadline, f"only {self.last} of {target} published; errors {dict(self.errors)}"
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        while not self._stop:
            if not self._open.is_set():
                self._idle.set()
                await self._open.wait()
                if self._stop:
                    return
            seq += 1
            for _attempt in itertools.count():
                if await self._publish(seq, loop):
                    break
                await asyncio.sleep(0.05)  # the Django task backs off too
            await asyncio.sleep(self._interval)

    async def _publish(self, seq: int, loop: asyncio.AbstractEventLoop) -> bool:
        node = self._nodes[self._turn % len(self._nodes)]
        self._turn += 1
        body = json.dumps(
            {"channel": self._channel, "data": {"seq": seq}, "idempotency_key": f"{self._run_id}-{seq}"}
        ).encode()
        try:
            status, raw = await asyncio.to_thread(api_raw, node.api_url, "publish", body)
        except OSError as exc:
            self.errors[f"http: {type(exc).__name__}"] += 1
            return False
        reply = json.loads(raw) if status == 200 else {"error": {"code": f"http {status}"}}
        if "error" in reply:
            self.errors[f"error {reply['error']['code']}"] += 1
            return False
        result = reply["result"]
        self.published[seq] = Published(seq, result.get("offset", 0), result.get("epoch", ""), loop.time())
        return True


class ChaosRun:
    """Subscribers on both nodes, a publisher, and the tally at the end."""

    def __init__(self, nodes: list[GatewayProcess], subscribers_per_node: int = 2) -> None:
        self.channel = f"critical:chaos_{uuid.uuid4().hex[:10]}"
        self.nodes = nodes
        self._per_node = subscribers_per_node
        self.subscribers: list[Subscriber] = []
        self.publisher = SequencePublisher(nodes, self.channel)

    async def __aenter__(self) -> ChaosRun:
        for i, node in enumerate(self.nodes):
            for j in range(self._per_node):
                client = Client(
                    node.ws_url,
                    token=token(user=f"u{i}{j}", channels=[self.channel]),
                    events=ClientEventHandler(),
                    min_reconnect_delay=0.05,
                    max_reconnect_delay=0.5,
                )
                sub = Subscriber(f"node{i + 1}/sub{j + 1}", client)
                subscription = client.new_subscription(
                    self.channel, events=SubscriberEvents(sub), min_resubscribe_delay=0.05, max_resubscribe_delay=0.5
                )
                self.subscribers.append(sub)
                await client.connect()
                await subscription.subscribe()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds(15)
        while not all(sub.subscribed for sub in self.subscribers):
            assert loop.time() < deadline, "not every subscriber subscribed"
            await asyncio.sleep(0.02)
        self.publisher.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.publisher.stop()
        for sub in self.subscribers:
            with contextlib.suppress(Exception):
                await close_client(sub.client)

    async def finish(self, timeout: float = 60.0) -> list[Tally]:
        """Stop publishing, let every subscriber get the last publication, and count."""
        await self.publisher.stop()
        last = self.publisher.last
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds(timeout)
        while not all(last in sub.received for sub in self.subscribers):
            if loop.time() > deadline:
                break  # counted as lost below, with everything else
            await asyncio.sleep(0.05)
        return [tally(sub, self.publisher.published) for sub in self.subscribers]

    def report(self, scenario: str, tallies: list[Tally]) -> str:
        lines = [
            f"chaos: {scenario}: {self.publisher.last} publications, publish errors retried: "
            f"{dict(self.publisher.errors) or 'none'}",
            f"{'subscriber':<14} {'delivered':>9} {'recovered':>9} {'recovered:false':>15} {'lost':>6} "
            f"{'duplicated':>10}",
            *(t.row() for t in tallies),
        ]
        text = "\n".join(lines)
        print(text)
        return text


def assert_nothing_lost_or_duplicated(tallies: list[Tally], report: str) -> None:
    for t in tallies:
        assert not t.lost, f"{t.name} silently lost {t.lost}\n{report}"
        assert not t.duplicated, f"{t.name} got duplicates {t.duplicated}\n{report}"

"""Soak: every subscriber gets every sequence number exactly once, through 30 s of random disconnects.

Several subscribers (centrifuge-python and npm ``centrifuge``) listen on one ``critical:``
channel through a TCP proxy while a publisher sends sequence-numbered messages at a steady
rate. A chaos task keeps disconnecting them at random moments: aborting a TCP connection (no
close frame), holding the network down for a moment, closing a connection from the gateway
with a reconnect code, killing a JS client's socket. Each time the SDK reconnects and recovers
from history. Afterwards gaps, duplicates and out-of-order deliveries are counted per
subscriber and must all be zero.

The rate and the chaos keep outages well inside what history holds (50 publications, 2 s at
25 a second), but a starved machine can keep a client away longer. Then ``recovered: false``
is the right answer, and the client knows what it lost: those publications are counted as
announced loss, apart from silent loss (a publication missing without any such notice), which
is always a bug. So is ``recovered: false`` after an outage that history did cover.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from centrifuge import Client

from tests.support.api import api, publish
from tests.support.delivery import delivery_problems
from tests.support.gateway import base_config, running_gateway
from tests.support.jsclient import JsDriver, on
from tests.support.proxy import TcpProxy
from tests.support.pyclient import Recorder, close_client
from tests.support.timing import wait_until
from tests.support.tokens import token

RATE = 25.0  # publications per second
TOTAL = 750  # 30 s at RATE; on a slow machine publishing (and the chaos with it) takes longer
CALM = 12  # the last publications go out with the chaos stopped
HISTORY_SIZE = 50  # the critical namespace's, in base_config()
PY_SUBSCRIBERS = 4
JS_SUBSCRIBERS = 2


@dataclass
class Away:
    """The client lost its connection (the SDK is reconnecting), at ``at`` seconds."""

    at: float


@dataclass
class Back:
    """The subscription is back: resubscribed, recovering or not."""

    at: float
    was_recovering: bool
    recovered: bool


@dataclass
class Delivered:
    seq: int


Step = Away | Back | Delivered


@dataclass
class Tally:
    name: str
    seqs: list[int] = field(default_factory=list)  # delivered, in order
    resubscribes: int = 0
    recovered: int = 0
    #: Sequence numbers the client was told it missed (``recovered: false``), and how many per outage.
    announced: set[int] = field(default_factory=set)
    announced_per_outage: list[int] = field(default_factory=list)
    #: Missed counts of ``recovered: false`` answers although history held every missed one.
    unrecovered_within_history: list[int] = field(default_factory=list)
    outages: list[float] = field(default_factory=list)  # seconds away, per outage

    def problems(self, total: int) -> dict[str, Any]:
        found = delivery_problems(self.seqs, (seq for seq in range(total) if seq not in self.announced))
        if self.unrecovered_within_history:
            found["unrecovered_within_history"] = self.unrecovered_within_history
        return found


def tally(name: str, steps: Iterable[Step]) -> Tally:
    """Walk one subscriber's steps in order: deliveries, outages, and what each resubscribe said."""
    t = Tally(name)
    last_seq = -1
    away_since: float | None = None
    unrecovered = False  # a resubscribe said recovered: false; the next delivery shows the gap
    subscribed = False
    for step in steps:
        if isinstance(step, Away):
            if subscribed and away_since is None:
                away_since = step.at
        elif isinstance(step, Back):
            if away_since is not None:
                t.outages.append(step.at - away_since)
                away_since = None
            subscribed = True
            if step.was_recovering:
                t.resubscribes += 1
                t.recovered += step.recovered
                unrecovered = unrecovered or not step.recovered
        else:
            if unrecovered:
                missed = range(last_seq + 1, step.seq)
                t.announced.update(missed)
                t.announced_per_outage.append(len(missed))
                if len(missed) <= HISTORY_SIZE:
                    t.unrecovered_within_history.append(len(missed))
                unrecovered = False
            t.seqs.append(step.seq)
            last_seq = max(last_seq, step.seq)
    return t


def python_steps(recorder: Recorder, channel: str) -> Iterator[Step]:
    for e in recorder.events:
        if e.kind == "connecting":
            yield Away(e.at)
        elif e.kind == "sub:subscribed" and e.channel == channel:
            yield Back(e.at, e.ctx.was_recovering, e.ctx.recovered)
        elif e.kind == "sub:publication" and e.channel == channel:
            yield Delivered(e.ctx.pub.data["seq"])


def js_steps(js: JsDriver, name: str, channel: str) -> Iterator[Step]:
    for ev in js.select(on(name)):
        at = ev["t"] / 1000
        if ev["event"] == "connecting" and ev.get("channel") is None:
            yield Away(at)
        elif ev["event"] == "subscribed" and ev["source"] == "sub" and ev["channel"] == channel:
            yield Back(at, ev["ctx"]["wasRecovering"], ev["ctx"]["recovered"])
        elif ev["event"] == "publication" and ev["source"] == "sub" and ev["channel"] == channel:
            yield Delivered(ev["ctx"]["data"]["seq"])


@dataclass
class Chaos:
    rng: random.Random
    actions: Counter[str] = field(default_factory=Counter)


async def run_publisher(api_url: str, channel: str, calm: asyncio.Event) -> None:
    """Publish seq 0 .. TOTAL-1 at RATE (catching up when late); set ``calm`` before the last CALM."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for seq in range(TOTAL):
        if seq == TOTAL - CALM:
            calm.set()
        await asyncio.to_thread(publish, api_url, channel, {"seq": seq})
        delay = start + (seq + 1) / RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def run_chaos(chaos: Chaos, proxy: TcpProxy, js: JsDriver, api_url: str, stop: asyncio.Event) -> None:
    rng = chaos.rng
    users = [f"soak-py{i}" for i in range(PY_SUBSCRIBERS)] + [f"soak-js{i}" for i in range(JS_SUBSCRIBERS)]
    rng.shuffle(users)
    targets = itertools.cycle(users)  # server closes go round, so every subscriber gets some
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.15, 0.6))
        action = rng.choice(["cut", "cut", "outage", "server-close", "js-kill"])
        if action == "cut":
            proxy.cut_random(rng)
        elif action == "outage":  # the network is down for a moment: reconnects fail meanwhile
            proxy.hold()
            proxy.cut_random(rng)
            await asyncio.sleep(rng.uniform(0.2, 0.8))
            proxy.release()
        elif action == "server-close":
            body = {"user": next(targets), "disconnect": {"code": 3011, "reason": "force reconnect"}}
            await asyncio.to_thread(api, api_url, "disconnect", body)
        else:
            await js.call({"op": "kill", "client": f"js{rng.randrange(JS_SUBSCRIBERS)}", "mode": "terminate"})
        chaos.actions[action] += 1


def test_the_tally_tells_announced_loss_from_silent_loss() -> None:
    def run(*steps: Step) -> dict[str, Any]:
        return tally("t", [Back(0, False, False), *steps]).problems(8)

    # Recovered: everything must arrive.
    assert run(*map(Delivered, range(3)), Away(1), Back(2, True, True), *map(Delivered, range(3, 8))) == {}
    assert run(*map(Delivered, range(3)), Away(1), Back(2, True, True), *map(Delivered, range(5, 8))) == {
        "missing": [3, 4]
    }
    # recovered: false after more than history holds: the gap is announced, not silent.
    far = HISTORY_SIZE + 10
    announced = tally("t", [Back(0, False, False), Delivered(0), Away(1), Back(4, True, False), Delivered(far + 1)])
    assert announced.problems(far + 2) == {} and announced.announced_per_outage == [far]
    assert announced.outages == [3]
    # recovered: false where history held the gap is a bug, and so is loss with no notice at all.
    assert run(Delivered(0), Away(1), Back(2, True, False), *map(Delivered, range(3, 8))) == {
        "unrecovered_within_history": [2]
    }
    assert run(Delivered(0), Delivered(2), Delivered(1), *map(Delivered, range(3, 8))) == {"out_of_order": 1}


async def test_every_subscriber_gets_every_sequence_number_exactly_once() -> None:
    channel = f"critical:soak_{uuid.uuid4().hex[:8]}"
    seed = random.randrange(1 << 30)
    chaos = Chaos(random.Random(seed))
    with running_gateway(base_config()) as gw:
        async with TcpProxy(gw.port) as proxy, JsDriver() as js:
            js.add_diagnostics("gateway log", gw.log)
            recorders = [Recorder() for _ in range(PY_SUBSCRIBERS)]
            clients = [
                Client(
                    proxy.ws_url,
                    token=token(user=f"soak-py{i}", channels=[channel]),
                    events=rec.client_handler(),
                    min_reconnect_delay=0.05,
                    max_reconnect_delay=0.3,
                )
                for i, rec in enumerate(recorders)
            ]
            try:
                for client, rec in zip(clients, recorders, strict=True):
                    sub = client.new_subscription(channel, events=rec.sub_handler(channel))
                    await client.connect()
                    await sub.subscribe()
                    await rec.wait_for("sub:subscribed", channel)
                for i in range(JS_SUBSCRIBERS):
                    await js.call(
                        {
                            "op": "client",
                            "id": f"js{i}",
                            "url": proxy.ws_url,
                            "token": token(user=f"soak-js{i}", channels=[channel]),
                            "options": {"minReconnectDelay": 50, "maxReconnectDelay": 300},
                            "connect": True,
                        }
                    )
                    await js.call({"op": "subscribe", "client": f"js{i}", "channel": channel})
                    await js.wait_for(on(f"js{i}", "subscribed", source="sub", channel=channel))

                calm, stop_chaos = asyncio.Event(), asyncio.Event()
                publisher = asyncio.create_task(run_publisher(gw.api_url, channel, calm))
                chaos_task = asyncio.create_task(run_chaos(chaos, proxy, js, gw.api_url, stop_chaos))
                await calm.wait()
                stop_chaos.set()
                await chaos_task
                proxy.release()
                await publisher

                def tallies() -> list[Tally]:
                    found = [tally(f"py{i}", python_steps(r, channel)) for i, r in enumerate(recorders)]
                    return found + [tally(f"js{i}", js_steps(js, f"js{i}", channel)) for i in range(JS_SUBSCRIBERS)]

                def everyone_caught_up() -> list[Tally] | None:
                    now = tallies()
                    return now if all(TOTAL - 1 in t.seqs for t in now) else None

                # Everyone catches up to the last sequence number.
                caught_up = await wait_until(
                    everyone_caught_up, "every subscriber to get the last publication", within=20
                )
                assert caught_up is not None
                report = {t.name: t.problems(TOTAL) for t in caught_up if t.problems(TOTAL)}
                worst = max((d for t in caught_up for d in t.outages), default=0.0)
                announced = {t.name: t.announced_per_outage for t in caught_up if t.announced_per_outage}
                summary = (
                    f"seed {seed}, chaos {dict(chaos.actions)}, worst outage {worst:.2f}s, "
                    f"announced loss (recovered: false) per outage {announced}"
                )
                assert not report, f"{summary}: {report}"
                # The chaos really happened: every subscriber resubscribed, and recovery was tried
                # (and worked) for real.
                resubscribes = {t.name: (t.resubscribes, t.recovered) for t in caught_up}
                assert all(n >= 1 for n, _ in resubscribes.values()), f"{summary}: {resubscribes}"
                assert sum(ok for _, ok in resubscribes.values()) >= 1, f"{summary}: {resubscribes}"
            finally:
                for client in clients:
                    await close_client(client)

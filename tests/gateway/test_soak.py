"""Soak: every subscriber gets every sequence number exactly once, through 30 s of random disconnects.

Several subscribers (centrifuge-python and npm ``centrifuge``) listen on one ``critical:``
channel through a TCP proxy while a publisher sends sequence-numbered messages at a steady
rate. A chaos task keeps disconnecting them at random moments: aborting a TCP connection (no
close frame), holding the network down for a moment, closing a connection from the gateway
with a reconnect code, killing a JS client's socket. Each time the SDK reconnects and recovers
from history. Afterwards gaps, duplicates and out-of-order deliveries are counted per
subscriber and must all be zero, and every resubscribe must have said ``recovered: true``.

The rate and the longest time away keep every outage well inside ``history_size`` (50), so a
miss can only be a bug, never an expected ``recovered: false``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from centrifuge import Client

from tests.support.api import api, publish
from tests.support.gateway import base_config, running_gateway
from tests.support.jsclient import JsDriver, on
from tests.support.proxy import TcpProxy
from tests.support.pyclient import Recorder, close_client
from tests.support.timing import seconds
from tests.support.tokens import token

DURATION = 30.0  # seconds of chaos (a requirement, not a timeout: not scaled)
RATE = 25.0  # publications per second: 50 in history covers 2 s away
PY_SUBSCRIBERS = 4
JS_SUBSCRIBERS = 2


@dataclass
class Tally:
    name: str
    seqs: list[int]
    resubscribes: int
    unrecovered: int

    def problems(self, total: int) -> dict[str, Any]:
        counts = Counter(self.seqs)
        found = {
            "missing": sorted(set(range(total)) - set(counts)),
            "duplicates": sorted(seq for seq, n in counts.items() if n > 1),
            "out_of_order": sum(1 for a, b in zip(self.seqs, self.seqs[1:], strict=False) if b <= a),
            "unrecovered_resubscribes": self.unrecovered,
        }
        return {key: value for key, value in found.items() if value}


@dataclass
class Chaos:
    rng: random.Random
    actions: Counter[str] = field(default_factory=Counter)


async def run_publisher(api_url: str, channel: str, stop: asyncio.Event) -> int:
    """Publish seq 0, 1, 2 ... at RATE until ``stop``; returns how many were published."""
    loop = asyncio.get_running_loop()
    start, seq = loop.time(), 0
    while not stop.is_set():
        await asyncio.to_thread(publish, api_url, channel, {"seq": seq})
        seq += 1
        delay = start + seq / RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    return seq


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


def python_tally(name: str, recorder: Recorder, channel: str) -> Tally:
    subscribed = [e.ctx for e in recorder.of("sub:subscribed", channel)]
    again = [ctx for ctx in subscribed if ctx.was_recovering]
    return Tally(
        name,
        [e.ctx.pub.data["seq"] for e in recorder.of("sub:publication", channel)],
        len(again),
        sum(1 for ctx in again if not ctx.recovered),
    )


def js_tally(name: str, js: JsDriver, channel: str) -> Tally:
    subscribed = [ev["ctx"] for ev in js.select(on(name, "subscribed", source="sub", channel=channel))]
    again = [ctx for ctx in subscribed if ctx["wasRecovering"]]
    return Tally(
        name,
        [ev["ctx"]["data"]["seq"] for ev in js.select(on(name, "publication", source="sub", channel=channel))],
        len(again),
        sum(1 for ctx in again if not ctx["recovered"]),
    )


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

                stop_chaos, stop_publishing = asyncio.Event(), asyncio.Event()
                publisher = asyncio.create_task(run_publisher(gw.api_url, channel, stop_publishing))
                chaos_task = asyncio.create_task(run_chaos(chaos, proxy, js, gw.api_url, stop_chaos))
                await asyncio.sleep(DURATION)
                stop_chaos.set()
                await chaos_task
                proxy.release()
                await asyncio.sleep(0.5)  # a last stretch of calm publishing
                stop_publishing.set()
                total = await publisher

                # Everyone catches up to the last sequence number.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + seconds(20)
                tallies: list[Tally] = []
                while True:
                    tallies = [python_tally(f"py{i}", r, channel) for i, r in enumerate(recorders)]
                    tallies += [js_tally(f"js{i}", js, channel) for i in range(JS_SUBSCRIBERS)]
                    if all(total - 1 in t.seqs for t in tallies) or loop.time() > deadline:
                        break
                    await asyncio.sleep(0.1)

                report = {t.name: t.problems(total) for t in tallies if t.problems(total)}
                summary = f"seed {seed}, {total} published, chaos {dict(chaos.actions)}"
                assert not report, f"{summary}: {report}"
                assert total >= DURATION * RATE * 0.9, summary
                # The chaos really happened: every subscriber resubscribed, recovering.
                resubscribes = {t.name: t.resubscribes for t in tallies}
                assert all(n >= 1 for n in resubscribes.values()), f"{summary}: {resubscribes}"
            finally:
                for client in clients:
                    await close_client(client)

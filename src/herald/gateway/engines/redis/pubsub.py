"""One Redis PUB/SUB connection of the node: which channels it wants, which Redis has confirmed,
and whether it still delivers.

Two sets and a queue per channel keep the connection's state exact however subscribes and
unsubscribes interleave (a subscriber leaving while another arrives, a connection lost midway):

* ``wanted``: channels this node has subscribers for, decided by the node at the moment it calls
  :meth:`PubSubLink.subscribe` / :meth:`PubSubLink.unsubscribe`, never later.
* ``confirmed``: wanted channels whose latest SUBSCRIBE Redis has acknowledged; only then may a
  subscriber read the channel's stream, or a publication could fall between read and delivery.
* ``inflight``: per channel, the SUBSCRIBE (a future) and UNSUBSCRIBE (None) commands sent on the
  current connection and not yet acknowledged, in order. Redis acknowledges in the same order,
  so each acknowledgement pops the head; a channel is confirmed when its queue empties on a
  SUBSCRIBE while still wanted.

A lost connection fails every waiting subscribe (``EngineUnavailable``: the client gets the
temporary error 100 and its subscribe leaves no trace), and a loop reconnects with backoff and
subscribes to everything still wanted. While it is down, :meth:`subscribe` fails at once rather
than queueing clients behind an outage.

**Restored channels.** Publications made while the connection was down never reached this node.
Once Redis confirms a channel subscribed again after a loss, the link reports it
(``on_restored``), so the node compares its positioned subscribers with the stream at once: they
recover what they missed, or are told ``recovered: false``, without waiting for the next
publication or the periodic position check.

**Probe.** A connection can stop delivering without breaking: a proxy or NAT that stalls, a
half-open TCP connection. Every ``PROBE_INTERVAL`` the link publishes a token, through the
command connections, on a channel only it subscribes to. When the connection has been silent
for a whole interval while a token Redis accepted more than ``PROBE_TIMEOUT`` ago has not come
back, the connection is rebuilt. Only silence counts: a node busy with a backlog of messages
is reading them, and the token is among them. While probes cannot be published at all, the
link counts as offline (the node is not ready).

**Sharded PUB/SUB** (Redis Cluster, ``SSUBSCRIBE``): one channel per command (the channels of one
command must share a slot), and Redis may end a subscription by itself when the channel's slot
moves to another node: the link reports it (``on_dropped``) for its owner to subscribe elsewhere.

The connection has no retry policy of its own: a hidden reconnect inside the library would
resubscribe without telling us, and the acknowledgements would no longer match the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from herald.gateway.engines.broker import EngineUnavailable

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT: Final = 5.0  # longest a subscriber waits for Redis to acknowledge SUBSCRIBE
RECONNECT_MIN: Final = 0.1
RECONNECT_MAX: Final = 1.0
PROBE_INTERVAL: Final = 1.0
PROBE_TIMEOUT: Final = 1.5  # an accepted probe not back after this long: the connection stalled
PROBES_IN_FLIGHT: Final = 5  # no more while Redis is slow to accept them
# What a command on a dying connection can raise: the library's errors, the socket's, and
# uvloop's RuntimeError for a write to a transport that was closed under it.
CONNECTION_FAILURES: Final = (RedisError, OSError, RuntimeError)


@dataclass(frozen=True, slots=True)
class Probe:
    """How a link checks itself: the channel it listens on (chosen anew for each connection,
    as on a cluster the channel must belong to the node) and how to publish to it."""

    channel: Callable[[], str]
    send: Callable[[str, bytes], Awaitable[object]]


class PubSubLink:
    def __init__(
        self,
        connect: Callable[[], aioredis.Redis],
        on_message: Callable[[str, bytes], None],
        *,
        control: str | None = None,
        probe: Probe | None = None,
        sharded: bool = False,
        on_restored: Callable[[list[str]], None] | None = None,
        on_dropped: Callable[[str], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        name: str = "redis",
    ) -> None:
        self.name = name
        self._new_client = connect
        self._on_message = on_message
        self._control = control
        self._probe = probe
        self._sharded = sharded
        self._on_restored = on_restored
        self._on_dropped = on_dropped
        self._on_lost = on_lost
        self._wanted: set[str] = set()
        self._confirmed: set[str] = set()
        self._inflight: dict[str, deque[asyncio.Future[bool] | None]] = {}
        # Wanted channels subscribed again after a loss (or handed over), not yet confirmed.
        self._restoring: set[str] = set()
        self._restored: list[str] = []
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._fixed: frozenset[str] = frozenset()  # control and probe channels of the connection
        self._online = False
        self._had_connection = False
        self._closing = False
        self._generation = 0
        self._probe_channel = ""
        self._probe_seq = 0
        self._probes: dict[bytes, float] = {}  # token -> loop time Redis accepted it (0: not yet)
        self._probe_failing = False
        self._next_probe = 0.0
        self._rebuild: str | None = None  # why the connection must be rebuilt, set by probes
        self._runner: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def online(self) -> bool:
        return self._online and not self._probe_failing

    @property
    def wanted(self) -> frozenset[str]:
        return frozenset(self._wanted)

    async def start(self) -> None:
        """Connect now if Redis answers; otherwise keep trying in the background."""
        try:
            await self._connect()
        except Exception as exc:
            log.warning("redis PUB/SUB (%s) unreachable (%s); retrying until it answers", self.name, exc)
        self._runner = asyncio.create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
            except Exception:  # the reader is built never to end on its own; if it did, say so
                log.exception("redis PUB/SUB (%s) reader had stopped", self.name)
        for task in list(self._background):
            task.cancel()
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        self._online = False
        await self._discard(pubsub, client)

    # --- what the broker asks

    async def subscribe(self, name: str) -> None:
        """Return once Redis delivers ``name`` to this node; EngineUnavailable if it cannot."""
        if name in self._confirmed:
            return
        if not self._online:
            raise EngineUnavailable("redis PUB/SUB connection is down")
        self._wanted.add(name)
        queue = self._inflight.setdefault(name, deque())
        if queue and queue[-1] is not None:
            confirmed = queue[-1]  # a SUBSCRIBE is already on its way: wait for the same answer
        else:
            confirmed = asyncio.get_running_loop().create_future()
            queue.append(confirmed)
            try:
                await self._send(name, subscribe=True)
            except CONNECTION_FAILURES as exc:
                raise EngineUnavailable(f"redis SUBSCRIBE failed: {exc}") from None
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                ok = await asyncio.shield(confirmed)
        except TimeoutError:
            raise EngineUnavailable("redis did not acknowledge SUBSCRIBE in time") from None
        if not ok:
            raise EngineUnavailable("redis PUB/SUB connection lost while subscribing")

    async def unsubscribe(self, name: str) -> None:
        """Stop wanting ``name``: decided now; Redis is told when the connection is up."""
        if name not in self._wanted:
            return
        self._wanted.discard(name)
        self._confirmed.discard(name)
        self._restoring.discard(name)
        if self._online:
            await self._send_unsubscribe(name)

    def adopt(self, names: Iterable[str]) -> None:
        """Take over channels another link held (their node left the cluster or their slot
        moved): subscribed here as restored ones, reported by ``on_restored`` once confirmed."""
        for name in names:
            if name in self._wanted:
                continue
            self._wanted.add(name)
            self._restoring.add(name)
            if self._online:
                future = asyncio.get_running_loop().create_future()
                self._inflight.setdefault(name, deque()).append(future)
                self._spawn(self._send_quietly(name))

    def release(self) -> set[str]:
        """Give up every wanted channel (for another link to adopt); the link is closed next."""
        wanted, self._wanted = self._wanted, set()
        self._confirmed.clear()
        self._restoring.clear()
        return wanted

    async def _send(self, name: str, *, subscribe: bool) -> None:
        pubsub = self._pubsub
        if pubsub is None:  # lost since the command was decided: the next connection knows
            raise RedisConnectionError("redis PUB/SUB connection is down")
        if self._sharded:
            await (pubsub.ssubscribe(name) if subscribe else pubsub.sunsubscribe(name))
        else:
            await (pubsub.subscribe(name) if subscribe else pubsub.unsubscribe(name))

    async def _send_quietly(self, name: str) -> None:
        try:
            await self._send(name, subscribe=True)
        except CONNECTION_FAILURES as exc:
            # The reader sees the same broken connection and subscribes again on the next one.
            log.debug("redis SUBSCRIBE %s failed: %s", name, exc)

    async def _send_unsubscribe(self, name: str) -> None:
        self._inflight.setdefault(name, deque()).append(None)
        try:
            await self._send(name, subscribe=False)
        except CONNECTION_FAILURES as exc:
            # The reader sees the same broken connection and reconnects without this channel.
            log.debug("redis UNSUBSCRIBE %s failed: %s", name, exc)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- the connection

    async def _connect(self) -> None:
        client = self._new_client()
        pubsub = client.pubsub()
        names = list(self._wanted)
        try:
            probe_channel = self._probe.channel() if self._probe is not None else ""
            fixed = [c for c in (self._control, probe_channel) if c]
            if self._sharded:
                for name in [*fixed, *names]:  # one slot per SSUBSCRIBE
                    await pubsub.ssubscribe(name)
            else:
                await pubsub.subscribe(*fixed, *names)
        except BaseException:
            await self._discard(pubsub, client)
            raise
        loop = asyncio.get_running_loop()
        for name in names:
            self._inflight.setdefault(name, deque()).append(loop.create_future())
        if self._had_connection:
            self._restoring = set(names)
        self._had_connection = True
        self._generation += 1
        self._fixed = frozenset(fixed)
        self._probe_channel = probe_channel
        self._probes.clear()
        self._next_probe = loop.time()
        self._client, self._pubsub = client, pubsub
        self._online = True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = RECONNECT_MIN
        read_timeout = PROBE_INTERVAL if self._probe is not None else None
        while not self._closing:
            if not self._online:
                try:
                    await self._connect()
                except Exception as exc:  # whatever it is, the next attempt comes after a pause
                    log.debug("redis PUB/SUB (%s) still unreachable: %s", self.name, exc)
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(RECONNECT_MAX, delay * 2)
                    continue
                log.info(
                    "redis PUB/SUB (%s) connection restored; resubscribing to %d channels",
                    self.name,
                    len(self._wanted),
                )
                delay = RECONNECT_MIN
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=read_timeout)
            except Exception as exc:
                # Not only RedisError: on a connection that dies under it the library can also
                # fail otherwise (uvloop raises RuntimeError writing to a closed transport). The
                # reader must never end: a dead reader would leave the link "online" forever.
                log.warning("redis PUB/SUB (%s) connection lost (%r); reconnecting", self.name, exc)
                await self._lose_connection()
                continue
            if message is not None:
                try:
                    self._dispatch(message)
                except Exception:
                    log.exception("dropping an undecodable message from redis")
            elif self._probe is not None:
                self._check_probes(loop.time())  # a silent interval: are probes coming back?
            if self._probe is not None and loop.time() >= self._next_probe:
                self._probe_tick(loop.time())
            if self._rebuild is not None:
                log.warning("redis PUB/SUB (%s) connection %s; rebuilding it", self.name, self._rebuild)
                await self._lose_connection()

    async def _lose_connection(self) -> None:
        """Forget the connection's state; subscribers waiting on it get a temporary error."""
        self._online = False
        self._rebuild = None
        self._confirmed.clear()
        for queue in self._inflight.values():
            for waiting in queue:
                if waiting is not None and not waiting.done():
                    waiting.set_result(False)
        self._inflight.clear()
        self._probes.clear()
        self._probe_failing = False
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        await self._discard(pubsub, client)
        if self._on_lost is not None:
            self._on_lost()

    @staticmethod
    async def _discard(pubsub: Any, client: aioredis.Redis | None) -> None:
        with contextlib.suppress(*CONNECTION_FAILURES):
            if pubsub is not None:
                await pubsub.aclose()
        with contextlib.suppress(*CONNECTION_FAILURES):
            if client is not None:
                await client.aclose()

    # --- the probe

    def _check_probes(self, now: float) -> None:
        for accepted in self._probes.values():
            if accepted and now - accepted > PROBE_TIMEOUT:
                self._rebuild = f"delivered no probe for {now - accepted:.1f}s (stalled)"
                return

    def _probe_tick(self, now: float) -> None:
        self._next_probe = now + PROBE_INTERVAL
        if len(self._probes) < PROBES_IN_FLIGHT and self._probe is not None:
            self._probe_seq += 1
            token = b"%d" % self._probe_seq
            self._probes[token] = 0.0
            self._spawn(self._send_probe(self._probe, token, self._generation, self._probe_channel))

    async def _send_probe(self, probe: Probe, token: bytes, generation: int, channel: str) -> None:
        try:
            await probe.send(channel, token)
        except Exception as exc:  # whatever the command path raised: the engine is not usable
            if generation == self._generation:
                self._probes.pop(token, None)
                if not self._probe_failing:
                    log.warning("redis (%s) refused a probe publish (%s): not ready", self.name, exc)
                self._probe_failing = True
            return
        if generation == self._generation and token in self._probes:
            self._probes[token] = asyncio.get_running_loop().time()
        if generation == self._generation:
            self._probe_failing = False

    # --- what arrives

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        kind = message["type"]
        name = message["channel"]
        name = name.decode() if isinstance(name, bytes) else name
        if kind == "message" or kind == "smessage":
            if name == self._probe_channel:
                self._probes.pop(message["data"], None)
            else:
                self._on_message(name, message["data"])
        elif kind == "subscribe" or kind == "ssubscribe":
            if name not in self._fixed:
                self._acknowledged(name, subscribed=True)
        elif kind == "unsubscribe" or kind == "sunsubscribe":
            if name == self._probe_channel:
                self._rebuild = "lost its probe channel (its slot moved)"
            elif name not in self._fixed:
                self._acknowledged(name, subscribed=False)

    def _acknowledged(self, name: str, *, subscribed: bool) -> None:
        queue = self._inflight.get(name)
        if not queue:
            if not subscribed and name in self._wanted:
                # Redis ended the subscription by itself: sharded PUB/SUB, the slot moved away.
                self._wanted.discard(name)
                self._confirmed.discard(name)
                self._restoring.discard(name)
                if self._on_dropped is not None:
                    self._on_dropped(name)
            return
        command = queue.popleft()
        if command is not None and not command.done():
            command.set_result(True)
        if queue:
            return  # later commands for this channel are still on their way
        del self._inflight[name]
        if not subscribed:
            return
        if name in self._wanted:
            self._confirmed.add(name)
            if name in self._restoring:
                self._restoring.discard(name)
                self._note_restored(name)
        else:
            # Every subscriber left while the SUBSCRIBE travelled (their unsubscribe found the
            # connection down, or came first): take it back.
            self._spawn(self._send_unsubscribe(name))

    def _note_restored(self, name: str) -> None:
        if self._on_restored is None:
            return
        if not self._restored:
            asyncio.get_running_loop().call_soon(self._flush_restored)
        self._restored.append(name)

    def _flush_restored(self) -> None:
        names, self._restored = self._restored, []
        if self._on_restored is not None and names:
            self._on_restored(names)

"""Multi-node engine on Redis: PUB/SUB between nodes, channel streams, presence, revocations.

The data lives on one or more shards (``topology.py``): a Redis server, a Sentinel-managed
master, or a Redis Cluster. A channel's stream, meta, idempotent results, presence and PUB/SUB
all live on the channel's shard (Jump hash of its FNV-1a hash, spec §9.2), so publishing stays
one atomic script per channel (``scripts.py``). Every node subscribes to the control channel on
every shard; a control message goes out on one shard, in turn (spec §9.2), so it reaches every
node as long as one shard is up. Key names are in ``keys.py``.

A subscriber must not read a stream before its node's SUBSCRIBE is in effect, or a
publication could fall between the read and the subscription: :meth:`RedisBroker.subscribe`
returns only once Redis has confirmed it (see ``pubsub.py``).

Failures: commands retry a bounded number of times with backoff on connection errors, and a
pooled connection idle for a while is checked with a PING before use, so a Redis restart does
not reach clients as errors on stale connections. What still fails is raised as
:class:`EngineUnavailable` (temporary error 100 for clients, error 100 for the server API).
A retried publish that Redis had in fact executed before the connection dropped is stored
twice unless it carries an idempotency key (the Django publisher always sets one).

When a PUB/SUB connection comes back after a loss (a restart, a failover, a stall found by its
probe), publications made meanwhile never reached this node: the broker tells the node which
channels were restored (:class:`ResubscribeListener`), and the node checks the stream position
of their positioned subscribers at once, so a gap becomes a recovery or ``recovered: false``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import string
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, Final, ParamSpec, Protocol, TypeVar, runtime_checkable

import msgspec
from redis.exceptions import RedisClusterException

from herald.gateway.codecs.messages import ClientInfo, Publication, StreamPosition
from herald.gateway.engines.broker import (
    BrokerEventHandler,
    EngineUnavailable,
    HistoryFilter,
    HistoryPage,
    PublishOptions,
    PublishResult,
    UnrecoverablePosition,
)
from herald.gateway.engines.redis import scripts
from herald.gateway.engines.redis.hashing import shard_index
from herald.gateway.engines.redis.keys import KeyNames
from herald.gateway.engines.redis.pubsub import CONNECTION_FAILURES
from herald.gateway.engines.redis.topology import (
    Address,
    ClusterAddress,
    SentinelAddress,
    ServerAddress,
    Shard,
    open_shard,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def unavailable_on_failure(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Redis errors that survived the retries become EngineUnavailable (one log line, error 100);
    so do uvloop's RuntimeErrors for a connection closed under a command."""

    @functools.wraps(method)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (*CONNECTION_FAILURES, RedisClusterException) as exc:
            raise EngineUnavailable(f"redis: {exc}") from None

    return wrapped


@runtime_checkable
class ResubscribeListener(Protocol):
    """What a broker event handler may also implement (the node does): channels whose PUB/SUB
    subscription was re-established after a loss, so publications may have been missed."""

    def handle_resubscribed(self, channels: Collection[str]) -> None: ...


_PUB_WITH_POSITION: Final = b"__p1:"
_PUB_PLAIN: Final = b"__p0__"
_JOIN: Final = b"__j__"
_LEAVE: Final = b"__l__"


def _new_epoch() -> str:
    return "".join(random.choices(string.ascii_letters, k=8))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_pub_decoder: Final = msgspec.json.Decoder(Publication)
_info_decoder: Final = msgspec.json.Decoder(ClientInfo)
_encode: Final = msgspec.json.encode


class _Scripts:
    """The engine's scripts registered on one shard's client."""

    __slots__ = ("history", "presence_add", "presence_purge", "presence_remove", "publish")

    def __init__(self, client: Any) -> None:
        self.publish = client.register_script(scripts.PUBLISH)
        self.history = client.register_script(scripts.HISTORY)
        self.presence_add = client.register_script(scripts.PRESENCE_ADD)
        self.presence_remove = client.register_script(scripts.PRESENCE_REMOVE)
        self.presence_purge = client.register_script(scripts.PRESENCE_PURGE)


class RedisEngine:
    """The shards, shared by the broker, the presence manager and the revocation store.

    ``addresses``: a Redis URL, or shards (URLs and :mod:`topology` addresses), the same list
    and order on every node.
    """

    def __init__(
        self,
        addresses: str | Address | Sequence[str | Address],
        prefix: str = "herald",
        pool_size: int = 64,
    ) -> None:
        items: list[str | Address]
        if isinstance(addresses, str | ServerAddress | SentinelAddress | ClusterAddress):
            items = [addresses]
        else:
            items = list(addresses)
        if not items:
            raise ValueError("the redis engine needs at least one address")
        parsed = [ServerAddress(a) if isinstance(a, str) else a for a in items]
        self.keys = KeyNames(prefix, tagged=any(isinstance(a, ClusterAddress) for a in parsed))
        self.prefix = prefix
        self.broker = RedisBroker(self)
        broker = self.broker
        self.shards = [
            open_shard(a, self.keys, pool_size=pool_size, on_message=broker.dispatch, on_restored=broker.restored)
            for a in parsed
        ]
        self.scripts = [_Scripts(shard.redis) for shard in self.shards]
        self.presence = RedisPresence(self)
        self.revocations = RedisRevocationStore(self)

    def shard_of(self, name: str) -> int:
        """The index of the shard a channel (or a revocation key) lives on."""
        shards = len(self.shards)
        return 0 if shards == 1 else shard_index(name, shards)

    async def close(self) -> None:
        await asyncio.gather(*(shard.close() for shard in self.shards))


class RedisBroker:
    def __init__(self, engine: RedisEngine) -> None:
        self._engine = engine
        self._keys = engine.keys
        self._handler: BrokerEventHandler | None = None
        self._listener: ResubscribeListener | None = None
        self._turn = 0  # round-robin over the shards for control messages

    async def start(self, handler: BrokerEventHandler) -> None:
        """Start even when Redis is down: clients are served what needs no engine, engine
        operations answer error 100 until it is back, and PUB/SUB reconnects by itself."""
        self._handler = handler
        self._listener = handler if isinstance(handler, ResubscribeListener) else None
        await asyncio.gather(*(shard.start() for shard in self._engine.shards))

    async def close(self) -> None:
        await self._engine.close()

    @property
    def online(self) -> bool:
        """Whether every shard's PUB/SUB is up and passes its probe (publications arrive)."""
        return all(shard.online for shard in self._engine.shards)

    def _shard(self, channel: str) -> tuple[Shard, _Scripts]:
        index = self._engine.shard_of(channel)
        return self._engine.shards[index], self._engine.scripts[index]

    # --- PUB/SUB

    async def subscribe(self, channel: str) -> None:
        shard, _ = self._shard(channel)
        await shard.subscriber.subscribe(self._keys.client(channel))

    async def unsubscribe(self, channel: str) -> None:
        shard, _ = self._shard(channel)
        await shard.subscriber.unsubscribe(self._keys.client(channel))

    def dispatch(self, name: str, data: bytes) -> None:
        """A message from any shard's PUB/SUB: a control message, or an event of a channel."""
        handler = self._handler
        if handler is None:
            return
        if name == self._keys.control:
            handler.handle_control(data)
            return
        channel = self._keys.channel_of(name)
        if channel is None:
            return
        if data.startswith(_PUB_WITH_POSITION):
            end = data.index(b"__", len(_PUB_WITH_POSITION))
            offset_text, _, epoch = data[len(_PUB_WITH_POSITION) : end].partition(b":")
            pub = _pub_decoder.decode(data[end + 2 :])
            pub.offset = int(offset_text)
            handler.handle_publication(channel, pub, epoch.decode())
        elif data.startswith(_PUB_PLAIN):
            handler.handle_publication(channel, _pub_decoder.decode(data[len(_PUB_PLAIN) :]), "")
        elif data.startswith(_JOIN):
            handler.handle_join(channel, _info_decoder.decode(data[len(_JOIN) :]))
        elif data.startswith(_LEAVE):
            handler.handle_leave(channel, _info_decoder.decode(data[len(_LEAVE) :]))

    def restored(self, names: list[str]) -> None:
        """PUB/SUB channels subscribed again after a loss: their subscribers may have a gap."""
        channels = [channel for name in names if (channel := self._keys.channel_of(name)) is not None]
        if channels and self._listener is not None:
            self._listener.handle_resubscribed(channels)

    # --- publishing and streams

    @unavailable_on_failure
    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> PublishResult:
        keys = self._keys
        shard, shard_scripts = self._shard(channel)
        meta = keys.meta(channel)
        idempotent = bool(opts.idempotency_key)
        history = opts.keeps_history
        async with shard.guard:
            offset, epoch, cached = await shard_scripts.publish(
                # Without a key the result slot holds the meta key: a key of the same slot.
                keys=[
                    keys.stream(channel),
                    meta,
                    keys.result(channel, opts.idempotency_key) if idempotent else meta,
                    keys.client(channel),
                ],
                args=[
                    _encode(pub),
                    opts.history_size if history else 0,
                    max(1, int(opts.history_ttl + 0.999)) if history else 0,
                    int(opts.history_meta_ttl) if history else 0,
                    _new_epoch(),
                    max(1, int(opts.idempotent_result_ttl)),
                    "spublish" if shard.sharded else "publish",
                    "1" if idempotent else "0",
                ],
            )
        return PublishResult(StreamPosition(int(offset), _text(epoch)), from_cache=bool(cached))

    async def _publish_event(self, channel: str, data: bytes) -> None:
        shard, _ = self._shard(channel)
        async with shard.guard:
            if shard.sharded:
                await shard.redis.spublish(self._keys.client(channel), data)
            else:
                await shard.redis.publish(self._keys.client(channel), data)

    @unavailable_on_failure
    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._publish_event(channel, _JOIN + _encode(info))

    @unavailable_on_failure
    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._publish_event(channel, _LEAVE + _encode(info))

    @unavailable_on_failure
    async def publish_control(self, data: bytes) -> None:
        """On one shard, taking turns among those up: every node listens on all of them."""
        shards = self._engine.shards
        up = [shard for shard in shards if shard.online] or shards
        self._turn += 1
        shard = up[self._turn % len(up)]
        async with shard.guard:
            await shard.redis.publish(self._keys.control, data)

    @unavailable_on_failure
    async def history(self, channel: str, flt: HistoryFilter, history_meta_ttl: float) -> HistoryPage:
        shard, shard_scripts = self._shard(channel)
        since = flt.since
        async with shard.guard:
            top, epoch, entries = await shard_scripts.history(
                keys=[self._keys.stream(channel), self._keys.meta(channel)],
                args=[
                    _new_epoch(),
                    int(history_meta_ttl),
                    since.offset if since is not None else -1,
                    flt.limit,
                    1 if flt.reverse else 0,
                ],
            )
        epoch_text = _text(epoch)
        if since is not None and since.epoch and since.epoch != epoch_text:
            raise UnrecoverablePosition(channel)
        pubs = []
        for entry_id, fields in entries:
            pub = _pub_decoder.decode(fields[1])  # fields = [b"d", payload]
            pub.offset = int(entry_id.split(b"-", 1)[0])
            pubs.append(pub)
        return HistoryPage(pubs, StreamPosition(int(top), epoch_text))

    @unavailable_on_failure
    async def remove_history(self, channel: str) -> None:
        shard, _ = self._shard(channel)
        async with shard.guard:
            await shard.redis.delete(self._keys.stream(channel))


class RedisPresence:
    def __init__(self, engine: RedisEngine) -> None:
        self._engine = engine
        self._keys = engine.keys

    def _shard(self, channel: str) -> tuple[Shard, _Scripts]:
        index = self._engine.shard_of(channel)
        return self._engine.shards[index], self._engine.scripts[index]

    @unavailable_on_failure
    async def add_presence(self, channel: str, client_id: str, info: ClientInfo, ttl: float) -> None:
        shard, shard_scripts = self._shard(channel)
        async with shard.guard:
            await shard_scripts.presence_add(
                keys=self._keys.presence(channel), args=[client_id, _encode(info), time.time() + ttl, int(ttl) + 1]
            )

    @unavailable_on_failure
    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        shard, shard_scripts = self._shard(channel)
        async with shard.guard:
            await shard_scripts.presence_remove(keys=self._keys.presence(channel), args=[client_id])

    async def _entries(self, channel: str) -> dict[str, ClientInfo]:
        shard, shard_scripts = self._shard(channel)
        async with shard.guard:
            flat = await shard_scripts.presence_purge(keys=self._keys.presence(channel), args=[time.time()])
        return {flat[i].decode(): _info_decoder.decode(flat[i + 1]) for i in range(0, len(flat), 2)}

    @unavailable_on_failure
    async def presence(self, channel: str) -> Mapping[str, ClientInfo]:
        return await self._entries(channel)

    @unavailable_on_failure
    async def presence_stats(self, channel: str) -> tuple[int, int]:
        entries = await self._entries(channel)
        return len(entries), len({info.user for info in entries.values()})


class RedisRevocationStore:
    """Revocations shared by all nodes and restored when a node starts (decisions §3). Each
    entry lives on the shard its key hashes to; loading reads every shard."""

    def __init__(self, engine: RedisEngine) -> None:
        self._engine = engine
        self._keys = engine.keys

    def _key(self, kind: str, scope: str, subject: str) -> str:
        # The scope's length first, so "<scope><subject>" splits back unambiguously.
        return self._keys.key(kind, f"{len(scope)}") + "." + scope + subject

    @unavailable_on_failure
    async def revoke(self, jti: str, expire_at: int, scope: str) -> None:
        await self._store(self._key("revoked", scope, jti), str(expire_at), expire_at)

    @unavailable_on_failure
    async def invalidate_user(self, user: str, issued_before: int, expire_at: int, scope: str) -> None:
        await self._store(self._key("invalidated", scope, user), f"{issued_before}:{expire_at}", expire_at)

    async def _store(self, key: str, value: str, expire_at: int) -> None:
        shard = self._engine.shards[self._engine.shard_of(key)]
        async with shard.guard:
            if expire_at:
                await shard.redis.set(key, value, exat=expire_at)
            else:
                await shard.redis.set(key, value)

    @unavailable_on_failure
    async def load(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], tuple[int, int]]]:
        """((jti, scope) → expire_at, (user, scope) → (issued_before, expire_at))."""
        revoked: dict[tuple[str, str], int] = {}
        invalidated: dict[tuple[str, str], tuple[int, int]] = {}
        for shard in self._engine.shards:
            async for scope, subject, value in self._scan(shard, "revoked"):
                revoked[subject, scope] = int(value)
            async for scope, subject, value in self._scan(shard, "invalidated"):
                issued_before, _, expire_at = value.partition(":")
                invalidated[subject, scope] = (int(issued_before), int(expire_at or 0))
        return revoked, invalidated

    async def _scan(self, shard: Shard, kind: str) -> AsyncIterator[tuple[str, str, str]]:
        """(scope, subject, value) of every stored entry of a kind on one shard."""
        prefix = self._keys.key(kind) + "."
        async for key in shard.redis.scan_iter(match=prefix + "*", count=1000):
            name = key.decode()[len(prefix) :]
            length, dot, rest = name.partition(".")
            if not dot or not length.isdigit() or len(rest) < int(length):
                log.warning("ignoring a revocation key of an unknown layout: %s", key.decode())
                continue
            value = await shard.redis.get(key)
            if value is not None:
                scope, subject = rest[: int(length)], rest[int(length) :]
                yield scope, subject, _text(value)

"""Multi-node engine on Redis: PUB/SUB between nodes, channel streams, presence, revocations.

Key layout (``<p>`` = ``redis_prefix``):

=================================  ==============================================================
``<p>.client.<channel>``           PUB/SUB channel carrying publications and join/leave events
``<p>.control``                    PUB/SUB channel for node-to-node control messages
``<p>.stream.<channel>``           Redis STREAM of publications, entry id ``<offset>-0``
``<p>.meta.<channel>``             HASH ``e`` = epoch, ``s`` = top offset
``<p>.result.<n>.<channel>.<key>`` HASH ``e``, ``s``: an idempotent publish result (expires);
                                   ``<n>`` = the channel's length, so keys never collide
``<p>.presence.data.<channel>``    HASH client id → ClientInfo JSON
``<p>.presence.expire.<channel>``  ZSET client id scored by its expiry time
``<p>.revoked.<n>.<scope><jti>``   revoked token id (expires at the revocation's end); ``<n>`` =
                                   the length of the scope (the API key's environment prefix)
``<p>.invalidated.<n>.<scope><u>`` ``issued_before:expire_at`` of a user-wide invalidation (expires)
=================================  ==============================================================

Publishing to a channel with history is one Lua script: read or create the epoch, increment
the offset, append to the stream, trim, set TTLs, PUBLISH with the offset and epoch in a
prefix, and remember the idempotent result — atomic per channel, as the Broker seam requires.

A subscriber must not read a stream before its node's SUBSCRIBE is in effect, or a
publication could fall between the read and the subscription: :meth:`RedisBroker.subscribe`
returns only once Redis has confirmed it (see ``pubsub.py``).

Failures: commands retry a bounded number of times with backoff on connection errors, and a
pooled connection idle for a while is checked with a PING before use, so a Redis restart does
not reach clients as errors on stale connections. What still fails is raised as
:class:`EngineUnavailable` (temporary error 100 for clients, error 100 for the server API).
A retried publish that Redis had in fact executed before the connection dropped is stored
twice unless it carries an idempotency key (the Django publisher always sets one).
"""

from __future__ import annotations

import functools
import logging
import random
import string
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Final, ParamSpec, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
from herald.gateway.engines.redis.pubsub import PubSubLink

log = logging.getLogger(__name__)

# Connection errors are retried this many times, 50 ms to 500 ms apart (with jitter), before
# the operation fails; a pooled connection idle longer than HEALTH_CHECK_INTERVAL is PINGed first.
COMMAND_RETRIES: Final = 3
HEALTH_CHECK_INTERVAL: Final = 2

P = ParamSpec("P")
T = TypeVar("T")


def unavailable_on_failure(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Redis errors that survived the retries become EngineUnavailable (one log line, error 100)."""

    @functools.wraps(method)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise EngineUnavailable(f"redis: {exc}") from None

    return wrapped


_PUB_WITH_POSITION: Final = b"__p1:"
_PUB_PLAIN: Final = b"__p0__"
_JOIN: Final = b"__j__"
_LEAVE: Final = b"__l__"

# KEYS: stream, meta, result (or "" for no idempotency), pubsub channel
# ARGV: payload, history_size (0 = no history), history_ttl s, meta_ttl s, new epoch, result_ttl s
_PUBLISH_LUA: Final = """
if KEYS[3] ~= '' then
  local cached = redis.call('hmget', KEYS[3], 'e', 's')
  if cached[2] then return {cached[2], cached[1], 1} end
end
local size = tonumber(ARGV[2])
local offset = 0
local epoch = ''
if size > 0 then
  epoch = redis.call('hget', KEYS[2], 'e')
  if not epoch then
    epoch = ARGV[5]
    redis.call('hset', KEYS[2], 'e', epoch)
    redis.call('del', KEYS[1])
  end
  offset = redis.call('hincrby', KEYS[2], 's', 1)
  if tonumber(ARGV[4]) > 0 then redis.call('expire', KEYS[2], ARGV[4]) end
  redis.call('xadd', KEYS[1], 'MAXLEN', size, offset .. '-0', 'd', ARGV[1])
  redis.call('expire', KEYS[1], ARGV[3])
  redis.call('publish', KEYS[4], '__p1:' .. offset .. ':' .. epoch .. '__' .. ARGV[1])
else
  redis.call('publish', KEYS[4], '__p0__' .. ARGV[1])
end
if KEYS[3] ~= '' then
  redis.call('hset', KEYS[3], 'e', epoch, 's', offset)
  redis.call('expire', KEYS[3], ARGV[6])
end
return {offset, epoch, 0}
"""

# KEYS: stream, meta. ARGV: new epoch, meta_ttl s, since (-1 = none), limit (-1 = all), reverse (0/1)
_HISTORY_LUA: Final = """
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[2], 'e', epoch)
  redis.call('del', KEYS[1])
end
local top = tonumber(redis.call('hget', KEYS[2], 's') or '0')
if tonumber(ARGV[2]) > 0 then redis.call('expire', KEYS[2], ARGV[2]) end
local limit = tonumber(ARGV[4])
if limit == 0 then return {top, epoch, {}} end
local since = tonumber(ARGV[3])
local entries
if ARGV[5] == '1' then
  local from = '+'
  if since >= 0 then from = '(' .. since .. '-0' end
  if limit > 0 then
    entries = redis.call('xrevrange', KEYS[1], from, '-', 'COUNT', limit)
  else
    entries = redis.call('xrevrange', KEYS[1], from, '-')
  end
else
  local from = '-'
  if since >= 0 then from = '(' .. since .. '-0' end
  if limit > 0 then
    entries = redis.call('xrange', KEYS[1], from, '+', 'COUNT', limit)
  else
    entries = redis.call('xrange', KEYS[1], from, '+')
  end
end
return {top, epoch, entries}
"""

# KEYS: presence hash, expiry zset. ARGV: now
_PRESENCE_PURGE_LUA: Final = """
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[1])
if #expired > 0 then
  redis.call('hdel', KEYS[1], unpack(expired))
  redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[1])
end
return redis.call('hgetall', KEYS[1])
"""


def _new_epoch() -> str:
    return "".join(random.choices(string.ascii_letters, k=8))


_pub_decoder: Final = msgspec.json.Decoder(Publication)
_info_decoder: Final = msgspec.json.Decoder(ClientInfo)
_encode: Final = msgspec.json.encode


class RedisEngine:
    """One Redis client shared by the broker, the presence manager and the revocation store."""

    def __init__(self, address: str, prefix: str = "herald", pool_size: int = 64) -> None:
        # A bounded pool that queues commands when every connection is busy: a reconnect storm
        # issues thousands of commands at once, and a connection each would cost CPU and hit the
        # server's client limit.
        pool = aioredis.BlockingConnectionPool.from_url(
            address,
            max_connections=pool_size,
            timeout=30,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), COMMAND_RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
            health_check_interval=HEALTH_CHECK_INTERVAL,
        )
        self.redis: aioredis.Redis = aioredis.Redis.from_pool(pool)  # owns the pool: closed with it
        # PUB/SUB on a client of its own, without retries (see pubsub.py).
        self.pubsub_redis: aioredis.Redis = aioredis.Redis.from_url(address, retry=Retry(NoBackoff(), 0))
        self.prefix = prefix
        self.broker = RedisBroker(self)
        self.presence = RedisPresence(self)
        self.revocations = RedisRevocationStore(self)

    def key(self, *parts: str) -> str:
        return ".".join((self.prefix, *parts))


class RedisBroker:
    def __init__(self, engine: RedisEngine) -> None:
        self._engine = engine
        self._redis = engine.redis
        self._client_prefix = engine.key("client") + "."
        self._control = engine.key("control")
        self._publish_script = self._redis.register_script(_PUBLISH_LUA)
        self._history_script = self._redis.register_script(_HISTORY_LUA)
        self._handler: BrokerEventHandler | None = None
        self._link = PubSubLink(engine.pubsub_redis, self._control, self._dispatch)

    async def start(self, handler: BrokerEventHandler) -> None:
        """Start even when Redis is down: clients are served what needs no engine, engine
        operations answer error 100 until it is back, and PUB/SUB reconnects by itself."""
        self._handler = handler
        await self._link.start()

    async def close(self) -> None:
        await self._link.close()
        await self._redis.aclose()

    @property
    def online(self) -> bool:
        """Whether the PUB/SUB connection is up (publications from other nodes arrive)."""
        return self._link.online

    # --- PUB/SUB

    async def subscribe(self, channel: str) -> None:
        await self._link.subscribe(self._client_prefix + channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._link.unsubscribe(self._client_prefix + channel)

    def _dispatch(self, name: str, data: bytes) -> None:
        handler = self._handler
        assert handler is not None
        if name == self._control:
            handler.handle_control(data)
            return
        channel = name[len(self._client_prefix) :]
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

    # --- publishing and streams

    @unavailable_on_failure
    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> PublishResult:
        key = self._engine.key
        result_key = key("result", str(len(channel)), channel, opts.idempotency_key) if opts.idempotency_key else ""
        history = opts.keeps_history
        offset, epoch, cached = await self._publish_script(
            keys=[key("stream", channel), key("meta", channel), result_key, self._client_prefix + channel],
            args=[
                _encode(pub),
                opts.history_size if history else 0,
                max(1, int(opts.history_ttl + 0.999)) if history else 0,
                int(opts.history_meta_ttl) if history else 0,
                _new_epoch(),
                max(1, int(opts.idempotent_result_ttl)),
            ],
        )
        epoch_text = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        return PublishResult(StreamPosition(int(offset), epoch_text), from_cache=bool(cached))

    @unavailable_on_failure
    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._redis.publish(self._client_prefix + channel, _JOIN + _encode(info))

    @unavailable_on_failure
    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._redis.publish(self._client_prefix + channel, _LEAVE + _encode(info))

    @unavailable_on_failure
    async def publish_control(self, data: bytes) -> None:
        await self._redis.publish(self._control, data)

    @unavailable_on_failure
    async def history(self, channel: str, flt: HistoryFilter, history_meta_ttl: float) -> HistoryPage:
        key = self._engine.key
        since = flt.since
        top, epoch, entries = await self._history_script(
            keys=[key("stream", channel), key("meta", channel)],
            args=[
                _new_epoch(),
                int(history_meta_ttl),
                since.offset if since is not None else -1,
                flt.limit,
                1 if flt.reverse else 0,
            ],
        )
        epoch_text = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
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
        await self._redis.delete(self._engine.key("stream", channel))


class RedisPresence:
    def __init__(self, engine: RedisEngine) -> None:
        self._engine = engine
        self._redis = engine.redis
        self._purge = self._redis.register_script(_PRESENCE_PURGE_LUA)

    def _keys(self, channel: str) -> tuple[str, str]:
        return self._engine.key("presence", "data", channel), self._engine.key("presence", "expire", channel)

    @unavailable_on_failure
    async def add_presence(self, channel: str, client_id: str, info: ClientInfo, ttl: float) -> None:
        data_key, exp_key = self._keys(channel)
        expires = time.time() + ttl
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(data_key, client_id, _encode(info))
            pipe.zadd(exp_key, {client_id: expires})
            pipe.expire(data_key, int(ttl) + 1)
            pipe.expire(exp_key, int(ttl) + 1)
            await pipe.execute()

    @unavailable_on_failure
    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        data_key, exp_key = self._keys(channel)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(data_key, client_id)
            pipe.zrem(exp_key, client_id)
            await pipe.execute()

    async def _entries(self, channel: str) -> dict[str, ClientInfo]:
        data_key, exp_key = self._keys(channel)
        flat = await self._purge(keys=[data_key, exp_key], args=[time.time()])
        return {flat[i].decode(): _info_decoder.decode(flat[i + 1]) for i in range(0, len(flat), 2)}

    @unavailable_on_failure
    async def presence(self, channel: str) -> Mapping[str, ClientInfo]:
        return await self._entries(channel)

    @unavailable_on_failure
    async def presence_stats(self, channel: str) -> tuple[int, int]:
        entries = await self._entries(channel)
        return len(entries), len({info.user for info in entries.values()})


class RedisRevocationStore:
    """Revocations shared by all nodes and restored when a node starts (decisions §3)."""

    def __init__(self, engine: RedisEngine) -> None:
        self._engine = engine
        self._redis = engine.redis

    def _key(self, kind: str, scope: str, subject: str) -> str:
        # The scope's length first, so "<scope><subject>" splits back unambiguously.
        return self._engine.key(kind, f"{len(scope)}") + "." + scope + subject

    @unavailable_on_failure
    async def revoke(self, jti: str, expire_at: int, scope: str) -> None:
        await self._store(self._key("revoked", scope, jti), str(expire_at), expire_at)

    @unavailable_on_failure
    async def invalidate_user(self, user: str, issued_before: int, expire_at: int, scope: str) -> None:
        await self._store(self._key("invalidated", scope, user), f"{issued_before}:{expire_at}", expire_at)

    async def _store(self, key: str, value: str, expire_at: int) -> None:
        if expire_at:
            await self._redis.set(key, value, exat=expire_at)
        else:
            await self._redis.set(key, value)

    @unavailable_on_failure
    async def load(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], tuple[int, int]]]:
        """((jti, scope) → expire_at, (user, scope) → (issued_before, expire_at))."""
        revoked: dict[tuple[str, str], int] = {}
        invalidated: dict[tuple[str, str], tuple[int, int]] = {}
        async for scope, subject, value in self._scan("revoked"):
            revoked[subject, scope] = int(value)
        async for scope, subject, value in self._scan("invalidated"):
            issued_before, _, expire_at = value.partition(":")
            invalidated[subject, scope] = (int(issued_before), int(expire_at or 0))
        return revoked, invalidated

    async def _scan(self, kind: str) -> AsyncIterator[tuple[str, str, str]]:
        """(scope, subject, value) of every stored entry of a kind."""
        prefix = self._engine.key(kind) + "."
        async for key in self._redis.scan_iter(match=prefix + "*", count=1000):
            name = key.decode()[len(prefix) :]
            length, dot, rest = name.partition(".")
            if not dot or not length.isdigit() or len(rest) < int(length):
                log.warning("ignoring a revocation key of an unknown layout: %s", key.decode())
                continue
            value = await self._redis.get(key)
            if value is not None:
                scope, subject = rest[: int(length)], rest[int(length) :]
                yield scope, subject, value.decode() if isinstance(value, bytes) else str(value)

"""The node's one Redis PUB/SUB connection: which channels it wants, which Redis has confirmed.

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

The connection has no retry policy of its own: a hidden reconnect inside the library would
resubscribe without telling us, and the acknowledgements would no longer match the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from herald.gateway.engines.broker import EngineUnavailable

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT: Final = 5.0  # longest a subscriber waits for Redis to acknowledge SUBSCRIBE
RECONNECT_MIN: Final = 0.1
RECONNECT_MAX: Final = 2.0


class PubSubLink:
    def __init__(self, redis: aioredis.Redis, control: str, on_message: Callable[[str, bytes], None]) -> None:
        self._redis = redis
        self._control = control
        self._on_message = on_message
        self._wanted: set[str] = set()
        self._confirmed: set[str] = set()
        self._inflight: dict[str, deque[asyncio.Future[bool] | None]] = {}
        self._pubsub: Any = None
        self._online = False
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def online(self) -> bool:
        return self._online

    async def start(self) -> None:
        """Connect now if Redis answers; otherwise keep trying in the background."""
        try:
            await self._connect()
        except (RedisError, OSError) as exc:
            log.warning("redis PUB/SUB unreachable (%s); retrying until it answers", exc)
        self._runner = asyncio.create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for task in list(self._background):
            task.cancel()
        await self._discard(self._pubsub)
        self._pubsub = None
        await self._redis.aclose()

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
                await self._pubsub.subscribe(name)
            except (RedisError, OSError) as exc:
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
        if self._online:
            await self._send_unsubscribe(name)

    async def _send_unsubscribe(self, name: str) -> None:
        self._inflight.setdefault(name, deque()).append(None)
        try:
            await self._pubsub.unsubscribe(name)
        except (RedisError, OSError) as exc:
            # The reader sees the same broken connection and reconnects without this channel.
            log.debug("redis UNSUBSCRIBE %s failed: %s", name, exc)

    # --- the connection

    async def _connect(self) -> None:
        pubsub = self._redis.pubsub()
        channels = [self._control, *self._wanted]
        try:
            await pubsub.subscribe(*channels)
        except BaseException:
            await self._discard(pubsub)
            raise
        loop = asyncio.get_running_loop()
        for name in channels[1:]:
            self._inflight.setdefault(name, deque()).append(loop.create_future())
        self._pubsub = pubsub
        self._online = True

    async def _run(self) -> None:
        delay = RECONNECT_MIN
        while not self._closing:
            if not self._online:
                try:
                    await self._connect()
                except (RedisError, OSError) as exc:
                    log.debug("redis PUB/SUB still unreachable: %s", exc)
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(RECONNECT_MAX, delay * 2)
                    continue
                log.info("redis PUB/SUB connection restored; resubscribed to %d channels", len(self._wanted))
                delay = RECONNECT_MIN
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
            except (RedisError, OSError) as exc:
                log.warning("redis PUB/SUB connection lost (%s); reconnecting", exc)
                await self._lose_connection()
                continue
            if message is not None:
                try:
                    self._dispatch(message)
                except Exception:
                    log.exception("dropping an undecodable message from redis")

    async def _lose_connection(self) -> None:
        """Forget the connection's state; subscribers waiting on it get a temporary error."""
        self._online = False
        self._confirmed.clear()
        for queue in self._inflight.values():
            for waiting in queue:
                if waiting is not None and not waiting.done():
                    waiting.set_result(False)
        self._inflight.clear()
        pubsub, self._pubsub = self._pubsub, None
        await self._discard(pubsub)

    @staticmethod
    async def _discard(pubsub: Any) -> None:
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        kind = message["type"]
        name = message["channel"]
        name = name.decode() if isinstance(name, bytes) else name
        if kind == "message":
            self._on_message(name, message["data"])
        elif (kind == "subscribe" or kind == "unsubscribe") and name != self._control:
            self._acknowledged(name, subscribed=kind == "subscribe")

    def _acknowledged(self, name: str, *, subscribed: bool) -> None:
        queue = self._inflight.get(name)
        if not queue:
            return  # not one of ours (cannot happen while the queues are exact)
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
        else:
            # Every subscriber left while the SUBSCRIBE travelled (their unsubscribe found the
            # connection down, or came first): take it back.
            task = asyncio.ensure_future(self._send_unsubscribe(name))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

"""PUB/SUB on Redis Cluster: sharded channels on the node that owns their slot, control everywhere.

A channel's PUB/SUB channel carries the channel's hash tag (``keys.py``), so the publish script
``SPUBLISH``-es it on the node that stores the channel's stream, and only that node sends it to
subscribers: sharded PUB/SUB (Redis 7) does not copy every publication to every node the way a
plain ``PUBLISH`` does on a cluster. The node therefore holds one :class:`PubSubLink` per master,
each ``SSUBSCRIBE``-d to the channels whose slot that master owns and probing itself on a probe
channel of one of its own slots. Control messages, which every node must get, travel by plain
``PUBLISH`` (broadcast over the cluster bus) on one more link, to whichever node answers.

When a master dies its link breaks; the router then reads the cluster's topology again (every
half second at most) until a replica has taken the master's slots over, and hands the dead link's
channels to the link of their new owner, which subscribes them and reports them restored. When
Redis moves a slot while its master lives (resharding), it ends the sharded subscriptions of that
slot itself; the link reports each one dropped and the router subscribes it at the new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from herald.gateway.engines.broker import EngineUnavailable
from herald.gateway.engines.redis.keys import KeyNames
from herald.gateway.engines.redis.pubsub import Probe, PubSubLink

log = logging.getLogger(__name__)

REFRESH_MIN: Final = 0.2  # seconds between topology reads while something is unsettled
REFRESH_MAX: Final = 0.5  # a promoted replica is found within this much of its promotion
PROBE_SLOT_TRIES: Final = 4096  # candidate probe channels tried to find one in a node's slots

NodeClient = Callable[[str, int], aioredis.Redis]


class ClusterSubscriber:
    def __init__(
        self,
        cluster: RedisCluster,
        node_client: NodeClient,
        keys: KeyNames,
        on_message: Callable[[str, bytes], None],
        on_restored: Callable[[list[str]], None],
        name: str,
    ) -> None:
        self._cluster = cluster
        self._node_client = node_client
        self._keys = keys
        self._on_message = on_message
        self._on_restored = on_restored
        self.name = name
        self._uid = uuid.uuid4().hex[:12]
        self._links: dict[str, PubSubLink] = {}  # master "host:port" -> its sharded link
        self._route: dict[str, str] = {}  # wanted shard channel -> the master whose link holds it
        self._wanted: set[str] = set()
        self._known = False  # the topology has been read at least once
        self._closing = False
        self._rotation = 0
        self._refresher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        control_probe = keys.probe(f"{self._uid}.control")
        self._control = PubSubLink(
            self._any_node,
            on_message,
            control=keys.control,
            probe=Probe(channel=lambda: control_probe, send=self._publish),
            name=f"{name} control",
        )

    @property
    def online(self) -> bool:
        return (
            self._known
            and self._control.online
            and all(link.online for link in self._links.values())
            and self._wanted <= self._route.keys()
        )

    async def start(self) -> None:
        try:
            await self._cluster.initialize()
            await self._apply_topology()
        except Exception as exc:  # unreachable or half-formed: the refresher keeps trying
            log.warning("redis cluster %s unreachable (%s); retrying until it answers", self.name, exc)
            self._schedule_refresh()
        await self._control.start()

    async def close(self) -> None:
        self._closing = True
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(self._control.close(), *(link.close() for link in self._links.values()))

    # --- what the broker asks

    async def subscribe(self, name: str) -> None:
        owner = self._route.get(name) or self._owner(name)
        link = self._links.get(owner) if owner else None
        if link is None:
            raise EngineUnavailable("no reachable cluster master serves the channel's slot")
        self._wanted.add(name)
        self._route[name] = link.name
        await link.subscribe(name)

    async def unsubscribe(self, name: str) -> None:
        self._wanted.discard(name)
        owner = self._route.pop(name, None)
        link = self._links.get(owner) if owner else None
        if link is not None:
            await link.unsubscribe(name)

    # --- topology

    def _owner(self, name: str) -> str | None:
        """The master serving ``name``'s slot, as the client last read the topology."""
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(key_slot(name.encode()))
        except (RedisClusterException, RedisError, LookupError):
            return None
        return str(node.name) if node is not None else None

    def _new_link(self, host: str, port: int) -> PubSubLink:
        node = f"{host}:{port}"
        link = PubSubLink(
            lambda: self._node_client(host, port),
            self._on_message,
            probe=Probe(channel=lambda: self._probe_channel(node), send=self._spublish),
            sharded=True,
            on_restored=self._on_restored,
            on_dropped=self._dropped,
            on_lost=self._schedule_refresh,
            name=node,
        )
        self._links[node] = link
        return link

    async def _apply_topology(self) -> None:
        """Links for the masters the client now knows, none for nodes that are no longer
        masters, and every wanted channel on the link of its slot's master."""
        masters = {str(node.name): node for node in self._cluster.get_primaries()}
        added = [self._new_link(node.host, int(node.port)) for name, node in masters.items() if name not in self._links]
        await asyncio.gather(*(link.start() for link in added))
        for name in [name for name in self._links if name not in masters]:
            gone = self._links.pop(name)
            for channel in gone.release():
                self._route.pop(channel, None)
            self._spawn(gone.close())
            log.info("redis cluster %s: %s is no longer a master; its channels move", self.name, name)
        for channel in list(self._wanted):
            owner = self._owner(channel)
            current = self._route.get(channel)
            if current == owner and owner in self._links and channel in self._links[owner].wanted:
                continue
            if current in self._links and current != owner:
                await self._links[current].unsubscribe(channel)  # the slot moved, the master lives
            if owner is None or owner not in self._links:
                self._route.pop(channel, None)  # no master for it yet: placed by a later refresh
                continue
            if channel in self._wanted:  # not unsubscribed meanwhile
                self._links[owner].adopt([channel])
                self._route[channel] = owner
        self._known = True

    def _settled(self) -> bool:
        return self._known and all(link.online for link in self._links.values()) and self._wanted <= self._route.keys()

    def _schedule_refresh(self) -> None:
        if not self._closing and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.create_task(self._refresh_until_settled())

    async def _refresh_until_settled(self) -> None:
        delay = REFRESH_MIN
        while not self._closing:
            try:
                await self._cluster.nodes_manager.initialize()
                await self._apply_topology()
            except Exception as exc:  # the refresher must go on until the topology settles
                log.debug("redis cluster %s: topology not readable yet: %r", self.name, exc)
            if self._settled():
                return
            await asyncio.sleep(delay)
            delay = min(REFRESH_MAX, delay * 1.5)

    def _dropped(self, channel: str) -> None:
        """Redis ended a sharded subscription by itself: its slot moved. Subscribe it again at
        the new owner (it stays wanted; the refresh places it)."""
        self._route.pop(channel, None)
        self._schedule_refresh()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- connections and probes

    def _any_node(self) -> aioredis.Redis:
        """A client for the control link: each attempt goes to the next node the client knows,
        so a dead node is passed over."""
        nodes = self._cluster.get_nodes() or list(self._cluster.nodes_manager.startup_nodes.values())
        if not nodes:
            raise RedisConnectionError("no cluster node known")
        self._rotation += 1
        node = nodes[self._rotation % len(nodes)]
        return self._node_client(node.host, int(node.port))

    def _probe_channel(self, node: str) -> str:
        """A probe channel whose slot ``node`` serves, for the sharded link to that node."""
        for i in range(PROBE_SLOT_TRIES):
            candidate = self._keys.probe(f"{{{self._uid}.{i}}}")
            if self._owner(candidate) == node:
                return candidate
        raise RedisConnectionError(f"cluster node {node} serves no slot")

    async def _publish(self, channel: str, data: bytes) -> None:
        await self._cluster.publish(channel, data)

    async def _spublish(self, channel: str, data: bytes) -> None:
        await self._cluster.spublish(channel, data)

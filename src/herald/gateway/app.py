"""Composition root: config → engine → node → API → HTTP server; signals and graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

from herald import errors
from herald.gateway.activation import describe
from herald.gateway.admin.handlers import mount_admin
from herald.gateway.api import ServerAPI
from herald.gateway.config import Config, cluster_seeds, redis_url, split_host_port
from herald.gateway.engines.broker import Broker, PresenceManager
from herald.gateway.engines.memory import MemoryBroker, MemoryPresence
from herald.gateway.node import Node, RevocationStore
from herald.gateway.proxy import build_proxy
from herald.gateway.transports.http import HttpServer

if TYPE_CHECKING:
    from herald.gateway.engines.redis import Address

log = logging.getLogger("herald")

GC_THRESHOLD_GEN0 = 20_000
CLOSE_FLUSH = 0.2  # seconds a stopping node waits for its closing sockets to flush


def build_engine(config: Config) -> tuple[Broker, PresenceManager, RevocationStore | None]:
    if config.engine == "redis":
        from herald.gateway.engines.redis import RedisEngine  # needs the "redis" extra

        engine = RedisEngine(redis_addresses(config), prefix=config.redis_prefix)
        return engine.broker, engine.presence, engine.revocations
    return MemoryBroker(), MemoryPresence(), None


def redis_addresses(config: Config) -> list[Address]:
    """The engine's shards from a checked config: a Sentinel group, Redis Clusters, or servers."""
    from herald.gateway.engines.redis import ClusterAddress, SentinelAddress, ServerAddress

    if config.redis_sentinel_address:
        sentinel = SentinelAddress(
            tuple(split_host_port(a) for a in config.redis_sentinel_address),
            config.redis_sentinel_master_name,
            sentinel_user=config.redis_sentinel_user,
            sentinel_password=config.redis_sentinel_password,
            user=config.redis_user,
            password=config.redis_password,
            db=config.redis_db,
        )
        return [sentinel]
    if config.redis_cluster_address:
        return [
            ClusterAddress(tuple(cluster_seeds(element)), user=config.redis_user, password=config.redis_password)
            for element in config.redis_cluster_address
        ]
    return [ServerAddress(redis_url(address)) for address in config.redis_address]


class Gateway:
    """A running node: start, serve, drain, stop."""

    def __init__(self, config: Config, listener: socket.socket | None = None) -> None:
        self.config = config
        self.listener = listener  # passed by a supervisor (socket activation), else bind our own
        broker, presence, revocations = build_engine(config)
        port = config.port if listener is None else listener.getsockname()[1]
        name = config.name or f"{socket.gethostname()}_{port}"
        self.node = Node(config, broker, presence, name=name, revocation_store=revocations)
        self.node.proxy = build_proxy(config)
        self.server = HttpServer(self.node, ServerAPI(self.node))
        if config.admin:  # the admin web UI on the same port (docs/operations.md)
            mount_admin(self.server.app, self.node, self.server.api)

    async def start(self) -> None:
        await self.node.start()
        config = self.config
        await self.server.start(config.address, config.port, reuse_port=config.reuse_port, sock=self.listener)
        # Start-up objects live as long as the process: keep the cyclic GC from scanning them
        # again and again, and let it run less often (connections allocate in bursts).
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD_GEN0, 20, 20)
        where = f"{config.address or '*'}:{config.port}" if self.listener is None else describe(self.listener)
        activated = "" if self.listener is None else ", socket from the supervisor"
        log.info(
            "herald %s node %s listening on %s (engine %s%s)",
            self.node.version,
            self.node.name,
            where,
            config.engine,
            activated,
        )

    async def stop(self) -> None:
        """Drain, then close; by ``shutdown_timeout`` at the latest, whatever the drain left."""
        # Stop accepting first: with reuse_port, a new node on the same port takes the clients.
        self.server.stop_listening()
        try:
            async with asyncio.timeout(self.config.shutdown_timeout or None):
                await self.node.drain(self.config.shutdown_drain_window)
                await self._let_closes_flush()
        except TimeoutError:
            left = self.node.hub.num_clients
            log.warning("shutdown_timeout reached with %d connections still open: closing them now", left)
            self.node.close_all(errors.DISCONNECT_SHUTDOWN)
            await self._let_closes_flush()
        await self.server.close()
        await self.node.close()
        if self.node.proxy is not None:
            await self.node.proxy.close()

    async def _let_closes_flush(self) -> None:
        """Let the close frames reach the kernel: a reconnect-coded close does not wait for the
        peer, so the sockets go within milliseconds; a slow peer gets CLOSE_FLUSH at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_FLUSH):
                await self.node.websockets_closed()


async def serve(config: Config, listener: socket.socket | None = None) -> None:
    gateway = Gateway(config, listener)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining connections over %.1fs", config.shutdown_drain_window)
    await gateway.stop()


def configure_logging(config: Config) -> None:
    # With workers, each line says which process wrote it.
    process = "[%(process)d]" if config.workers != 1 else ""
    logging.basicConfig(
        level=config.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s{process}: %(message)s",
    )


def run(config: Config, listener: socket.socket | None = None) -> None:
    """Serve one node in this process until SIGTERM/SIGINT, then exit the process."""
    configure_logging(config)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(serve(config, listener))
    else:
        uvloop.run(serve(config, listener))
    # Connections are closed and the engine is shut: skip tearing the heap down object by
    # object, which for a large node costs seconds of CPU while its successor (on the same
    # machine, during a restart) is taking over the clients.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

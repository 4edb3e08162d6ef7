"""Redis processes of a test's own, on free ports: one server, a Sentinel group, a Cluster.

* :class:`RedisServer`: one ``redis-server`` the test may stop, kill and start again.
* :class:`SentinelGroup`: a master, a replica and three sentinels (quorum 2) that fail over
  within a few seconds of the master's death (``down-after-milliseconds`` 1000).
* :class:`RedisClusterGroup`: three masters with a replica each, made with
  ``redis-cli --cluster create``; a killed master's replica takes its slots over.

Nothing is persisted: a restarted server starts empty, as after a crash without persistence.
Every process is stopped (and its directory removed) by ``close``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.timing import seconds, wait_until_sync

SENTINEL_MASTER = "herald-master"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=seconds(2))


class RedisServer:
    def __init__(self, port: int = 0, args: tuple[str, ...] = (), *, sentinel: bool = False) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.port = port or free_port()
        self._args = args
        self._sentinel = sentinel
        self._dir = tempfile.TemporaryDirectory(prefix="herald-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def directory(self) -> Path:
        return Path(self._dir.name)

    @property
    def running(self) -> bool:
        return self.proc is not None

    def start(self) -> RedisServer:
        """Start (again) on the same port, with what a ``stop(keep_data=True)`` saved, else empty."""
        assert self.proc is None, "already running"
        if self._sentinel:
            # A sentinel rewrites its config file, so it gets one of its own in its directory.
            conf = self.directory / "sentinel.conf"
            if not conf.exists():
                conf.write_text("".join(f"{line}\n" for line in self._args))
            cmd = ["redis-server", str(conf), "--sentinel", "--port", str(self.port), "--bind", "127.0.0.1"]
        else:
            cmd = [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self._args,
            ]
        self.proc = subprocess.Popen(cmd, cwd=self._dir.name, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds(10)
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop; with ``keep_data``, save everything first so the next start has it back (a
        restart of a server with persistence), else the next start is empty (a crash without)."""
        if self.proc is None:
            return
        if keep_data:
            client = _client(self.port)
            try:
                client.shutdown(save=True)
            except redis.ConnectionError:
                pass  # the answer to SHUTDOWN is the connection closing
            finally:
                client.close()
        stop_process(self.proc)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash (no goodbye to replicas or clients)."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)
            self.proc = None

    def answers(self) -> bool:
        client = _client(self.port)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def info(self, section: str) -> dict[str, object]:
        client = _client(self.port)
        try:
            result: dict[str, object] = client.info(section)
            return result
        finally:
            client.close()

    def command(self, *args: str) -> object:
        client = _client(self.port)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def sentinel_master(self) -> dict[str, Any]:
        """What this sentinel knows of the master (``SENTINEL MASTER``, parsed by redis-py)."""
        client = _client(self.port)
        try:
            state: dict[str, Any] = client.sentinel_master(SENTINEL_MASTER)
            return state
        finally:
            client.close()

    def synced_replica(self) -> bool:
        """A replica whose link to its master is up, initial sync done: one that can fail over
        (a replica that never synced is not eligible)."""
        info = self.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def replicas_in_sync(self, offset: int) -> bool:
        """Whether every replica of this master has acknowledged its writes up to ``offset``."""
        try:
            info = self.info("replication")
        except redis.RedisError:
            return False
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return bool(replicas) and all(int(r.get("offset", -1)) >= offset for r in replicas)

    def wait_replicas_in_sync(self) -> None:
        """Replication is asynchronous: a master killed before its replica has a write loses it.
        Tests that kill a master on purpose wait for this first (everything written so far has
        reached the replicas), so only the failover is tested. Replicas acknowledge every second."""
        offset = int(str(self.info("replication")["master_repl_offset"]))
        wait_until_sync(
            lambda: self.replicas_in_sync(offset), f"the replicas of port {self.port} are in sync", within=10
        )

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.close()


class SentinelGroup:
    """A master, one replica, three sentinels watching them under :data:`SENTINEL_MASTER`."""

    def __init__(self) -> None:
        self.servers = [RedisServer(), RedisServer()]
        self.sentinels: list[RedisServer] = []

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.sentinels]

    def start(self) -> SentinelGroup:
        master, replica = self.servers
        master.start()
        replica._args = ("--replicaof", "127.0.0.1", str(master.port))
        replica.start()
        for _ in range(3):
            sentinel = RedisServer(
                args=(
                    "bind 127.0.0.1",
                    f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master.port} 2",
                    f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000",
                    f"sentinel failover-timeout {SENTINEL_MASTER} 10000",
                    f"sentinel parallel-syncs {SENTINEL_MASTER} 1",
                ),
                sentinel=True,
            )
            self.sentinels.append(sentinel.start())
        self.wait_ready()
        return self

    def master_port(self) -> int:
        """The master's port as the sentinels announce it."""
        client = _client(self.sentinels[0].port)
        try:
            _, port = client.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
            return int(port)
        finally:
            client.close()

    def master(self) -> RedisServer:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def _settled(self) -> bool:
        """Every sentinel knows the others and the replica, and the replica is in sync: a
        failover can happen (sentinels discover each other over the master's PUB/SUB)."""
        try:
            for sentinel in self.sentinels:
                state = sentinel.sentinel_master()
                if state["num-other-sentinels"] < len(self.sentinels) - 1 or state["num-slaves"] < 1:
                    return False
                if state["is_sdown"] or state["is_odown"]:
                    return False
            port = self.master_port()
            replicas = [s for s in self.servers if s.running and s.port != port]
            return bool(replicas) and all(s.synced_replica() for s in replicas)
        except (redis.RedisError, StopIteration, KeyError):
            return False

    def wait_ready(self) -> None:
        wait_until_sync(self._settled, "the sentinels agree on a master with a live replica", within=30)

    def wait_failover(self, old_port: int) -> None:
        wait_until_sync(lambda: self._master_moved(old_port), "the sentinels promoted the replica", within=30)

    def _master_moved(self, old_port: int) -> bool:
        try:
            return self.master_port() != old_port
        except redis.RedisError:
            return False

    def rejoin(self, server: RedisServer) -> None:
        """Start a killed master again as a replica of the new one, and wait until all is settled."""
        server._args = ("--replicaof", "127.0.0.1", str(self.master_port()))
        server.start()
        self.wait_ready()

    def close(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.close()


@contextmanager
def sentinel_group() -> Iterator[SentinelGroup]:
    group = SentinelGroup()
    try:
        yield group.start()
    finally:
        group.close()


CLUSTER_ARGS = (
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "1000",
)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


class RedisClusterGroup:
    """Three masters and three replicas; a killed master's replica is promoted within seconds."""

    def __init__(self, masters: int = 3) -> None:
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli is not installed (Debian package redis-tools)")
        self.servers = [RedisServer(free_cluster_port(), args=CLUSTER_ARGS) for _ in range(2 * masters)]

    @property
    def seeds(self) -> str:
        """The cluster address as the config takes it: comma-separated seed nodes."""
        return ",".join(s.address for s in self.servers[:2])

    def start(self) -> RedisClusterGroup:
        for server in self.servers:
            server.start()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[s.address for s in self.servers],
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=seconds(60),
        )
        self.wait_ready()
        return self

    def _state_ok(self, server: RedisServer) -> bool:
        try:
            info = server.command("CLUSTER", "INFO")
        except redis.RedisError:
            return False
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def _settled(self) -> bool:
        live = [s for s in self.servers if s.running]
        if not all(self._state_ok(s) for s in live):
            return False
        try:
            masters = [s for s in live if s.info("replication")["role"] == "master"]
            replicas = [s for s in live if s not in masters]
            return (
                len(masters) == len(self.servers) // 2
                and len(replicas) >= len(masters)
                and all(s.synced_replica() for s in replicas)
            )
        except redis.RedisError:
            return False

    def wait_ready(self) -> None:
        """Every live node sees a healthy cluster and every master has a replica in sync."""
        wait_until_sync(self._settled, "the cluster is ok with a replica for every master", within=60, interval=0.1)

    def masters(self) -> list[RedisServer]:
        return [s for s in self.servers if s.running and s.info("replication")["role"] == "master"]

    def owner_of(self, key: str) -> RedisServer:
        """The master serving ``key``'s slot."""
        slot = int(str(self.servers[0].command("CLUSTER", "KEYSLOT", key)))
        return next(m for m in self.masters() if self._serves(m, slot))

    def _serves(self, server: RedisServer, slot: int) -> bool:
        for entry in server.command("CLUSTER", "SLOTS"):  # type: ignore[union-attr]
            start, end, primary = entry[0], entry[1], entry[2]
            if start <= slot <= end and int(primary[1]) == server.port:
                return True
        return False

    def wait_promoted(self, killed: RedisServer) -> None:
        """Wait until the killed master's slots are served by a promoted replica."""

        def promoted() -> bool:
            live = [s for s in self.servers if s.running]
            return len([s for s in live if self._role(s) == "master"]) == len(self.servers) // 2 and all(
                self._state_ok(s) for s in live
            )

        wait_until_sync(promoted, f"a replica took over the slots of port {killed.port}", within=60, interval=0.1)

    @staticmethod
    def _role(server: RedisServer) -> str:
        try:
            return str(server.info("replication")["role"])
        except redis.RedisError:
            return ""

    def move_slot(self, slot: int, source: RedisServer, target: RedisServer) -> None:
        """Reshard one slot from ``source`` to ``target`` (both masters), keys and all."""
        source_id = _text(source.command("CLUSTER", "MYID"))
        target_id = _text(target.command("CLUSTER", "MYID"))
        target.command("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        source.command("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        while keys := source.command("CLUSTER", "GETKEYSINSLOT", str(slot), "100"):
            names = [_text(key) for key in keys]  # type: ignore[union-attr]
            source.command("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *names)
        for node in [target, source, *(m for m in self.masters() if m not in (source, target))]:
            node.command("CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        wait_until_sync(
            lambda: all(self._serves_slot(s, slot, target.port) for s in self.servers if s.running),
            f"every node agrees that port {target.port} serves slot {slot}",
            within=30,
            interval=0.1,
        )

    def _serves_slot(self, viewer: RedisServer, slot: int, port: int) -> bool:
        try:
            entries = viewer.command("CLUSTER", "SLOTS")
        except redis.RedisError:
            return False
        return any(e[0] <= slot <= e[1] and int(e[2][1]) == port for e in entries)  # type: ignore[union-attr]

    def rejoin(self, server: RedisServer) -> None:
        """Start a killed node again: it rejoins as a replica (its nodes.conf was kept)."""
        server.start()
        self.wait_ready()

    def close(self) -> None:
        for server in self.servers:
            server.close()


@contextmanager
def redis_cluster() -> Iterator[RedisClusterGroup]:
    group = RedisClusterGroup()
    try:
        yield group.start()
    finally:
        group.close()

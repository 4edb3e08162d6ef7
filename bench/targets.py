"""The three servers every workload runs against: Herald, the thin floor, the Channels app.

A target knows how to start and stop its process, what the load generator must speak to it,
how to publish one payload to a channel, and how to make the server close every socket.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Final

import msgspec

from bench.common import ServerProcess, free_port, note
from bench.load import MODE_CENTRIFUGO, MODE_RAW, LoadGen

SECRET: Final = "bench-secret-0123456789abcdef-0123456789abcdef-bench"
API_KEY: Final = "bench-api-key"
CHANNELS_REDIS: Final = "redis://127.0.0.1:6379/14"

HERALD: Final = "herald"
HERALD_REDIS: Final = "herald-redis"  # Herald on its Redis engine: history survives a restart
HERALD_REDIS_URL: Final = "redis://127.0.0.1:6379/13"
# The same two, restarted under a supervisor that holds the listening socket (socket activation).
HERALD_SUPERVISED: Final = "herald-supervised"
HERALD_REDIS_SUPERVISED: Final = "herald-redis-supervised"
THIN: Final = "thin"
CHANNELS: Final = "channels"
ALL_TARGETS: Final = (HERALD, THIN, CHANNELS)


def herald_config(**overrides: object) -> dict[str, object]:
    cfg: dict[str, object] = {
        "token_hmac_secret_key": SECRET,
        "api_key": API_KEY,
        "reuse_port": True,  # lets the storm's handoff scenario start a new node on the same port
        # Restarts close connections over 0.5 s rather than the default 5 s: the storm then
        # measures how fast clients are back, not how long the drain is told to take.
        "shutdown_drain_window": "500ms",
        "namespaces": [{"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True}],
    }
    cfg.update(overrides)
    return cfg


def payload(seq: int, size: int = 200) -> bytes:
    """A ~``size``-byte JSON publication carrying its sequence number and send time."""
    head = f'{{"s":{seq},"t":{time.time():.6f},"p":"'
    return (head + "x" * max(0, size - len(head) - 2) + '"}').encode()


class Publisher:
    """A keep-alive HTTP connection that POSTs publications."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.port = port
        self.path = path
        self.headers = {"Content-Type": "application/json", **headers}
        self._conn: http.client.HTTPConnection | None = None
        self.failures = 0

    def post(self, body: bytes, path: str | None = None, timeout: float = 30.0) -> bytes:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            self._conn.request("POST", path or self.path, body, self.headers)
            resp = self._conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            self.failures += 1
            raise
        if resp.status != 200:
            self.failures += 1
            raise RuntimeError(f"POST {path or self.path}: HTTP {resp.status} {data[:200]!r}")
        return data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Target:
    name = ""
    mode = MODE_RAW
    token = "none"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server = self._server()

    def _server(self) -> ServerProcess:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        return self.server.pid

    def prepare(self, clients: int) -> None:
        """One-off setup before the first start (database rows, ...)."""

    def start(self) -> None:
        self.server.start()

    def stop(self) -> float:
        return self.server.stop()

    def close(self) -> None:
        """Stop for good and remove what the run left behind."""
        self.server.stop()

    def ws_path(self) -> str:
        raise NotImplementedError

    def helper_pids(self) -> list[int]:
        """Other processes doing this server's work (Redis for the Channels app)."""
        return []

    def channel(self, name: str) -> str:
        """The channel/group name this server uses for a benchmark channel name."""
        return name

    def configure(self, load: LoadGen, **extra: object) -> None:
        load.configure(port=self.port, mode=self.mode, path=self.ws_path(), **extra)

    def publisher(self, channel: str) -> Publisher:
        raise NotImplementedError

    def publish(self, pub: Publisher, channel: str, data: bytes) -> None:
        pub.post(data)

    def close_all(self, channel: str, clients: int) -> None:
        raise NotImplementedError


class HeraldTarget(Target):
    name = HERALD
    mode = MODE_CENTRIFUGO
    token = "jwt"

    def __init__(self, workdir: Path, name: str = HERALD, *, socket_activated: bool = False, **config: object) -> None:
        self.name = name
        # With socket_activated the benchmark holds the listening socket, as systemd would.
        self.listener = socket.create_server(("127.0.0.1", free_port()), backlog=4096) if socket_activated else None
        self.redis_prefix = str(config.get("redis_prefix", ""))
        self.config_path = workdir / "herald.json"
        self.config_path.write_text(json.dumps(herald_config(**config)))
        super().__init__(workdir)

    def _server(self, port: int = 0) -> ServerProcess:
        path = self.config_path
        if self.listener is not None:
            port = self.listener.getsockname()[1]
        return ServerProcess(
            "herald",
            lambda port: [
                sys.executable,
                "-m",
                "herald.gateway",
                "serve",
                "--config",
                str(path),
                "--port",
                str(port),
                "--address",
                "127.0.0.1",
            ],
            port=port,
            workdir=self.workdir,
            listener=self.listener,
        )

    def ws_path(self) -> str:
        return "/connection/websocket"

    def start_successor(self) -> ServerProcess:
        """The first half of a zero-downtime restart: a new process on the same port
        (``reuse_port``), healthy, while the old one still serves. Returns the old one."""
        old = self.server
        self.server = self._server(old.port)
        self.server.start()
        return old

    def close(self) -> None:
        super().close()
        if self.listener is not None:
            self.listener.close()
        if self.redis_prefix:
            delete_redis_keys(HERALD_REDIS_URL, self.redis_prefix)

    def helper_pids(self) -> list[int]:
        if not self.redis_prefix:
            return []
        pid = redis_pid(HERALD_REDIS_URL)
        return [pid] if pid else []

    def publisher(self, channel: str) -> Publisher:
        return Publisher(self.port, "/api/publish", {"X-API-Key": API_KEY})

    def publish(self, pub: Publisher, channel: str, data: bytes) -> None:
        body = b'{"channel":' + msgspec.json.encode(channel) + b',"data":' + data + b"}"
        reply = pub.post(body)
        if b'"error"' in reply:
            raise RuntimeError(f"publish failed: {reply[:200]!r}")

    def close_all(self, channel: str, clients: int) -> None:
        """Server API ``disconnect`` of every user, in one ``batch``, with a reconnect code."""
        users = [f"u{i}" for i in range(clients)] + ["sdk-probe"]
        commands = [{"disconnect": {"user": u, "disconnect": {"code": 3100, "reason": "benchmark"}}} for u in users]
        pub = Publisher(self.port, "/api/batch", {"X-API-Key": API_KEY})
        try:
            pub.post(msgspec.json.encode({"commands": commands}), timeout=120)
        finally:
            pub.close()


class ThinTarget(Target):
    name = THIN

    def _server(self) -> ServerProcess:
        return ServerProcess(
            "thin",
            lambda port: [sys.executable, "-m", "bench.thin_server", "--port", str(port)],
            workdir=self.workdir,
        )

    def ws_path(self) -> str:
        return "/ws"

    def publisher(self, channel: str) -> Publisher:
        return Publisher(self.port, "/broadcast", {})

    def close_all(self, channel: str, clients: int) -> None:
        pub = Publisher(self.port, "/close", {})
        try:
            pub.post(b"")
        finally:
            pub.close()


class ChannelsTarget(Target):
    name = CHANNELS
    token = "db"

    def __init__(self, workdir: Path) -> None:
        self.db_path = workdir / "channels.sqlite3"
        self.env = {
            "DJANGO_SETTINGS_MODULE": "bench.channels_app.settings",
            "BENCH_CHANNELS_DB": str(self.db_path),
            "BENCH_CHANNELS_REDIS": CHANNELS_REDIS,
        }
        super().__init__(workdir)

    def _server(self) -> ServerProcess:
        return ServerProcess(
            "daphne",
            lambda port: [
                sys.executable,
                "-m",
                "daphne",
                "-v",
                "0",
                "-e",
                f"tcp:port={port}:interface=127.0.0.1:backlog=4096",
                "bench.channels_app.asgi:application",
            ],
            health_path="/health/",
            env=self.env,
            workdir=self.workdir,
        )

    def prepare(self, clients: int) -> None:
        import os
        import subprocess

        note(f"channels: creating {clients:,} users and tokens in SQLite")
        subprocess.run(
            [sys.executable, "-m", "bench.channels_app.setup_db", "--tokens", str(clients)],
            env={**os.environ, **self.env},
            check=True,
        )
        flush_redis_db(CHANNELS_REDIS)

    def ws_path(self) -> str:
        return "/ws/{channel}/?token={token}"

    def helper_pids(self) -> list[int]:
        pid = redis_pid(CHANNELS_REDIS)
        return [pid] if pid else []

    def channel(self, name: str) -> str:
        return name.replace(":", ".")  # group names allow only [a-zA-Z0-9_.-]

    def publisher(self, channel: str) -> Publisher:
        return Publisher(self.port, f"/publish/{channel}/", {})

    def close_all(self, channel: str, clients: int) -> None:
        pub = Publisher(self.port, f"/close/{channel}/", {})
        try:
            pub.post(b"")
        finally:
            pub.close()


def flush_redis_db(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()


def redis_pid(url: str) -> int:
    """The Redis server's pid when it runs on this machine (its CPU is part of the Channels app's cost)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        pid = int(client.info("server").get("process_id", 0))
    except (redis.RedisError, ValueError):
        return 0
    finally:
        client.close()
    return pid if Path(f"/proc/{pid}/stat").exists() else 0


def make_target(name: str, workdir: Path, **herald_overrides: Any) -> Target:
    workdir.mkdir(parents=True, exist_ok=True)
    supervised = name in (HERALD_SUPERVISED, HERALD_REDIS_SUPERVISED)
    if name in (HERALD, HERALD_SUPERVISED):
        return HeraldTarget(workdir, name, socket_activated=supervised, **herald_overrides)
    if name in (HERALD_REDIS, HERALD_REDIS_SUPERVISED):
        prefix = f"herald-bench-{os.getpid()}-{int(time.time())}"
        return HeraldTarget(
            workdir,
            name,
            socket_activated=supervised,
            engine="redis",
            redis_address=HERALD_REDIS_URL,
            redis_prefix=prefix,
            **herald_overrides,
        )
    if name == THIN:
        return ThinTarget(workdir)
    if name == CHANNELS:
        return ChannelsTarget(workdir)
    raise ValueError(f"unknown target {name!r}")

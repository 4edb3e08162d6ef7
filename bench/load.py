"""The load generator: thousands of lean WebSocket clients spread over worker processes.

A worker process runs one uvloop event loop with many :class:`LeanClient` objects. A lean
client is a bare ``asyncio.Protocol`` with hand-written framing: it sends the upgrade request
itself, masks its few outgoing frames with the all-zero key (legal per RFC 6455 §5.3, and the
payload then needs no XOR), and parses server frames with a few slices. It speaks just enough
of a server's protocol:

* ``centrifugo``: one frame ``connect{token}`` + ``subscribe{channel}`` (as the JS SDK sends on
  open), ``{}`` pong to each ``{}`` ping when the connect reply said ``pong:true``, stream
  position kept from every publication and sent back with ``recover:true`` on resubscribe.
* ``raw``: the Channels app and the thin server push the publication payload as a text frame;
  being connected is being subscribed.

Every publication payload carries ``"s":<seq>,"t":<unix time>``: clients count deliveries per
sequence number (losses and duplicates) and the publish→receive latency. After a drop clients
reconnect with the SDK's full-jitter backoff (spec §11.1):
``delay = min(max, min + random(0, min(max, min * 2^step)))``, step reset by a connect reply.

The orchestrating process drives the workers through :class:`LoadGen` (a pipe per worker).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import signal
import threading
import time
import zlib
from array import array
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import msgspec

from bench.common import WorkerPool, client_socket, raise_fd_limit, self_cpu, source_address

MODE_CENTRIFUGO: Final = "centrifugo"
MODE_RAW: Final = "raw"

IDLE, CONNECTING, OPEN, SUBSCRIBED = 0, 1, 2, 3

_SEQ: Final = re.compile(rb'"s":(\d+),"t":([0-9.]+)')
_WS_KEY: Final = b"dGhlIHNhbXBsZSBub25jZQ=="
_PONG: Final = b"\x81\x82\x00\x00\x00\x00{}"
_json_decode: Final = msgspec.json.decode


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame with the all-zero masking key (so the payload goes as is)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


def sdk_backoff(step: int, min_delay: float, max_delay: float) -> float:
    """centrifuge-js ``backoff()``: full jitter, step capped at 31 (spec §11.1)."""
    step = min(step, 31)
    return min(max_delay, min_delay + random.uniform(0, min(max_delay, min_delay * 2**step)))


@dataclass
class WorkerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    mode: str = MODE_CENTRIFUGO
    path: str = "/connection/websocket"  # may use {channel} and {token}
    reconnect: bool = True
    min_delay: float = 0.5  # centrifuge-js minReconnectDelay
    max_delay: float = 20.0  # centrifuge-js maxReconnectDelay
    timeout: float = 5.0  # centrifuge-js timeout: socket open + connect reply
    recover: bool = True  # resubscribe with recover/offset/epoch when the stream has an epoch
    # Herald's other transports and encodings (bench/transports.py): "websocket", "sse" or
    # "http_stream"; Protobuf frames on WebSocket; subscriptions made by the server at connect
    # (token_channels "subscribe": the connect reply is the subscription, no subscribe command).
    transport: str = "websocket"
    protobuf: bool = False
    server_side: bool = False
    deflate: bool = False  # offer permessage-deflate and inflate compressed messages
    # A Cookie header for the upgrade request, "{i}" = the client's index (bench/proxy_storm.py:
    # each client carries its own session cookie, and no token, for the connect proxy).
    cookie: str = ""


class LeanClient(asyncio.Protocol):
    __slots__ = (
        "buf",
        "channel",
        "dropped",
        "epoch",
        "fail_kind",
        "index",
        "offset",
        "pong",
        "request",
        "seen",
        "state",
        "step",
        "stopped",
        "task",
        "timer",
        "token",
        "transport",
        "w",
    )

    def __init__(self, worker: Worker, index: int, token: str, channel: str) -> None:
        self.w = worker
        self.index = index
        self.token = token
        self.channel = channel
        self.state = IDLE
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.buf = b""
        self.fail_kind = ""
        self.pong = False
        self.offset = 0
        self.epoch = ""
        self.step = 0
        self.dropped = False
        self.stopped = False
        self.seen = bytearray()
        cfg = worker.cfg
        path = cfg.path.format(channel=channel, token=token)
        if cfg.transport != "websocket":
            self.request = _stream_request(cfg, path, token)
            return
        subprotocol = b"Sec-WebSocket-Protocol: centrifuge-protobuf\r\n" if cfg.protobuf else b""
        if cfg.deflate:
            subprotocol += b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        if cfg.cookie:
            subprotocol += f"Cookie: {cfg.cookie.format(i=index)}\r\n".encode()
        self.request = (
            (
                f"GET {path} HTTP/1.1\r\nHost: {cfg.host}:{cfg.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: "
            ).encode()
            + _WS_KEY
            + b"\r\nSec-WebSocket-Version: 13\r\n"
            + subprotocol
            + b"\r\n"
        )

    # --- attempts

    def start_attempt(self) -> None:
        if self.stopped or self.state != IDLE:
            return
        w = self.w
        w.attempts += 1
        self.state = CONNECTING
        self.fail_kind = ""
        self.buf = b""
        self.timer = w.loop.call_later(w.cfg.timeout, self._timed_out)
        self.task = w.loop.create_task(self._open())

    async def _open(self) -> None:
        w = self.w
        sock = client_socket(source_address(w.index, w.next_source()))
        try:
            await w.loop.sock_connect(sock, (w.cfg.host, w.cfg.port))
            await w.loop.create_connection(lambda: self, sock=sock)
        except asyncio.CancelledError:
            sock.close()
            self._ended()
        except OSError as exc:
            sock.close()
            self.fail_kind = "refused" if isinstance(exc, ConnectionRefusedError) else f"os:{exc.errno}"
            self._ended()
        finally:
            self.task = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.state == SUBSCRIBED:
            return
        self.fail_kind = "timeout"
        if self.transport is not None:
            self.transport.abort()
        elif self.task is not None:
            self.task.cancel()

    def _ended(self) -> None:
        """The attempt or the session is over: count it and schedule a reconnect."""
        w = self.w
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        was = self.state
        self.state = IDLE
        self.transport = None
        self.buf = b""
        if was == SUBSCRIBED:
            w.subscribed -= 1
            w.drops += 1
            self.dropped = True
        else:
            w.failures[self.fail_kind or "closed"] += 1
            w.attempt_done()
        if w.cfg.reconnect and not self.stopped:
            delay = sdk_backoff(self.step, w.cfg.min_delay, w.cfg.max_delay)
            self.step += 1
            w.loop.call_later(delay, self.start_attempt)
        else:
            self.stopped = True

    def stop(self) -> None:
        self.stopped = True
        if self.transport is not None:
            self.transport.abort()
        elif self.task is not None:
            self.task.cancel()

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()

    def data_received(self, data: bytes) -> None:
        if self.state == CONNECTING:
            buf = self.buf + data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[9:12]
            streaming = self.w.cfg.transport != "websocket"
            if status != (b"200" if streaming else b"101"):
                self._fail("http_" + status.decode(errors="replace"))
                return
            self.state = OPEN
            self.buf = b""
            data = buf[end + 4 :]
            if streaming:
                self._stream_data(data)
                return
            self._opened()
            if not data:
                return
        if self.w.cfg.transport != "websocket":
            self._stream_data(data)
            return
        buf = self.buf + data if self.buf else data
        pos, n = 0, len(buf)
        now = 0.0
        while n - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            if b1 < 126:
                start = pos + 2
                length = b1
            elif b1 == 126:
                if n - pos < 4:
                    break
                start = pos + 4
                length = int.from_bytes(buf[pos + 2 : start], "big")
            else:
                if n - pos < 10:
                    break
                start = pos + 10
                length = int.from_bytes(buf[pos + 2 : start], "big")
            end = start + length
            if end > n:
                break
            opcode = buf[pos] & 0x0F
            payload = buf[start:end]
            if buf[pos] & 0x40:  # RSV1: compressed, each message on its own (no context takeover)
                payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            pos = end
            if opcode <= 2:
                if not now:
                    now = time.time()
                self._message(payload, now)
            elif opcode == 9:
                self.w.pings += 1
                self._send(client_frame(payload, 0xA))
            elif opcode == 8:
                self._closed_by_server(payload)
                return
        self.buf = buf[pos:]

    # --- protocol

    def _send(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(frame)

    def _fail(self, kind: str) -> None:
        self.fail_kind = kind
        if self.transport is not None:
            self.transport.close()

    def _closed_by_server(self, payload: bytes) -> None:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        self.w.close_codes[code] += 1
        if self.state != SUBSCRIBED:
            self.fail_kind = f"close_{code}"
        self._send(client_frame(payload[:2], 0x8))
        if self.transport is not None:
            self.transport.close()

    def _stream_data(self, data: bytes) -> None:
        """An HTTP stream (chunked): only whole messages are looked at; chunk-size lines never
        look like a message, so the bytes are scanned as they are."""
        buf = self.buf + data if self.buf else data
        end = buf.rfind(b"}\n")
        if end < 0:
            self.buf = buf
            return
        self.buf = buf[end + 2 :]
        done = buf[: end + 2]
        if self.state != SUBSCRIBED:
            if b'"connect"' in done and b'"error"' not in done:
                self._subscribed()
            elif b'"error"' in done or b'"disconnect"' in done:
                self._fail("connect_error")
                return
        now = time.time()
        for m in _SEQ.finditer(done):
            self._record(int(m[1]), float(m[2]), now)
        self.w.pings += done.count(b"data: {}\n") + done.count(b"\n{}\n")

    def _protobuf_message(self, payload: bytes, now: float) -> None:
        if payload == b"\x00":
            self.w.pings += 1
            if self.pong:
                self._send(client_frame(b"\x00", 2))
            return
        if self.state == SUBSCRIBED:
            for m in _SEQ.finditer(payload):  # JSON payloads ride in the bytes as they are
                self._record(int(m[1]), float(m[2]), now)
            return
        from centrifuge.protocol import client_pb2  # the official SDK's schema, for replies

        pos = 0
        while pos < len(payload):
            length, shift = 0, 0
            while True:
                byte = payload[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            reply = client_pb2.Reply.FromString(payload[pos : pos + length])
            pos += length
            if reply.HasField("error"):
                self._fail(f"reply_error_{reply.error.code}")
                return
            if reply.HasField("connect"):
                self.pong = reply.connect.pong
                self.step = 0
                if self.w.cfg.server_side:
                    self._subscribed()
            elif reply.HasField("subscribe"):
                self._subscribed()

    def _opened(self) -> None:
        if self.w.cfg.mode == MODE_RAW:
            self._subscribed()
            return
        if self.w.cfg.protobuf:
            from centrifuge.protocol import client_pb2

            commands = [client_pb2.Command(id=1)]
            commands[0].connect.token = self.token
            commands[0].connect.name = "bench"
            if not self.w.cfg.server_side:
                commands.append(client_pb2.Command(id=2))
                commands[1].subscribe.channel = self.channel
            self._send(client_frame(b"".join(_delimited(c.SerializeToString()) for c in commands), 2))
            return
        if self.w.cfg.server_side:
            self._send(client_frame(b'{"id":1,"connect":{"token":"' + self.token.encode() + b'","name":"bench"}}'))
            return
        sub: dict[str, Any] = {"channel": self.channel}
        if self.epoch and self.w.cfg.recover:
            sub.update(recover=True, offset=self.offset, epoch=self.epoch)
        frame = (
            b'{"id":1,"connect":{"token":"'
            + self.token.encode()
            + b'","name":"bench"}}\n{"id":2,"subscribe":'
            + msgspec.json.encode(sub)
            + b"}"
        )
        self._send(client_frame(frame))

    def _subscribed(self) -> None:
        self.state = SUBSCRIBED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.w.on_subscribed(self)

    def _message(self, payload: bytes, now: float) -> None:
        if self.w.cfg.protobuf:
            self._protobuf_message(payload, now)
            return
        if self.w.cfg.mode == MODE_RAW:
            m = _SEQ.search(payload)
            if m is not None:
                self._record(int(m[1]), float(m[2]), now)
            return
        for line in payload.split(b"\n") if b"\n" in payload else (payload,):
            if line == b"{}":
                self.w.pings += 1
                if self.pong:
                    self._send(_PONG)
            elif line.startswith(b'{"push"'):
                m = _SEQ.search(line)
                if m is not None:
                    self._record(int(m[1]), float(m[2]), now)
                at = line.rfind(b'"offset":')
                if at > 0:
                    self.offset = int(line[at + 9 : line.index(b"}", at)])
                elif b'"unsubscribe"' in line:
                    self.w.unsubscribes += 1
            elif line.startswith(b'{"id"'):
                self._reply(_json_decode(line), now)

    def _reply(self, reply: dict[str, Any], now: float) -> None:
        error = reply.get("error")
        if error is not None:
            which = "connect" if reply.get("id") == 1 else "subscribe"
            self._fail(f"{which}_error_{error.get('code')}")
            return
        connect = reply.get("connect")
        if connect is not None:
            self.pong = bool(connect.get("pong"))
            self.step = 0  # the SDK resets its backoff on a connect reply
            if self.w.cfg.server_side:
                self._subscribed()
            return
        result = reply.get("subscribe")
        if result is None:
            return
        w = self.w
        if result.get("was_recovering"):
            w.recovered["recovered" if result.get("recovered") else "not_recovered"] += 1
        epoch = result.get("epoch", "")
        if self.epoch and epoch and epoch != self.epoch:
            w.epoch_changes += 1
        self.epoch = epoch
        self.offset = result.get("offset", 0)
        for pub in result.get("publications", ()):
            data = pub.get("data") or {}
            if "s" in data:
                self._record(int(data["s"]), float(data["t"]), now)
                w.recovered_pubs += 1
            self.offset = pub.get("offset", self.offset)
        self._subscribed()

    def _record(self, seq: int, sent: float, now: float) -> None:
        w = self.w
        w.received += 1
        w.last_at = now
        w.latencies.append((now - sent) * 1000.0)
        seen = self.seen
        if seq >= len(seen):
            seen.extend(bytes(seq + 64 - len(seen)))
        count = seen[seq]
        if count < 255:
            seen[seq] = count + 1


@dataclass
class Worker:
    """One load-generator process: its clients and the counters the orchestrator reads."""

    conn: multiprocessing.connection.Connection
    index: int
    loop: asyncio.AbstractEventLoop
    cfg: WorkerConfig = field(default_factory=WorkerConfig)
    clients: list[LeanClient] = field(default_factory=list)
    latencies: array[float] = field(default_factory=lambda: array("f"))
    received: int = 0
    pings: int = 0
    attempts: int = 0
    drops: int = 0
    subscribed: int = 0
    unsubscribes: int = 0
    epoch_changes: int = 0
    recovered_pubs: int = 0
    last_at: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[int] = field(default_factory=Counter)
    recovered: Counter[str] = field(default_factory=Counter)
    back_times: list[float] = field(default_factory=list)
    first_times: list[float] = field(default_factory=list)
    sources: int = 0
    pending: deque[LeanClient] = field(default_factory=deque)
    in_flight: int = 0
    concurrency: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def next_source(self) -> int:
        self.sources += 1
        return self.sources

    # --- client events

    def on_subscribed(self, client: LeanClient) -> None:
        self.subscribed += 1
        now = time.time()
        if client.dropped:
            client.dropped = False
            self.back_times.append(now)
        else:
            self.first_times.append(now)
        self.attempt_done()

    def attempt_done(self) -> None:
        if self.concurrency and self.in_flight > 0:
            self.in_flight -= 1
        while self.pending and (not self.concurrency or self.in_flight < self.concurrency):
            client = self.pending.popleft()
            self.in_flight += 1
            client.start_attempt()

    # --- operations (orchestrator → worker)

    async def op_configure(self, **cfg: Any) -> dict[str, Any]:
        for key, value in cfg.items():
            setattr(self.cfg, key, value)
        return {}

    async def op_connect(
        self,
        indices: Sequence[int],
        channel: str,
        token: str = "none",
        secret: str = "",
        concurrency: int = 256,
        wait: float = 120.0,
    ) -> dict[str, Any]:
        """Create clients and connect them, ``concurrency`` handshakes at a time, waiting up to ``wait`` s."""
        new = [LeanClient(self, i, _token(token, i, secret, channel.format(i=i)), channel.format(i=i)) for i in indices]
        self.clients.extend(new)
        target = self.subscribed + len(new)
        self.concurrency = concurrency
        self.pending.extend(new)
        self.attempt_done()
        deadline = time.monotonic() + wait
        while self.subscribed < target and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if all(c.state == SUBSCRIBED or c.stopped for c in new):
                break  # every new client either subscribed or gave up
        self.concurrency = 0
        return {"subscribed": self.subscribed, "target": target}

    async def op_stats(self, times: bool = False) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "clients": len(self.clients),
            "subscribed": self.subscribed,
            "received": self.received,
            "pings": self.pings,
            "attempts": self.attempts,
            "drops": self.drops,
            "unsubscribes": self.unsubscribes,
            "epoch_changes": self.epoch_changes,
            "recovered_pubs": self.recovered_pubs,
            "failures": dict(self.failures),
            "close_codes": dict(self.close_codes),
            "recovered": dict(self.recovered),
            "back": len(self.back_times),
            "last_at": self.last_at,
            "cpu": self_cpu(),
        }
        if times:
            stats["back_times"] = list(self.back_times)
            stats["first_times"] = list(self.first_times)
        return stats

    async def op_reset(self) -> dict[str, Any]:
        self.latencies = array("f")
        self.received = self.pings = self.attempts = self.drops = self.unsubscribes = 0
        self.epoch_changes = self.recovered_pubs = 0
        self.last_at = 0.0
        self.failures.clear()
        self.close_codes.clear()
        self.recovered.clear()
        self.back_times = []
        self.first_times = []
        for client in self.clients:
            client.dropped = False
        return {}

    async def op_latencies(self) -> dict[str, Any]:
        return {"latencies": self.latencies.tobytes()}

    async def op_check(self, lo: int, hi: int) -> dict[str, Any]:
        """Deliveries of sequence numbers lo..hi-1 per client: losses, duplicates."""
        want = hi - lo
        lost = dups = clients_with_loss = 0
        for client in self.clients:
            got = client.seen[lo:hi]
            if len(got) < want:
                got = got + bytes(want - len(got))
            zeros = got.count(0)
            lost += zeros
            dups += sum(got) - (want - zeros)
            if zeros:
                clients_with_loss += 1
        return {"lost": lost, "dups": dups, "clients_with_loss": clients_with_loss}

    async def op_drop_all(self) -> dict[str, Any]:
        """Close every client's socket (no close handshake); they reconnect if configured."""
        for client in self.clients:
            if client.transport is not None:
                client.transport.abort()
        return {}

    async def op_quit(self) -> dict[str, Any]:
        for client in self.clients:
            client.stop()
        self._stop.set()
        return {}

    # --- plumbing

    async def serve(self) -> None:
        # Commands are read by a thread: the pipe must stay blocking, because a large reply
        # (the latency array) written to a non-blocking pipe fails half-way.
        reader = threading.Thread(target=self._read_commands, name="commands", daemon=True)
        reader.start()
        await self._stop.wait()
        await asyncio.sleep(0.05)

    def _read_commands(self) -> None:
        while True:
            try:
                op, kwargs = self.conn.recv()
            except (EOFError, OSError):
                self.loop.call_soon_threadsafe(self._stop.set)
                return
            self.loop.call_soon_threadsafe(self._start_command, op, kwargs)
            if op == "quit":
                return

    def _start_command(self, op: str, kwargs: dict[str, Any]) -> None:
        self.loop.create_task(self._run(op, kwargs))

    async def _run(self, op: str, kwargs: dict[str, Any]) -> None:
        try:
            result = await getattr(self, f"op_{op}")(**kwargs)
        except Exception as exc:  # reported to the orchestrator, which raises it
            result = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            self.conn.send(result)
        except OSError:
            self._stop.set()  # the orchestrator is gone


def _delimited(body: bytes) -> bytes:
    prefix = bytearray()
    n = len(body)
    while n > 0x7F:
        prefix.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(prefix) + bytes((n,)) + body


def _stream_request(cfg: WorkerConfig, path: str, token: str) -> bytes:
    """The request that opens an SSE (GET, connect in the query) or HTTP-streaming (POST) session."""
    from urllib.parse import quote

    connect = b'{"id":1,"connect":{"token":"' + token.encode() + b'","name":"bench"}}'
    host = f"Host: {cfg.host}:{cfg.port}\r\n".encode()
    if cfg.transport == "sse":
        return f"GET {path}?cf_connect={quote(connect)} HTTP/1.1\r\n".encode() + host + b"\r\n"
    return (
        f"POST {path} HTTP/1.1\r\n".encode()
        + host
        + f"Content-Type: application/json\r\nContent-Length: {len(connect)}\r\n\r\n".encode()
        + connect
    )


def _token(kind: str, index: int, secret: str, channel: str) -> str:
    if kind == "jwt":
        from herald.tokens import mint_connection_token

        return mint_connection_token(secret, f"u{index}", channels=[channel], ttl=3600)
    if kind == "db":
        return f"tok{index}"
    return ""


def _worker_main(conn: multiprocessing.connection.Connection, index: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when workers end
    raise_fd_limit()
    import uvloop

    async def main() -> None:
        worker = Worker(conn, index, asyncio.get_running_loop())
        await worker.serve()

    uvloop.run(main())


class LoadGen:
    """The orchestrator's handle on the worker processes."""

    def __init__(self, workers: int) -> None:
        self._pool = WorkerPool(workers, _worker_main, "loadgen")
        self.total = 0

    @property
    def workers(self) -> int:
        return len(self._pool)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._pool.procs if p.pid is not None]

    def call(self, op: str, per_worker: Sequence[dict[str, Any]] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        shares = per_worker if per_worker is not None else [kwargs] * self.workers
        return self._pool.call("load generator", op, shares)

    def configure(self, **cfg: Any) -> None:
        self.call("configure", **cfg)

    def connect(
        self,
        count: int,
        channel: str,
        token: str = "none",
        secret: str = "",
        concurrency: int = 256,
        timeout: float = 180.0,
    ) -> int:
        """Add ``count`` clients (spread over the workers); return how many are subscribed in all."""
        start = self.total
        per = [
            {
                "indices": list(range(start + w, start + count, self.workers)),
                "channel": channel,
                "token": token,
                "secret": secret,
                "concurrency": max(1, concurrency // self.workers),
                "wait": timeout,
            }
            for w in range(self.workers)
        ]
        self.total += count
        return sum(r["subscribed"] for r in self.call("connect", per))

    def stats(self, times: bool = False) -> dict[str, Any]:
        replies = self.call("stats", times=times)
        total: dict[str, Any] = {}
        for reply in replies:
            for key, value in reply.items():
                if isinstance(value, dict):
                    bucket = total.setdefault(key, Counter())
                    bucket.update(value)
                elif isinstance(value, list):
                    total.setdefault(key, []).extend(value)
                elif key.endswith("_at"):
                    total[key] = max(total.get(key, 0.0), value)
                else:
                    total[key] = total.get(key, 0) + value
        return total

    def reset(self) -> None:
        self.call("reset")

    def latencies(self) -> list[float]:
        values: list[float] = []
        for reply in self.call("latencies"):
            arr = array("f")
            arr.frombytes(reply["latencies"])
            values.extend(arr)
        values.sort()
        return values

    def check(self, lo: int, hi: int) -> dict[str, int]:
        total: Counter[str] = Counter()
        for reply in self.call("check", lo=lo, hi=hi):
            total.update(reply)
        return {"lost": total["lost"], "dups": total["dups"], "clients_with_loss": total["clients_with_loss"]}

    def drain(self, expected: int, stall: float = 10.0, limit: float = 300.0) -> dict[str, Any]:
        """Stats once ``expected`` messages arrived, or once nothing more arrived for ``stall``
        seconds (or ``limit`` passed): what a delivery phase waits for before it is measured."""
        last, last_change, t0 = -1, time.monotonic(), time.monotonic()
        while True:
            stats = self.stats()
            if stats["received"] >= expected:
                return stats
            if stats["received"] != last:
                last, last_change = stats["received"], time.monotonic()
            elif time.monotonic() - last_change > stall or time.monotonic() - t0 > limit:
                return stats
            time.sleep(0.05)

    def wait_for(self, key: str, target: int, timeout: float, interval: float = 0.05) -> tuple[bool, float]:
        """Poll until the summed counter ``key`` reaches ``target``; return (reached, seconds waited)."""
        t0 = time.monotonic()
        while True:
            value = self.stats()[key]
            if value >= target:
                return True, time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                return False, time.monotonic() - t0
            time.sleep(interval)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> LoadGen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def workers_for(clients: int) -> int:
    """Two workers share the 2 cores with the server; more only for the descriptor limit."""
    return max(2, math.ceil(clients / 8000), min(4, os.cpu_count() or 2) if clients > 20000 else 0)

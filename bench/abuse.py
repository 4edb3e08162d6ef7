"""Memory under abuse: a flood of connections that each send one malformed frame.

N abusive clients (default 10,000), spread over worker processes, each open a WebSocket to
Herald and send one frame that is not the protocol's JSON: half of them first, half after a
valid ``connect`` (so a registered session is torn down too). Every one must be closed with
3501 "bad request". The frames cycle through the kinds of docs/security.md "Hostile input":
truncated JSON, bytes that are not UTF-8 (text and binary frames), wrong types, out-of-range
numbers, a lone surrogate escape, embedded JSON nested past the decoder's depth, blank lines.
Meanwhile one subscriber receives a steady stream of publications through the HTTP API.

Two storms run one after the other. Printed, from /proc of the Herald process: RSS before the
first storm (after a warm-up round), its peak during each storm, and after each storm once the
gateway holds no more abusive sockets; the growth each storm left behind (a leak would grow
with every storm); Herald's CPU per abusive connection; the close codes the abusers saw; and
the subscriber's deliveries (lost and duplicated must be 0).

    python -m bench.abuse --clients 10000
    python -m bench.abuse --clients 10000 --concurrency 2000
    python -m bench.abuse --quick

The abusers share one valid token (one abusive user): distinct tokens would also fill the
verified-token cache, which is bounded by ``token_cache_size`` and is not a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, cast

from bench.common import (
    CpuMeter,
    WorkerPool,
    append_results,
    client_socket,
    fmt,
    install_signal_cleanup,
    note,
    percentile,
    proc_rss,
    raise_fd_limit,
    source_address,
    table,
)
from bench.load import LoadGen, client_frame
from bench.targets import HERALD, SECRET, Publisher, Target, make_target, payload

CHANNEL: Final = "abuse-subscriber"
_WS_KEY: Final = b"dGhlIHNhbXBsZSBub25jZQ=="
_TEXT, _BINARY = 1, 2
# What an abuser sends (opcode, payload): each is a protocol violation (3501) before or after
# connect. Nested JSON is 3,000 levels deep: past the decoder, well under the 64 KiB limit.
MALFORMED: Final[tuple[tuple[int, bytes], ...]] = (
    (_TEXT, b'{"id":2,"subscribe":{"channel":"abuse"'),
    (_TEXT, b'{"id":2,"subscribe":{"channel":"a\xffb"}}'),
    (_BINARY, b'{"id":2,"publish":{"channel":"abuse","data":{"t":"\xc0\xaf"}}}'),
    (_TEXT, b'{"id":2,"subscribe":{"channel":42}}'),
    (_TEXT, b'{"id":4294967296,"presence":{"channel":"abuse"}}'),
    (_TEXT, b'{"id":2,"history":{"channel":"abuse","since":{"offset":-1}}}'),
    (_TEXT, b'{"id":2,"subscribe":{"channel":"a\\ud800b"}}'),
    (_TEXT, b'{"id":2,"publish":{"channel":"abuse","data":' + b"[" * 3000 + b"]" * 3000 + b"}}"),
    (_TEXT, b'{"id":2,"rpc":{}}\n\n{"id":3,"rpc":{}}'),
    (_BINARY, bytes(range(256))),
)


# --- the abusers (worker processes)


class Abuser(asyncio.Protocol):
    """One connection: upgrade, optionally connect, one malformed frame, then wait for the close."""

    __slots__ = ("buf", "connect_frame", "done", "frame", "opcode", "opened", "outcome", "request", "transport")

    def __init__(
        self, request: bytes, connect_frame: bytes | None, malformed: tuple[int, bytes], done: asyncio.Future[str]
    ) -> None:
        self.request = request
        self.connect_frame = connect_frame
        self.opcode, self.frame = malformed
        self.done = done
        self.buf = b""
        self.opened = False
        self.outcome = ""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.outcome or ("closed_without_close_frame" if self.opened else "no_upgrade"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if not self.opened:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if buf[9:12] != b"101":
                self._finish("http_" + buf[9:12].decode(errors="replace"))
                return
            self.opened = True
            buf = buf[end + 4 :]
            if self.connect_frame is not None:
                self._send(self.connect_frame, _TEXT)
            else:
                self._send(self.frame, self.opcode)
        pos = 0
        while len(buf) - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            start = pos + 2 + (2 if b1 == 126 else 8 if b1 == 127 else 0)
            if len(buf) < start:
                break
            length = b1 if b1 < 126 else int.from_bytes(buf[pos + 2 : start], "big")
            if len(buf) < start + length:
                break
            opcode, body = buf[pos] & 0x0F, buf[start : start + length]
            pos = start + length
            if opcode == 8:
                code = int.from_bytes(body[:2], "big") if len(body) >= 2 else 1005
                self._send(body[:2], 8)  # answer the close handshake
                self._finish(f"close_{code}")
                return
            if opcode == _TEXT and self.connect_frame is not None and body.startswith(b'{"id":1,'):
                if b'"connect"' not in body:
                    self._finish("connect_refused")
                    return
                self.connect_frame = None
                self._send(self.frame, self.opcode)
        self.buf = buf[pos:]

    def _send(self, data: bytes, opcode: int) -> None:
        if self.transport is not None:
            self.transport.write(client_frame(data, opcode))

    def _finish(self, outcome: str) -> None:
        self.outcome = outcome
        if self.transport is not None:
            self.transport.close()


async def _storm(
    worker: int, host: str, port: int, indices: Sequence[int], concurrency: int, token: str, patience: float
) -> dict[str, int]:
    """Run this worker's share of abusers, ``concurrency`` at a time; count their outcomes."""
    loop = asyncio.get_running_loop()
    outcomes: Counter[str] = Counter()
    request = (
        (
            f"GET /connection/websocket HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: "
        ).encode()
        + _WS_KEY
        + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    connect_frame = b'{"id":1,"connect":{"token":"' + token.encode() + b'","name":"abuse"}}'
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            done: asyncio.Future[str] = loop.create_future()
            abuser = Abuser(request, connect_frame if i % 2 else None, MALFORMED[i % len(MALFORMED)], done)
            sock = client_socket(source_address(worker, i))
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (host, port)), patience)
                await loop.create_connection(lambda: abuser, sock=sock)
                outcomes[await asyncio.wait_for(done, patience)] += 1
            except TimeoutError:
                outcomes["timeout"] += 1
                if abuser.transport is not None:
                    abuser.transport.abort()
                else:
                    sock.close()
            except OSError as exc:
                outcomes[f"os_{exc.errno}"] += 1
                sock.close()

    await asyncio.gather(*(one(i) for i in indices))
    return dict(outcomes)


def _abuser_main(conn: multiprocessing.connection.Connection, worker: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when workers end
    raise_fd_limit()
    import uvloop

    while True:
        try:
            op, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        if op == "quit":
            return
        try:
            result: dict[str, Any] = uvloop.run(_storm(worker, **kwargs))
        except Exception as exc:  # reported to the orchestrator, which raises it
            result = {"error": f"{type(exc).__name__}: {exc}"}
        conn.send(result)


class AbuseGen:
    """Worker processes that each run a share of a storm."""

    def __init__(self, workers: int) -> None:
        self._pool = WorkerPool(workers, _abuser_main, "abuser", first_index=100)
        self._next = 0  # abuser indices keep growing: each storm uses fresh source ports

    def storm(self, port: int, clients: int, concurrency: int, token: str, timeout: float = 30.0) -> Counter[str]:
        n = len(self._pool)
        start, self._next = self._next, self._next + clients
        shares = [
            {
                "host": "127.0.0.1",
                "port": port,
                "indices": list(range(start + w, start + clients, n)),
                "concurrency": max(1, concurrency // n),
                "token": token,
                "patience": timeout,
            }
            for w in range(n)
        ]
        total: Counter[str] = Counter()
        for reply in self._pool.call("abuser", "storm", shares):
            total.update(reply)
        return total

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> AbuseGen:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the orchestrator


class Stream(threading.Thread):
    """Publishes ``rate`` publications per second to the subscriber's channel until stopped."""

    def __init__(self, target: Target, channel: str, rate: float) -> None:
        super().__init__(name="publisher", daemon=True)
        self.target, self.channel, self.rate = target, channel, rate
        self.sent = 0
        self.failed = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        pub: Publisher = self.target.publisher(self.channel)
        t0 = time.monotonic()
        try:
            while not self._stop_event.is_set():
                delay = t0 + self.sent / self.rate - time.monotonic()
                if delay > 0 and self._stop_event.wait(delay):
                    break
                try:
                    self.target.publish(pub, self.channel, payload(self.sent + 1))
                    self.sent += 1
                except (OSError, RuntimeError):
                    self.failed += 1
        finally:
            pub.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


class RssPeak(threading.Thread):
    """Samples a process's RSS every 50 ms; keeps the highest."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss", daemon=True)
        self.pid = pid
        self.peak = proc_rss(pid)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, proc_rss(self.pid))

    def stop(self) -> int:
        self._stop_event.set()
        self.join(5)
        return self.peak


def open_sockets(pid: int) -> int:
    """Socket descriptors the process holds (listening socket included)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
    return count


def wait_for_sockets(pid: int, at_most: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = open_sockets(pid)
        if n <= at_most or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def run_abuse(clients: int, storms: int, concurrency: int, rate: float, settle: float, workdir: Path) -> dict[str, Any]:
    from herald.tokens import mint_connection_token

    target = make_target(HERALD, workdir / "abuse-herald")
    target.start()
    result: dict[str, Any] = {"clients": clients, "concurrency": concurrency, "rate": rate, "storms": []}
    try:
        pid = target.pid
        with LoadGen(1) as load, AbuseGen(max(2, math.ceil(clients / 8000))) as abusers:
            target.configure(load, reconnect=False)
            if load.connect(1, CHANNEL, token=target.token, secret=SECRET, timeout=30) != 1:
                raise RuntimeError(f"the subscriber did not subscribe: {load.stats()['failures']}")
            token = mint_connection_token(SECRET, "abuser", ttl=3600)
            stream = Stream(target, CHANNEL, rate)
            stream.start()
            while stream.sent == 0 and stream.is_alive():
                time.sleep(0.01)
            baseline_sockets = open_sockets(pid)  # listening, the subscriber, the publisher's keep-alive
            warm = abusers.storm(target.port, min(1000, clients), concurrency, token)
            note(f"warm-up round: {dict(warm)}")
            wait_for_sockets(pid, baseline_sockets)
            time.sleep(settle)
            rss_before = proc_rss(pid)
            result["rss_before"] = rss_before
            result["sockets_before"] = baseline_sockets
            previous = rss_before
            for n in range(1, storms + 1):
                peak = RssPeak(pid)
                peak.start()
                meter = CpuMeter([pid]).start()
                t0 = time.monotonic()
                outcomes = abusers.storm(target.port, clients, concurrency, token)
                took = time.monotonic() - t0
                sockets = wait_for_sockets(pid, baseline_sockets)
                cpu = meter.stop()
                time.sleep(settle)
                rss_after = proc_rss(pid)
                storm = {
                    "storm": n,
                    "seconds": took,
                    "outcomes": dict(outcomes),
                    "cpu_s": cpu,
                    "cpu_us_per_conn": cpu * 1e6 / clients,
                    "rss_peak": peak.stop(),
                    "rss_after": rss_after,
                    "growth": rss_after - rss_before,
                    "growth_this_storm": rss_after - previous,
                    "sockets_after": sockets,
                }
                previous = rss_after
                result["storms"].append(storm)
                note(
                    f"storm {n}: {clients:,} abusers in {took:.1f}s, {dict(outcomes)}; RSS peak "
                    f"{storm['rss_peak'] / 2**20:.1f} MiB, after {rss_after / 2**20:.1f} MiB "
                    f"(+{storm['growth'] / 2**20:.2f} MiB since before); CPU {cpu:.2f}s"
                )
            stream.stop()
            deadline = time.monotonic() + 30
            while load.stats()["received"] < stream.sent and time.monotonic() < deadline:
                time.sleep(0.05)
            check = load.check(1, stream.sent + 1)
            lat = load.latencies()
            result["subscriber"] = {
                "published": stream.sent,
                "publish_failures": stream.failed,
                "received": load.stats()["received"],
                "lost": check["lost"],
                "dups": check["dups"],
                "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99),
                "max_ms": lat[-1] if lat else math.nan,
                "drops": load.stats()["drops"],
            }
        errors = target.server.log_grep("Traceback", "ERROR")
        result["server_errors"] = errors[:10]
        result["bad_frame_lines"] = len(target.server.log_grep("sent a bad frame"))
    finally:
        target.close()
    return result


def report(r: dict[str, Any]) -> str:
    mib = 2**20
    rows = [
        [
            str(s["storm"]),
            fmt(r["clients"]),
            fmt(s["seconds"], 1),
            ", ".join(f"{k} {v:,}" for k, v in sorted(s["outcomes"].items())),
            fmt(r["rss_before"] / mib),
            fmt(s["rss_peak"] / mib),
            fmt(s["rss_after"] / mib),
            f"{s['growth'] / mib:+.2f}",
            f"{s['growth_this_storm'] / mib:+.2f}",
            fmt(s["cpu_us_per_conn"], 0),
            f"{s['sockets_after']} (before {r['sockets_before']})",
        ]
        for s in r["storms"]
    ]
    storms = table(
        [
            "storm",
            "abusers",
            "s",
            "close codes seen by abusers",
            "RSS before MiB",
            "peak MiB",
            "after MiB",
            "growth MiB",
            "this storm MiB",
            "CPU-µs/abuser",
            "gateway sockets after",
        ],
        rows,
    )
    sub = r["subscriber"]
    subscriber = table(
        ["published", "received", "lost", "duplicated", "drops", "p50 ms", "p99 ms", "max ms", "publish failures"],
        [
            [
                fmt(sub["published"]),
                fmt(sub["received"]),
                fmt(sub["lost"]),
                fmt(sub["dups"]),
                fmt(sub["drops"]),
                fmt(sub["p50_ms"], 1),
                fmt(sub["p99_ms"], 1),
                fmt(sub["max_ms"], 1),
                fmt(sub["publish_failures"]),
            ]
        ],
    )
    worst = max((s["growth"] for s in r["storms"]), default=0) / mib
    verdict = "met" if worst < 15 else "**not met**"
    lines = [
        f"Abusers in flight at once: {r['concurrency']:,}; publications to the subscriber: {r['rate']:g}/s; "
        f"RSS growth goal < 15 MiB after the storm: worst {worst:+.2f} MiB, {verdict}.",
        "",
        storms,
        "",
        "The subscriber, through all of it:",
        "",
        subscriber,
        "",
        f"Gateway log: {r['bad_frame_lines']:,} 'sent a bad frame' lines; "
        + (f"errors: {r['server_errors']}" if r["server_errors"] else "no traceback, no ERROR line."),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="memory under abuse: malformed frames from many connections")
    parser.add_argument("--clients", type=int, default=10_000, help="abusive connections per storm")
    parser.add_argument("--storms", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=500, help="abusive connections in flight at once")
    parser.add_argument("--rate", type=float, default=100.0, help="publications per second to the subscriber")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before each RSS reading")
    parser.add_argument("--quick", action="store_true", help="1,000 abusers, one storm")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    install_signal_cleanup()
    raise_fd_limit()
    clients, storms = (1000, 1) if args.quick else (args.clients, args.storms)
    workdir = Path(tempfile.mkdtemp(prefix="bench-abuse-"))
    result = run_abuse(clients, storms, args.concurrency, args.rate, args.settle, workdir)
    text = report(result)
    print(text)
    if not args.no_record:
        append_results("Memory under abuse (malformed frames)", text)


if __name__ == "__main__":
    main()

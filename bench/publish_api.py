"""Publish API throughput: publications/s through ``POST /api/publish`` and through ``batch``.

Client processes keep C keep-alive connections busy, one request in flight per connection,
with pre-built request bytes and a hand-written response reader, so the client costs little.
Publications go to a channel without subscribers or history: this measures the API path
(HTTP, auth, decode, publish, reply). The server's own CPU seconds give the figure that does
not depend on how much CPU the clients took: publications per server CPU-second, i.e. per core.

The thin server (``/broadcast`` to no sockets) and the Channels app (a Django view doing
``group_send`` to an empty group) run the same single-publication workload; neither has a
batch call.

    python -m bench.publish_api --seconds 10
    python -m bench.publish_api --quick
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from bench.common import (
    CpuMeter,
    append_results,
    fmt,
    fmt_ratio,
    install_signal_cleanup,
    note,
    ratio,
    table,
)
from bench.targets import ALL_TARGETS, API_KEY, CHANNELS, HERALD, THIN, Target, make_target, payload

CHANNEL = "api_bench"


def _request(target: Target, batch: int) -> tuple[bytes, int]:
    """The request bytes and how many publications one request makes."""
    data = payload(0)
    if target.name == HERALD:
        if batch > 1:
            commands = [{"publish": {"channel": CHANNEL, "data": msgspec.Raw(data)}} for _ in range(batch)]
            path, body = "/api/batch", msgspec.json.encode({"commands": commands})
        else:
            path, body = "/api/publish", msgspec.json.encode({"channel": CHANNEL, "data": msgspec.Raw(data)})
        extra = f"X-API-Key: {API_KEY}\r\n"
    elif target.name == THIN:
        path, body, extra = "/broadcast", data, ""
    else:
        path, body, extra = f"/publish/{target.channel(CHANNEL)}/", data, ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body, max(1, batch)


class _ApiClient(asyncio.Protocol):
    """One keep-alive connection sending the same request again as soon as the reply is in."""

    def __init__(self, request: bytes, counts: list[int], until: float) -> None:
        self.request = request
        self.counts = counts  # [replies, errors]
        self.until = until
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self.transport is None:
            return
        if time.time() >= self.until:
            self.transport.close()
            return
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 : head.index(b"\r\n", at) if b"\r\n" in head[at:] else None].strip() or 0)
                total = end + 4 + length
            elif b"chunked" in head:
                stop = self.buf.find(b"\r\n0\r\n\r\n", end)
                if stop < 0:
                    stop = self.buf.find(b"0\r\n\r\n", end + 4)
                    if stop != end + 4:
                        return
                    total = stop + 5
                else:
                    total = stop + 7
            else:
                total = end + 4
            if len(self.buf) < total:
                return
            ok = self.buf[9:12] == b"200" and b'"error"' not in self.buf[end:total]
            self.buf = self.buf[total:]
            self.counts[0 if ok else 1] += 1
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.done.done():
            self.done.set_result(None)


def _client_process(port: int, request: bytes, conns: int, start_at: float, seconds: float, out: Any) -> None:
    import uvloop

    async def main() -> list[int]:
        counts = [0, 0]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        until = time.time() + seconds
        loop = asyncio.get_running_loop()
        clients = [_ApiClient(request, counts, until) for _ in range(conns)]
        for client in clients:
            await loop.create_connection(lambda c=client: c, "127.0.0.1", port)  # type: ignore[misc]
        await asyncio.wait([c.done for c in clients], timeout=seconds + 30)
        return counts

    out.put(uvloop.run(main()))


def measure(target: Target, batch: int, seconds: float, conns: int, procs: int) -> dict[str, Any]:
    request, per_request = _request(target, batch)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 1.5  # after the client processes have started
    workers = [
        ctx.Process(target=_client_process, args=(target.port, request, conns // procs, start_at, seconds, queue))
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    time.sleep(max(0.0, start_at - time.time()))
    meter = CpuMeter([target.pid]).start()
    helpers = CpuMeter(target.helper_pids()).start()
    time.sleep(seconds)
    cpu = meter.stop()
    helper_cpu = helpers.stop()
    replies = errors = 0
    for _ in workers:
        ok, bad = queue.get(timeout=seconds + 60)
        replies += ok
        errors += bad
    for w in workers:
        w.join(10)
    pubs = replies * per_request
    result: dict[str, Any] = {
        "target": target.name,
        "batch": batch,
        "requests": replies,
        "errors": errors,
        "pubs": pubs,
        "pubs_per_s": pubs / seconds,
        "cpu_s": cpu,
        "server_util": cpu / meter.wall,
        "pubs_per_cpu_s": pubs / cpu if cpu else math.nan,
        "helper_us_per_pub": helper_cpu * 1e6 / pubs if pubs and helpers.pids else math.nan,
    }
    note(
        f"{target.name} {'batch of ' + str(batch) if batch > 1 else 'single'}: {result['pubs_per_s']:,.0f} pubs/s "
        f"with the server at {result['server_util'] * 100:.0f}% of a core = "
        f"{result['pubs_per_cpu_s']:,.0f} pubs per server CPU-second, errors {errors}"
    )
    return result


def run_publish_api(
    name: str, workdir: Path, seconds: float, conns: int, procs: int, batch: int
) -> list[dict[str, Any]]:
    target = make_target(name, workdir / f"api-{name}")
    target.prepare(1)
    target.start()
    try:
        results = [measure(target, 1, seconds, conns, procs)]
        if name == HERALD:
            results.append(measure(target, batch, seconds, max(procs, conns // 8), procs))
    finally:
        target.close()
    return results


def report(results: list[dict[str, Any]]) -> str:
    single = {r["target"]: r for r in results if r["batch"] == 1}
    rows = []
    for r in results:
        thin = single.get(THIN, {})
        chan = single.get(CHANNELS, {})
        rows.append(
            [
                r["target"],
                "single" if r["batch"] == 1 else f"batch x {r['batch']}",
                fmt(r["pubs_per_s"]),
                f"{r['server_util'] * 100:.0f}%",
                fmt(r["pubs_per_cpu_s"]),
                fmt(r["helper_us_per_pub"], 1),
                fmt_ratio(ratio(r["pubs_per_cpu_s"], thin.get("pubs_per_cpu_s", math.nan))),
                fmt_ratio(ratio(r["pubs_per_cpu_s"], chan.get("pubs_per_cpu_s", math.nan))),
                f"{r['errors']:,}",
            ]
        )
    header = [
        "server",
        "request",
        "publications/s",
        "server CPU use",
        "pubs per server CPU-s (per core)",
        "+ Redis CPU-µs/pub",
        "x thin",
        "x Channels",
        "errors",
    ]
    return table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="publish API throughput")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--conns", type=int, default=32, help="keep-alive connections in all")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--batch", type=int, default=100, help="publications per batch request")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS))
    parser.add_argument("--quick", action="store_true", help="3 s per measurement")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    install_signal_cleanup()
    seconds = 3.0 if args.quick else args.seconds
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    results: list[dict[str, Any]] = []
    for name in args.targets.split(","):
        results.extend(run_publish_api(name, workdir, seconds, args.conns, args.procs, args.batch))
    text = report(results)
    print(text)
    if not args.no_record:
        append_results("Publish API", text)


if __name__ == "__main__":
    main()

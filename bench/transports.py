"""What each client transport and encoding costs Herald (issue 12), all in one run:

* **fan-out**: one channel, S subscribers, P publications of ~200 bytes through the HTTP API at
  a paced rate; server CPU-µs per delivered message, over WebSocket JSON, WebSocket Protobuf,
  SSE and HTTP streaming (JSON), with the ratio to WebSocket JSON;
* **idle**: RSS per connected, subscribed, silent connection on each transport;
* **delta**: bytes on the wire for a stream of similar JSON documents, whole and as fossil
  deltas, in both encodings (computed with the gateway's own codecs, no network).

Every variant runs against its own fresh gateway with the same config: subscriptions are made
by the server at connect (``token_channels: subscribe``), so the streams need no emulation
requests, and ``pong_timeout`` is 0 so no client has to answer pings (pings are still sent).

    python -m bench.transports --subs 10000 --pubs 60 --idle 5000
    python -m bench.transports --quick
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from msgspec import Raw

from bench.common import (
    CpuMeter,
    append_results,
    fmt,
    fmt_ratio,
    install_signal_cleanup,
    note,
    proc_rss,
    raise_fd_limit,
    ratio,
    table,
)
from bench.fanout import _phase
from bench.load import LoadGen, workers_for
from bench.targets import HERALD, SECRET, make_target
from herald.gateway.codecs import fossil
from herald.gateway.codecs.json import JSON
from herald.gateway.codecs.messages import Publication
from herald.gateway.codecs.protobuf import PROTOBUF
from herald.gateway.hub import encode_delta, encode_full

# name -> (transport, protobuf, path)
VARIANTS: dict[str, tuple[str, bool, str]] = {
    "websocket json": ("websocket", False, "/connection/websocket"),
    "websocket protobuf": ("websocket", True, "/connection/websocket"),
    "sse json": ("sse", False, "/connection/sse"),
    "http_stream json": ("http_stream", False, "/connection/http_stream"),
    "websocket json + deflate": ("websocket", False, "/connection/websocket"),
}
DEFLATE = "websocket json + deflate"  # websocket_compression on, clients offer permessage-deflate
CONFIG: dict[str, Any] = {"token_channels": "subscribe", "pong_timeout": "0s", "sse": True, "http_stream": True}


def config_for(variant: str) -> dict[str, Any]:
    return {**CONFIG, "websocket_compression": True} if variant == DEFLATE else CONFIG


def _connect(load: LoadGen, target: Any, variant: str, count: int, channel: str) -> int:
    transport, protobuf, path = VARIANTS[variant]
    load.configure(
        port=target.port,
        mode=target.mode,
        path=path,
        reconnect=False,
        transport=transport,
        protobuf=protobuf,
        server_side=True,
        deflate=variant == DEFLATE,
    )
    return load.connect(count, channel, token=target.token, secret=SECRET, timeout=300)


def run_fanout(variant: str, subs: int, pubs: int, delivery_rate: float, workdir: Path) -> dict[str, Any]:
    target = make_target(HERALD, workdir / f"fanout-{variant.replace(' ', '-')}", **config_for(variant))
    target.prepare(subs)
    target.start()
    result: dict[str, Any] = {"variant": variant, "subs": subs, "pubs": pubs}
    try:
        with LoadGen(workers_for(subs)) as load:
            t0 = time.monotonic()
            got = _connect(load, target, variant, subs, "bench")
            note(f"{variant}: {got:,}/{subs:,} subscribed in {time.monotonic() - t0:.1f}s")
            if got < subs:
                result["error"] = f"only {got} of {subs} subscribed; {load.stats()['failures']}"
                return result
            _phase(target, load, subs, 3, 1, None)  # warm-up
            rate = delivery_rate / subs
            paced = _phase(target, load, subs, pubs, 100, rate)
            note(
                f"{variant} S={subs:,}: {fmt(paced['cpu_us_per_delivery'], 2)} CPU-µs/delivery, "
                f"p50 {fmt(paced['p50_ms'])} ms, p99 {fmt(paced['p99_ms'])} ms, lost {paced['lost']}"
            )
            result["paced"], result["rate"] = paced, rate
    finally:
        target.close()
    return result


def run_idle(variant: str, clients: int, window: float, workdir: Path) -> dict[str, Any]:
    target = make_target(HERALD, workdir / f"idle-{variant.replace(' ', '-')}", **config_for(variant))
    target.prepare(clients)
    target.start()
    result: dict[str, Any] = {"variant": variant, "clients": clients}
    try:
        time.sleep(1.0)
        rss0 = proc_rss(target.pid)
        with LoadGen(workers_for(clients)) as load:
            got = _connect(load, target, variant, clients, "user_{i}")
            time.sleep(2.0)
            rss = proc_rss(target.pid)
            meter = CpuMeter([target.pid]).start()
            time.sleep(window)
            cpu = meter.stop()
            result.update(connected=got, rss_per_conn=(rss - rss0) / max(1, got), cpu_per_conn_s=cpu / max(1, got))
            note(f"{variant} idle: {got:,} connected, {fmt(result['rss_per_conn'] / 1024, 1)} KiB per connection")
    finally:
        target.close()
    return result


def delta_bytes(count: int = 100, seed: int = 1) -> list[list[str]]:
    """Push bytes for ``count`` similar dashboard documents: whole vs delta, per encoding."""
    rng = random.Random(seed)
    state = [{"id": i, "status": "new", "total": i * 10, "customer": f"customer {i}"} for i in range(40)]
    docs = []
    for seq in range(count):
        for _ in range(3):  # a few orders change between two publications
            order = rng.choice(state)
            order["status"] = rng.choice(["new", "paid", "shipped", "delivered"])
            order["total"] = rng.randint(10, 900)
        docs.append(json.dumps({"seq": seq, "orders": state}, separators=(",", ":")).encode())
    rows = []
    for codec in (JSON, PROTOBUF):
        whole = sum(len(codec.encode_publication_push("dashboard", Publication(data=Raw(d)))) for d in docs)
        first = len(encode_full(codec, "dashboard", Publication(data=Raw(docs[0]))))
        t0 = time.perf_counter()
        patches = [fossil.create(prev, cur) for prev, cur in itertools.pairwise(docs)]
        create_us = (time.perf_counter() - t0) * 1e6 / len(patches)
        deltas = 0
        for doc, patch in zip(docs[1:], patches, strict=True):
            frame = encode_delta(codec, "dashboard", Publication(data=Raw(doc)), patch)
            deltas += (
                len(frame) if frame is not None else len(encode_full(codec, "dashboard", Publication(data=Raw(doc))))
            )
        with_delta = first + deltas
        rows.append(
            [
                codec.name,
                str(count),
                fmt(len(docs[0])),
                fmt(whole),
                fmt(with_delta),
                fmt_ratio(ratio(whole, with_delta)),
                fmt(create_us, 0),
            ]
        )
    return rows


def report(fanouts: list[dict[str, Any]], idles: list[dict[str, Any]], deltas: list[list[str]]) -> str:
    base = next(
        (r["paced"]["cpu_us_per_delivery"] for r in fanouts if r["variant"] == "websocket json" and "paced" in r),
        math.nan,
    )
    rows = []
    for r in fanouts:
        if "paced" not in r:
            rows.append([r["variant"], fmt(r["subs"]), r.get("error", "failed"), "", "", "", ""])
            continue
        p = r["paced"]
        rows.append(
            [
                r["variant"],
                fmt(r["subs"]),
                f"{r['pubs']} @ {r['rate']:.1f}/s",
                fmt(p["cpu_us_per_delivery"], 2),
                fmt_ratio(ratio(p["cpu_us_per_delivery"], base)),
                f"{fmt(p['p50_ms'])} / {fmt(p['p99_ms'])}",
                f"{p['lost']} / {p['dups']}",
            ]
        )
    text = table(
        ["transport", "S", "P @ rate", "CPU-µs/delivery", "x websocket json", "p50 / p99 ms", "lost / dup"], rows
    )
    if idles:
        idle_rows = [
            [r["variant"], fmt(r["connected"]), fmt(r["rss_per_conn"] / 1024, 1), fmt(r["cpu_per_conn_s"] * 1e6, 1)]
            for r in idles
        ]
        text += "\n\n" + table(
            ["transport", "idle connections", "RSS KiB/conn", "CPU-µs/conn over the window"], idle_rows
        )
    text += "\n\n" + table(
        [
            "encoding",
            "publications",
            "document bytes",
            "whole: push bytes",
            "delta: push bytes",
            "saved x",
            "µs per delta",
        ],
        deltas,
    )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description="transports and encodings benchmark")
    parser.add_argument("--subs", type=int, default=10_000)
    parser.add_argument("--pubs", type=int, default=60)
    parser.add_argument("--delivery-rate", type=float, default=20_000)
    parser.add_argument("--idle", type=int, default=5_000, help="idle connections per transport; 0 = skip")
    parser.add_argument("--idle-window", type=float, default=10.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="S=1000, 20 publications, 1000 idle")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    install_signal_cleanup()
    raise_fd_limit()
    subs, pubs, idle = (1000, 20, 1000) if args.quick else (args.subs, args.pubs, args.idle)
    workdir = Path(tempfile.mkdtemp(prefix="bench-transports-"))
    variants = args.variants.split(",")
    fanouts = [run_fanout(v, subs, pubs, args.delivery_rate, workdir) for v in variants]
    idles = [run_idle(v, idle, args.idle_window, workdir) for v in variants] if idle else []
    text = report(fanouts, idles, delta_bytes())
    print(text)
    if not args.no_record:
        append_results("Transports and encodings", text)


if __name__ == "__main__":
    main()

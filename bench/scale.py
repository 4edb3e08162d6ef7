"""Scale: many subscribed connections on one machine, served by worker processes on Redis.

Two parts, each against real servers started here:

* **scale** (``--clients 100000 --workers 8``): N lean clients subscribe to one channel of a
  Herald supervisor with K workers on the Redis engine (one process may hold at most
  RLIMIT_NOFILE sockets, so N beyond that needs workers). Then P publications, paced: every
  one must reach all N. Reports connect time, RSS per connection (all Herald processes),
  CPU-µs per delivery (all workers, Redis separately), publish→receive p50/p99/max, lost and
  duplicated deliveries, and how the connections spread over the workers.
* **compare** (``--compare 10000``): the same fan-out at S subscribers on the memory engine,
  the Redis engine with one worker, and with two workers, in one run: the CPU per delivery of
  each, and the ratio to the memory engine.

    python -m bench.scale --clients 100000 --workers 8 --pubs 20
    python -m bench.scale --compare 10000 --pubs 100
    python -m bench.scale --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    CpuMeter,
    append_results,
    fmt,
    fmt_ratio,
    install_signal_cleanup,
    note,
    percentile,
    proc_rss,
    raise_fd_limit,
    ratio,
    table,
)
from bench.load import LoadGen, workers_for
from bench.targets import API_KEY, HERALD, HERALD_REDIS, HERALD_REDIS_URL, SECRET, HeraldTarget, make_target, payload

CHANNEL = "bench"


def server_pids(target: HeraldTarget) -> list[int]:
    """The supervisor and its workers (or the one node)."""
    pid = target.pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


def redis_pid() -> int | None:
    try:
        info = redis.Redis.from_url(HERALD_REDIS_URL).info("server")
    except redis.RedisError:
        return None
    return int(info["process_id"])


def rss_total(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):  # a worker that just exited
            total += proc_rss(pid)
    return total


def nodes(target: HeraldTarget) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{target.port}/api/info", data=b"{}", headers={"X-API-Key": API_KEY}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        nodes_: list[dict[str, Any]] = json.loads(resp.read())["result"]["nodes"]
    return nodes_


def wait_nodes(target: HeraldTarget, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(nodes(target)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes(target))} of {count} workers announced themselves")
        time.sleep(0.2)


def fanout_phase(
    target: HeraldTarget, load: LoadGen, subs: int, pubs: int, first_seq: int, rate: float
) -> dict[str, Any]:
    """P publications at ``rate``/s; CPU of every Herald process and of Redis, latencies, losses."""
    channel = target.channel(CHANNEL)
    pub = target.publisher(channel)
    load.reset()
    meter = CpuMeter(server_pids(target)).start()
    rpid = redis_pid()
    helper = CpuMeter([rpid] if rpid and target.redis_prefix else []).start()
    t0 = time.time()
    try:
        for i in range(pubs):
            delay = t0 + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            target.publish(pub, channel, payload(first_seq + i))
        stats = load.drain(subs * pubs, stall=15.0, limit=600.0)
    finally:
        pub.close()
    cpu, redis_cpu = meter.stop(), helper.stop()
    lat = load.latencies()
    check = load.check(first_seq, first_seq + pubs)
    received = stats["received"]
    return {
        "received": received,
        "expected": subs * pubs,
        "drops": stats["drops"],
        "close_codes": dict(stats["close_codes"]),
        "cpu_us": cpu * 1e6 / received if received else math.nan,
        "redis_us": redis_cpu * 1e6 / received if received and helper.pids else math.nan,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else math.nan,
        "lost": check["lost"],
        "dups": check["dups"],
    }


def run_scale(clients: int, workers: int, pubs: int, rate: float, workdir: Path) -> dict[str, Any]:
    target = make_target(HERALD_REDIS, workdir / f"scale-{clients}", workers=workers)
    assert isinstance(target, HeraldTarget)
    target.start()
    result: dict[str, Any] = {"clients": clients, "workers": workers, "pubs": pubs, "rate": rate}
    try:
        wait_nodes(target, workers)
        pids = server_pids(target)
        rss_before = rss_total(pids)
        with LoadGen(max(workers_for(clients), math.ceil(clients / 15000))) as load:
            target.configure(load, reconnect=False)
            t0 = time.monotonic()
            got = load.connect(clients, target.channel(CHANNEL), token=target.token, secret=SECRET, timeout=600)
            result["connect_s"] = time.monotonic() - t0
            result["subscribed"] = got
            note(f"scale: {got:,}/{clients:,} subscribed in {result['connect_s']:.1f}s over {workers} workers")
            if got < clients:
                note(f"scale: connect failures {dict(load.stats()['failures'])}")
            time.sleep(4)  # one heartbeat: every worker's count is current in `info`
            result["per_worker"] = sorted(n["num_clients"] for n in nodes(target))
            result["rss_mib"] = rss_total(pids) / 2**20
            result["rss_per_conn_kib"] = (rss_total(pids) - rss_before) / 1024 / max(1, got)
            fanout_phase(target, load, got, 2, 1, rate)  # warm-up
            phase = fanout_phase(target, load, got, pubs, 100, rate)
            result.update(phase)
            note(
                f"scale: {fmt(phase['cpu_us'], 2)} CPU-µs/delivery, p50 {fmt(phase['p50_ms'])} ms, "
                f"p99 {fmt(phase['p99_ms'])} ms, {phase['received']:,}/{phase['expected']:,}, "
                f"lost {phase['lost']}, dups {phase['dups']}; dropped connections {phase['drops']} "
                f"(server close codes {phase['close_codes']})"
            )
        errors = target.server.log_grep("Traceback", "ERROR")
        if errors:
            result["server_errors"] = errors[:10]
    finally:
        target.close()
    return result


def run_compare(subs: int, pubs: int, delivery_rate: float, workdir: Path) -> list[dict[str, Any]]:
    results = []
    for label, name, workers in (
        ("memory", HERALD, 1),
        ("redis, 1 worker", HERALD_REDIS, 1),
        ("redis, 2 workers", HERALD_REDIS, 2),
    ):
        overrides: dict[str, Any] = {"workers": workers} if workers > 1 else {}
        target = make_target(name, workdir / f"compare-{label.replace(' ', '').replace(',', '-')}", **overrides)
        assert isinstance(target, HeraldTarget)
        target.start()
        try:
            if workers > 1:
                wait_nodes(target, workers)
            with LoadGen(workers_for(subs)) as load:
                target.configure(load, reconnect=False)
                got = load.connect(subs, target.channel(CHANNEL), token=target.token, secret=SECRET)
                fanout_phase(target, load, got, 3, 1, delivery_rate / subs)
                phase = fanout_phase(target, load, got, pubs, 100, delivery_rate / subs)
                phase.update(label=label, subs=got)
                results.append(phase)
                note(f"compare {label}: {fmt(phase['cpu_us'], 2)} CPU-µs/delivery, lost {phase['lost']}")
        finally:
            target.close()
    return results


def report_scale(r: dict[str, Any]) -> str:
    header = [
        "clients",
        "workers",
        "subscribed",
        "connect s",
        "per worker (min…max)",
        "RSS MiB (all)",
        "RSS KiB/conn",
        "P @ rate",
        "CPU-µs/delivery",
        "+ Redis CPU-µs/del.",
        "p50 ms",
        "p99 ms",
        "max ms",
        "delivered",
        "lost / dup",
    ]
    spread = f"{r['per_worker'][0]:,}…{r['per_worker'][-1]:,}" if r.get("per_worker") else ""
    row = [
        f"{r['clients']:,}",
        r["workers"],
        f"{r.get('subscribed', 0):,}",
        fmt(r.get("connect_s", math.nan)),
        spread,
        fmt(r.get("rss_mib", math.nan)),
        fmt(r.get("rss_per_conn_kib", math.nan), 2),
        f"{r['pubs']} @ {r['rate']:g}/s",
        fmt(r.get("cpu_us", math.nan), 2),
        fmt(r.get("redis_us", math.nan), 2),
        fmt(r.get("p50_ms", math.nan)),
        fmt(r.get("p99_ms", math.nan)),
        fmt(r.get("max_ms", math.nan)),
        f"{r.get('received', 0):,} / {r.get('expected', 0):,}",
        f"{r.get('lost', '?')} / {r.get('dups', '?')}",
    ]
    return table(header, [row])


def report_compare(results: list[dict[str, Any]]) -> str:
    memory = results[0]["cpu_us"] if results else math.nan
    rows = [
        [
            r["label"],
            f"{r['subs']:,}",
            fmt(r["cpu_us"], 2),
            fmt(r["redis_us"], 2),
            fmt_ratio(ratio(r["cpu_us"], memory)),
            fmt(r["p50_ms"]),
            fmt(r["p99_ms"]),
            f"{r['lost']} / {r['dups']}",
        ]
        for r in results
    ]
    header = ["engine", "S", "CPU-µs/delivery", "+ Redis CPU-µs/del.", "x memory", "p50 ms", "p99 ms", "lost / dup"]
    return table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="scale benchmark: workers on Redis")
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--pubs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.2, help="publications per second in the scale part")
    parser.add_argument("--compare", type=int, default=0, help="subscribers for the engine comparison (0 = skip)")
    parser.add_argument("--delivery-rate", type=float, default=20000, help="offered deliveries/s in the comparison")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10k clients on 2 workers; compare at 2k")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    install_signal_cleanup()
    raise_fd_limit()
    if args.quick:
        args.clients, args.workers, args.pubs, args.compare = 10_000, 2, 5, 2000
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    parts = []
    if not args.skip_scale:
        parts.append(report_scale(run_scale(args.clients, args.workers, args.pubs, args.rate, workdir)))
    if args.compare:
        parts.append(
            report_compare(run_compare(args.compare, args.pubs if not args.quick else 30, args.delivery_rate, workdir))
        )
    text = "\n\n".join(parts)
    print(text)
    if not args.no_record:
        append_results("Scale: workers on Redis", text)


if __name__ == "__main__":
    main()

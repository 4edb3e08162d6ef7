"""Fan-out: one channel, S subscribers, P publications of ~200 bytes through the HTTP API.

For each server and each S: connect S lean clients to one channel, publish a warm-up, then

* **paced**: P publications at a fixed offered rate (the same deliveries/s for every server):
  server CPU-µs per delivered message (from /proc), publish→receive latency p50/p99/max;
* **burst**: P publications back to back from one keep-alive connection: deliveries/s.

Every client counts what it received per sequence number: losses and duplicates are printed
(they must be zero). Server CPU covers the whole phase until the last delivery.

    python -m bench.fanout --subs 1000,10000 --pubs 100
    python -m bench.fanout --quick
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    CpuMeter,
    Profiler,
    append_results,
    fmt,
    fmt_ratio,
    install_signal_cleanup,
    note,
    percentile,
    profile_text,
    raise_fd_limit,
    ratio,
    table,
)
from bench.load import LoadGen, workers_for
from bench.targets import ALL_TARGETS, CHANNELS, HERALD, SECRET, THIN, Target, make_target, payload

CHANNEL = "bench"
CHANNELS_BUDGET = 60_000  # deliveries per phase for the Channels app


def _phase(
    target: Target,
    load: LoadGen,
    subs: int,
    pubs: int,
    first_seq: int,
    rate: float | None,
    profile: Path | None = None,
) -> dict[str, Any]:
    channel = target.channel(CHANNEL)
    pub = target.publisher(channel)
    load.reset()
    profiler = Profiler(target.pid, profile) if profile is not None else None
    meter = CpuMeter([target.pid]).start()
    helpers = CpuMeter(target.helper_pids()).start()
    t0 = time.time()
    interval = 1.0 / rate if rate else 0.0
    try:
        for i in range(pubs):
            if interval:
                delay = t0 + i * interval - time.time()
                if delay > 0:
                    time.sleep(delay)
            target.publish(pub, channel, payload(first_seq + i))
        publish_seconds = time.time() - t0
        stats = load.drain(subs * pubs)
    finally:
        pub.close()
    cpu = meter.stop()
    helper_cpu = helpers.stop()
    if profiler is not None:
        profiler.stop()
    lat = load.latencies()
    check = load.check(first_seq, first_seq + pubs)
    received = stats["received"]
    span = max(1e-9, stats.get("last_at", t0) - t0)
    return {
        "received": received,
        "expected": subs * pubs,
        "cpu_s": cpu,
        "cpu_us_per_delivery": cpu * 1e6 / received if received else math.nan,
        "helper_cpu_s": helper_cpu,
        "helper_us_per_delivery": helper_cpu * 1e6 / received if received and helpers.pids else math.nan,
        "deliveries_per_s": received / span,
        "publish_s": publish_seconds,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else math.nan,
        "lost": check["lost"],
        "dups": check["dups"],
        "clients_with_loss": check["clients_with_loss"],
        "pings": stats["pings"],
    }


def run_fanout(
    name: str,
    subs: int,
    pubs: int,
    delivery_rate: float,
    workdir: Path,
    profile: Path | None = None,
    burst: bool = True,
    make: Callable[[str, Path], Target] = make_target,
) -> dict[str, Any]:
    if name == CHANNELS:
        # The Channels app delivers a few thousand messages/s: fewer publications keep the run short.
        pubs = max(3, min(pubs, CHANNELS_BUDGET // subs))
    target = make(name, workdir / f"fanout-{name}-{subs}")
    target.prepare(subs)
    target.start()
    result: dict[str, Any] = {"target": name, "subs": subs, "pubs": pubs}
    try:
        with LoadGen(workers_for(subs)) as load:
            target.configure(load, reconnect=False)
            t0 = time.monotonic()
            got = load.connect(subs, target.channel(CHANNEL), token=target.token, secret=SECRET)
            note(f"{name}: {got:,}/{subs:,} subscribed in {time.monotonic() - t0:.1f}s")
            if got < subs:
                result["error"] = f"only {got} of {subs} clients subscribed; {load.stats()['failures']}"
                return result
            warm = _phase(target, load, subs, 3, 1, None)
            if warm["lost"]:
                note(f"{name}: warm-up lost {warm['lost']} deliveries")
            rate = delivery_rate / subs
            paced = _phase(target, load, subs, pubs, 100, rate)
            note(
                f"{name} S={subs:,} paced {rate:.1f} pub/s: {fmt(paced['cpu_us_per_delivery'], 2)} CPU-µs/delivery, "
                f"p50 {fmt(paced['p50_ms'])} ms, p99 {fmt(paced['p99_ms'])} ms, "
                f"{paced['received']:,}/{paced['expected']:,} received, lost {paced['lost']}, dups {paced['dups']}"
            )
            result["paced"] = paced
            result["rate"] = rate
            if burst:
                b = _phase(target, load, subs, pubs, 100 + pubs + 10, None)
                note(
                    f"{name} S={subs:,} burst: {fmt(b['deliveries_per_s'])} deliveries/s, "
                    f"{fmt(b['cpu_us_per_delivery'], 2)} CPU-µs/delivery, p99 {fmt(b['p99_ms'])} ms, "
                    f"lost {b['lost']}, dups {b['dups']}"
                )
                result["burst"] = b
            if profile is not None:
                # A separate, unreported phase: py-spy pauses the process to sample it.
                _phase(target, load, subs, pubs, 100 + 2 * pubs + 20, rate, profile)
                note(f"{name}: profile written to {profile}")
            errors = target.server.log_grep("Traceback", "ERROR", "Error")
            if errors:
                result["server_errors"] = errors[:10]
    finally:
        target.close()
    return result


def report(results: list[dict[str, Any]]) -> str:
    by = {(r["target"], r["subs"]): r for r in results}
    rows = []
    for r in results:
        if "paced" not in r:
            rows.append([r["target"], fmt(r["subs"]), r.get("error", "failed")] + [""] * 12)
            continue
        p, b = r["paced"], r.get("burst", {})
        thin = by.get((THIN, r["subs"]), {}).get("paced", {})
        chan = by.get((CHANNELS, r["subs"]), {}).get("paced", {})
        cpu = p["cpu_us_per_delivery"]
        rows.append(
            [
                r["target"],
                fmt(r["subs"]),
                f"{r['pubs']} @ {r['rate']:.1f}/s",
                fmt(cpu, 2),
                fmt(p["helper_us_per_delivery"], 1),
                fmt_ratio(ratio(cpu, thin.get("cpu_us_per_delivery", math.nan))),
                fmt_ratio(ratio(chan.get("cpu_us_per_delivery", math.nan), cpu)),
                fmt(p["p50_ms"]),
                fmt(p["p99_ms"]),
                fmt(b.get("deliveries_per_s", math.nan)),
                fmt(b.get("cpu_us_per_delivery", math.nan), 2),
                fmt(b.get("p99_ms", math.nan)),
                f"{p['lost'] + b.get('lost', 0)} / {p['dups'] + b.get('dups', 0)}",
                f"{p['received'] + b.get('received', 0):,}",
            ]
        )
    header = [
        "server",
        "S",
        "P @ rate",
        "CPU-µs/delivery",
        "+ Redis CPU-µs/del.",
        "x thin",
        "Channels ÷ this",
        "p50 ms",
        "p99 ms",
        "burst deliveries/s",
        "burst CPU-µs/del.",
        "burst p99 ms",
        "lost / dup",
        "delivered",
    ]
    return table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="fan-out benchmark")
    parser.add_argument("--subs", default="1000,10000", help="comma-separated subscriber counts")
    parser.add_argument("--pubs", type=int, default=100, help="publications per phase")
    parser.add_argument("--delivery-rate", type=float, default=20000, help="offered deliveries/s in the paced phase")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS))
    parser.add_argument("--quick", action="store_true", help="S=1000, 30 publications")
    parser.add_argument("--profile", action="store_true", help="py-spy the Herald run with the largest S")
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args()
    install_signal_cleanup()
    raise_fd_limit()
    subs = [1000] if args.quick else [int(s) for s in args.subs.split(",")]
    pubs = 30 if args.quick else args.pubs
    workdir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    results = []
    for s in subs:
        for name in args.targets.split(","):
            prof = workdir / f"profile-fanout-{s}.txt" if args.profile and name == HERALD and s == max(subs) else None
            results.append(run_fanout(name, s, pubs, args.delivery_rate, workdir, prof))
    text = report(results)
    if args.profile:
        text += "\n\n" + profile_text(workdir / f"profile-fanout-{max(subs)}.txt", "fan-out")
    print(text)
    if not args.no_record:
        append_results("Fan-out", text)


if __name__ == "__main__":
    main()

"""Idle connections: what N connected, subscribed, silent clients cost the server.

For each server, clients are added in steps up to each N (each client subscribed to its own
channel, as a per-user channel would be); after each step the server's RSS is read, then its
CPU over a window with nothing published. Pings are part of idle cost: Herald pings every
25 s (app-level ``{}``, answered with ``{}``), daphne sends a WebSocket ping every 20 s, the
thin server never pings. A window of one ping interval holds one ping per Herald connection.

    python -m bench.idle --clients 1000,5000,10000,20000
    python -m bench.idle --quick

One server process can hold at most RLIMIT_NOFILE - 200 sockets: N is capped at that, and the
cap is printed (containers often have a hard limit of 20,000 that only root can raise).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CpuMeter,
    Profiler,
    append_results,
    fmt,
    fmt_ratio,
    install_signal_cleanup,
    max_server_clients,
    note,
    proc_rss,
    profile_text,
    ratio,
    table,
)
from bench.load import LoadGen, workers_for
from bench.targets import ALL_TARGETS, CHANNELS, HERALD, SECRET, THIN, make_target


def run_idle(
    name: str,
    levels: list[int],
    window: float,
    settle: float,
    workdir: Path,
    profile: Path | None = None,
    cpu_from: int = 0,
) -> dict[str, Any]:
    """RSS at every level; CPU over ``window`` seconds at levels of at least ``cpu_from``."""
    target = make_target(name, workdir / f"idle-{name}")
    target.prepare(max(levels))
    target.start()
    result: dict[str, Any] = {"target": name, "levels": []}
    try:
        time.sleep(settle)
        rss0 = proc_rss(target.pid)
        result["rss0"] = rss0
        with LoadGen(workers_for(max(levels))) as load:
            target.configure(load, reconnect=False)
            have = 0
            for n in levels:
                t0 = time.monotonic()
                got = load.connect(n - have, "user_{i}", token=target.token, secret=SECRET, timeout=300)
                took = time.monotonic() - t0
                failed: dict[str, int] = {}
                if got < n:
                    failed = dict(load.stats()["failures"])
                    note(f"{name}: only {got:,}/{n:,} subscribed; failures {failed}")
                    if got < 0.99 * n:
                        result["levels"].append({"n": n, "error": f"{got:,} subscribed; {failed}"})
                        break
                    n = got  # a few refused: measure what is connected, and say so
                have = load.total
                time.sleep(settle)
                rss = proc_rss(target.pid)
                if n < cpu_from:
                    level: dict[str, Any] = {
                        "n": n,
                        "connect_s": took,
                        "rss": rss,
                        "rss_per_conn": (rss - rss0) / n,
                        "failed": failed,
                    }
                    result["levels"].append(level)
                    note(
                        f"{name} N={n:,}: connected in {took:.1f}s, RSS {rss / 2**20:.1f} MiB "
                        f"({level['rss_per_conn'] / 1024:.1f} KiB/conn)"
                    )
                    continue
                load.reset()
                meter = CpuMeter([target.pid]).start()
                helpers = CpuMeter(target.helper_pids()).start()
                time.sleep(window)
                cpu = meter.stop()
                helper_cpu = helpers.stop()
                stats = load.stats()
                minutes = meter.wall / 60
                level = {
                    "n": n,
                    "connect_s": took,
                    "rss": rss,
                    "rss_per_conn": (rss - rss0) / n,
                    "window_s": meter.wall,
                    "cpu_s": cpu,
                    "cpu_us_per_conn_min": cpu * 1e6 / n / minutes,
                    "helper_us_per_conn_min": helper_cpu * 1e6 / n / minutes if helpers.pids else math.nan,
                    "pings_per_conn_min": stats["pings"] / n / minutes,
                    "drops": stats["drops"],
                    "failed": failed,
                    "subscribed": stats["subscribed"],
                }
                result["levels"].append(level)
                note(
                    f"{name} N={n:,}: connected in {took:.1f}s, RSS {rss / 2**20:.1f} MiB "
                    f"({level['rss_per_conn'] / 1024:.1f} KiB/conn), idle CPU {cpu:.2f}s in {meter.wall:.0f}s "
                    f"= {level['cpu_us_per_conn_min']:.1f} µs/conn/min, "
                    f"app pings {level['pings_per_conn_min']:.2f}/conn/min, drops {stats['drops']}"
                )
            if profile is not None and result["levels"] and "error" not in result["levels"][-1]:
                # A separate window after the measured ones: py-spy pauses the process to sample it.
                profiler = Profiler(target.pid, profile)
                time.sleep(window)
                profiler.stop()
        errors = target.server.log_grep("Traceback", "ERROR")
        if errors:
            result["server_errors"] = errors[:10]
    finally:
        target.close()
    return result


def report(results: list[dict[str, Any]]) -> str:
    levels: dict[tuple[str, int], dict[str, Any]] = {}
    for r in results:
        for lv in r["levels"]:
            levels[(r["target"], lv["n"])] = lv
    rows = []
    for r in results:
        for lv in r["levels"]:
            if "error" in lv:
                rows.append([r["target"], fmt(lv["n"]), lv["error"], *[""] * 9])
                continue
            thin = levels.get((THIN, lv["n"]), {})
            chan = levels.get((CHANNELS, lv["n"]), {})
            kib = lv["rss_per_conn"] / 1024
            nan = math.nan
            rows.append(
                [
                    r["target"],
                    fmt(lv["n"])
                    + (f" ({sum(lv['failed'].values())} refused: {lv['failed']})" if lv.get("failed") else ""),
                    fmt(lv["rss"] / 2**20),
                    fmt(kib, 2),
                    fmt_ratio(ratio(lv["rss_per_conn"], thin.get("rss_per_conn", math.nan))),
                    fmt_ratio(ratio(chan.get("rss_per_conn", math.nan), lv["rss_per_conn"])),
                    fmt(lv.get("cpu_us_per_conn_min", nan), 1),
                    fmt(lv.get("helper_us_per_conn_min", nan), 1),
                    fmt_ratio(ratio(chan.get("cpu_us_per_conn_min", nan), lv.get("cpu_us_per_conn_min", nan))),
                    fmt(lv.get("pings_per_conn_min", nan), 2),
                    f"{lv['window_s']:.0f}" if "window_s" in lv else "-",
                    fmt(lv["connect_s"], 1),
                ]
            )
    header = [
        "server",
        "N",
        "RSS MiB",
        "KiB RSS/conn",
        "x thin",
        "Channels ÷ this",
        "CPU-µs/conn/min",
        "+ Redis",
        "Channels ÷ this",
        "pings/conn/min",
        "window s",
        "connect s",
    ]
    return table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="idle connection benchmark")
    parser.add_argument("--clients", default="1000,5000,10000,20000", help="comma-separated connection counts")
    parser.add_argument("--window", type=float, default=25.0, help="CPU window per level, seconds")
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--cpu-from", type=int, default=10000, help="measure idle CPU from this N up")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS))
    parser.add_argument("--quick", action="store_true", help="N=1000,2000 with a 10 s window")
    parser.add_argument("--profile", action="store_true", help="py-spy Herald during the last window")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    install_signal_cleanup()
    levels, window = ([1000, 2000], 10.0) if args.quick else ([int(n) for n in args.clients.split(",")], args.window)
    levels = cap_levels(levels)
    workdir = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    results = []
    for name in args.targets.split(","):
        prof = workdir / "profile-idle.txt" if args.profile and name == HERALD else None
        cpu_from = 0 if args.quick else args.cpu_from
        results.append(run_idle(name, levels, window, args.settle, workdir, prof, min(cpu_from, levels[-1])))
    text = report(results)
    if args.profile:
        text += "\n\n" + profile_text(workdir / "profile-idle.txt", "idle")
    print(text)
    if not args.no_record:
        append_results("Idle connections", text)


def cap_levels(levels: list[int]) -> list[int]:
    cap = max_server_clients()
    capped = sorted({min(n, cap) for n in levels})
    if capped[-1] < max(levels):
        note(f"RLIMIT_NOFILE allows one server process {cap:,} client sockets: N capped at {cap:,}")
    return capped


if __name__ == "__main__":
    main()

"""Every benchmark in one run, against Herald, the thin floor and the Channels app.

    python -m bench.run_all            # the full run (about 17 minutes on 2 cores)
    python -m bench.run_all --quick    # a smoke run (about 2 minutes)

Prints each benchmark's table, then the targets of issues 5 and 10 as measured in this run,
and appends everything (with py-spy summaries of Herald during fan-out, idle and the storm)
as one dated section of docs/benchmarks.md. Raw results go to a JSON file in a temporary
directory whose path is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import abuse, fanout, idle, publish_api, storm
from bench.common import (
    append_results,
    fmt,
    install_signal_cleanup,
    note,
    profile_text,
    raise_fd_limit,
    table,
)
from bench.targets import (
    ALL_TARGETS,
    CHANNELS,
    HERALD,
    HERALD_REDIS,
    HERALD_REDIS_SUPERVISED,
    HERALD_SUPERVISED,
    THIN,
)


def _get(results: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    for r in results:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return {}


def targets_table(
    fan: list[dict[str, Any]],
    idl: list[dict[str, Any]],
    stm: list[dict[str, Any]],
    api: list[dict[str, Any]],
    abu: dict[str, Any] | None = None,
) -> str:
    rows: list[list[str]] = []
    nan = math.nan

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "**not met**")

    subs = max((r["subs"] for r in fan), default=0)
    h = _get(fan, target=HERALD, subs=subs).get("paced", {})
    t = _get(fan, target=THIN, subs=subs).get("paced", {})
    c = _get(fan, target=CHANNELS, subs=subs).get("paced", {})
    hc, tc, cc = (x.get("cpu_us_per_delivery", nan) for x in (h, t, c))
    r1 = hc / tc if tc else nan
    r2 = cc / hc if hc else nan
    rows.append(
        [
            f"fan-out CPU per delivery vs thin (S={subs:,})",
            "≤ 1.3x",
            f"{r1:.2f}x ({fmt(hc, 2)} vs {fmt(tc, 2)} µs)",
            verdict(None if math.isnan(r1) else r1 <= 1.3),
        ]
    )
    rows.append(
        [
            f"fan-out CPU per delivery, Channels ÷ Herald (S={subs:,})",
            "≥ 50x",
            f"{r2:.1f}x ({fmt(cc, 1)} vs {fmt(hc, 2)} µs; daphne process only)",
            verdict(None if math.isnan(r2) else r2 >= 50),
        ]
    )
    hl = h.get("lost", 0) + _get(fan, target=HERALD, subs=subs).get("burst", {}).get("lost", 0)
    rows.append([f"fan-out losses / duplicates (S={subs:,})", "0 / 0", f"{hl} / {h.get('dups', 0)}", verdict(hl == 0)])
    herald_idle = _get(idl, target=HERALD)
    levels = [lv for lv in herald_idle.get("levels", []) if "rss_per_conn" in lv]
    if levels:
        worst = max(lv["rss_per_conn"] for lv in levels) / 1000
        top = levels[-1]
        rows.append(
            [
                "idle memory per connected, subscribed client",
                "≤ 16 KB",
                f"{worst:.1f} KB worst level; {top['rss_per_conn'] / 1000:.1f} KB at N={top['n']:,}",
                verdict(worst <= 16),
            ]
        )
    labels = {
        HERALD: "",
        HERALD_REDIS: ", Redis engine",
        HERALD_SUPERVISED: " under a supervisor",
        HERALD_REDIS_SUPERVISED: " under a supervisor, Redis engine",
    }
    for n, name in sorted({(r["n"], r["target"]) for r in stm if r["target"] in labels}):
        res = _get(stm, target=name, n=n)
        for s in res.get("scenarios", []):
            ok = s["all_back"] and s["t_all_s"] <= 3 and s["failed"] == 0 and s["lost"] == 0
            rows.append(
                [
                    f"storm N={n:,} ({s['scenario']}{labels[name]}): back ≤ 3 s, 0 failed, 0 lost",
                    "≤ 3 s / 0 / 0",
                    f"{fmt(s['t_all_s'], 2)} s / {s['failed']:,} / {s['lost']:,}",
                    verdict(ok) if n >= 10000 else verdict(ok) + " (N<10k)",
                ]
            )
    single = _get(api, target=HERALD, batch=1)
    batch = next((r for r in api if r["target"] == HERALD and r["batch"] > 1), {})
    if single:
        v = single["pubs_per_cpu_s"]
        rows.append(
            [
                "publish API, single publications per core",
                "≥ 10k/s",
                f"{fmt(v)}/s per server CPU-s ({fmt(single['pubs_per_s'])}/s measured)",
                verdict(v >= 10000),
            ]
        )
    if batch:
        v = batch["pubs_per_cpu_s"]
        rows.append(
            [
                "publish API with batch",
                "≥ 100k/s",
                f"{fmt(v)}/s per server CPU-s ({fmt(batch['pubs_per_s'])}/s measured)",
                verdict(v >= 100000),
            ]
        )
    if abu and abu.get("storms"):
        worst = max(s["growth"] for s in abu["storms"]) / 2**20
        sub = abu["subscriber"]
        closed = sum(s["outcomes"].get("close_3501", 0) for s in abu["storms"])
        total = abu["clients"] * len(abu["storms"])
        rows.append(
            [
                f"memory under abuse: {abu['clients']:,} malformed frames x {len(abu['storms'])} (issue 10)",
                "RSS growth < 15 MiB, all 3501, 0 lost",
                f"{worst:+.2f} MiB; {closed:,}/{total:,} closed 3501; subscriber {sub['lost']} lost",
                verdict(worst < 15 and closed == total and sub["lost"] == 0 and sub["dups"] == 0),
            ]
        )
    return table(["target", "goal", "this run", "verdict"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="all benchmarks, one run")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every benchmark")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS))
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    parser.add_argument("--skip", default="", help="comma-separated: fanout,idle,storm,api,abuse")
    args = parser.parse_args()
    install_signal_cleanup()
    raise_fd_limit()
    # Native frames show how much of the CPU is the kernel write path under uvloop.
    os.environ.setdefault("BENCH_PROFILE_NATIVE", "1")
    names = args.targets.split(",")
    skip = set(filter(None, args.skip.split(",")))
    workdir = Path(tempfile.mkdtemp(prefix="bench-all-"))
    profile = not args.no_profile
    note(f"work directory {workdir}")
    started = time.monotonic()
    q = args.quick
    sections: list[str] = []

    fan: list[dict[str, Any]] = []
    if "fanout" not in skip:
        subs, pubs, rate = ([1000], 30, 20000.0) if q else ([1000, 10000], 100, 50000.0)
        for s in subs:
            for name in names:
                prof = workdir / f"profile-fanout-{s}.txt" if profile and name == HERALD and s == max(subs) else None
                fan.append(fanout.run_fanout(name, s, pubs, rate, workdir, prof))
        text = fanout.report(fan)
        print(text)
        sections.append(f"#### Fan-out (one channel, ~200-byte publications via the HTTP API)\n\n{text}")

    idl: list[dict[str, Any]] = []
    if "idle" not in skip:
        levels = idle.cap_levels([1000, 2000] if q else [1000, 5000, 10000, 20000])
        window, cpu_from = (10.0, 0) if q else (25.0, 10000)
        for name in names:
            prof = workdir / "profile-idle.txt" if profile and name == HERALD else None
            idl.append(idle.run_idle(name, levels, window, 3.0, workdir, prof, min(cpu_from, levels[-1])))
        text = idle.report(idl)
        print(text)
        sections.append(f"#### Idle connections (each client subscribed to its own channel)\n\n{text}")

    stm: list[dict[str, Any]] = []
    if "storm" not in skip:
        sizes = [1000] if q else [5000, 10000]
        for n in sizes:
            for name in names:
                prof = workdir / "profile-storm.txt" if profile and name == HERALD and n == max(sizes) else None
                stm.append(storm.run_storm(name, n, workdir, 5, 60.0, storm.SCENARIOS, prof))
        if HERALD in names:
            # The same storm on Herald's Redis engine, whose history survives the restart.
            stm.append(storm.run_storm(HERALD_REDIS, max(sizes), workdir, 5, 60.0, storm.SCENARIOS))
            # Restarts with the listening socket held by a supervisor (socket activation).
            for name in (HERALD_SUPERVISED, HERALD_REDIS_SUPERVISED):
                stm.append(storm.run_storm(name, max(sizes), workdir, 5, 60.0, ("restart",)))
        text = storm.report(stm)
        print(text)
        sections.append(f"#### Reconnect storm (clients with their own JWT on `critical:storm`)\n\n{text}")

    api: list[dict[str, Any]] = []
    if "api" not in skip:
        seconds = 3.0 if q else 8.0
        for name in names:
            api.extend(publish_api.run_publish_api(name, workdir, seconds, 32, 2, 100))
        text = publish_api.report(api)
        print(text)
        sections.append(f"#### Publish API\n\n{text}")

    abu: dict[str, Any] | None = None
    if "abuse" not in skip and HERALD in names:
        clients, storms = (1000, 1) if q else (10000, 2)
        abu = abuse.run_abuse(clients, storms, 500, 100.0, 3.0, workdir)
        text = abuse.report(abu)
        print(text)
        sections.append(f"#### Memory under abuse (connections that each send one malformed frame)\n\n{text}")

    summary = targets_table(fan, idl, stm, api, abu)
    print(summary)
    profiles = []
    if profile:
        for what, path in (
            ("fan-out", workdir / f"profile-fanout-{10000 if not q else 1000}.txt"),
            ("idle (pings)", workdir / "profile-idle.txt"),
            ("storm (close, largest N)", workdir / "profile-storm.txt"),
        ):
            if path.exists():
                profiles.append(profile_text(path, what))
    raw = workdir / "results.json"
    raw.write_text(
        json.dumps({"fanout": fan, "idle": idl, "storm": stm, "api": api, "abuse": abu}, indent=1, default=str)
    )
    note(f"raw results in {raw}; total {time.monotonic() - started:.0f}s")
    body = "#### Targets\n\n" + summary + "\n\n" + "\n\n".join(sections)
    if profiles:
        body += "\n\n#### Where Herald's CPU goes (py-spy)\n\n" + "\n\n".join(profiles)
    if not args.no_record:
        append_results("Full run" + (" (quick)" if q else ""), body)


if __name__ == "__main__":
    main()

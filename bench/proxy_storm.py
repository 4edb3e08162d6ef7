"""Reconnect storm with the connect proxy on, beside the same storm with tokens.

N lean clients (bench/load.py) are connected and subscribed to ``critical:storm``, then the
gateway closes every connection at once (server API ``batch`` of ``disconnect`` with the
reconnect code 3100) and they all come back with the SDK's jittered backoff (min 0.5 s,
max 20 s). Two runs, each on a fresh gateway:

* **jwt**: each client connects with its own token (no I/O at the gateway, Django idle);
* **proxy**: no token; each client's WebSocket upgrade carries its own Django session cookie
  and the gateway asks Django at every connect: ``proxy_connect_endpoint`` →
  ``herald.django.proxy`` under gunicorn (bench/proxy_app: its own SQLite database with N users
  and N live sessions).

Printed per run: time until all N are back (and the median), failed attempts by kind (a
proxy timeout or failure reaches the client as connect error 100, and it retries with
backoff), gateway CPU seconds, Django CPU seconds (gunicorn master and workers, from /proc),
and the peak number of proxy requests Django was serving at once (shared counters across the
gunicorn workers, bench/proxy_app/inflight.py).

    python -m bench.proxy_storm                       # 10,000 clients
    python -m bench.proxy_storm --clients 2000 --web-workers 4 --proxy-timeout 2s
    python -m bench.proxy_storm --quick               # 1,000 clients
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

import msgspec

from bench.common import (
    CpuMeter,
    ServerProcess,
    append_results,
    fmt,
    install_signal_cleanup,
    note,
    percentile,
    raise_fd_limit,
    table,
)
from bench.load import LoadGen, workers_for
from bench.proxy_app.setup_db import SESSION_KEY_TEMPLATE
from bench.targets import API_KEY, SECRET, HeraldTarget, Publisher

CHANNEL: Final = "critical:storm"
PROXY_SECRET: Final = "bench-proxy-secret-0123456789abcdef-0123456789"
RECONNECT_CODE: Final = 3100


class Django:
    """bench/proxy_app under gunicorn, with its database prepared for ``users`` clients."""

    def __init__(self, workdir: Path, users: int, workers: int, threads: int) -> None:
        self.env = {
            "DJANGO_SETTINGS_MODULE": "bench.proxy_app.settings",
            "BENCH_PROXY_DB": str(workdir / "proxy.sqlite3"),
            "BENCH_PROXY_SECRET": PROXY_SECRET,
            "BENCH_SECRET": SECRET,
        }
        note(f"django: creating {users:,} users with a live session each")
        import os
        import subprocess

        subprocess.run(
            [sys.executable, "-m", "bench.proxy_app.setup_db", "--users", str(users)],
            env={**os.environ, **self.env},
            check=True,
        )
        self.server = ServerProcess(
            "gunicorn",
            lambda port: [
                sys.executable,
                "-m",
                "gunicorn",
                "bench.proxy_app.wsgi:application",
                "--preload",  # the in-flight counters are shared by the forked workers
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--backlog",
                "4096",
                "--log-level",
                "warning",
            ],
            health_path="/health/",
            env=self.env,
            workdir=workdir,
        )

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def pids(self) -> list[int]:
        """The gunicorn master and its workers."""
        master = self.server.pid
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except OSError:
            children = []
        return [master, *map(int, children)]

    def inflight(self, reset: bool = False) -> dict[str, int]:
        request = urllib.request.Request(self.url("/bench/inflight/"), method="POST" if reset else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            counts: dict[str, int] = json.loads(response.read())
        return counts


def close_all(target: HeraldTarget, users: list[str]) -> None:
    """Server API ``disconnect`` of every user, in one ``batch``, with a reconnect code."""
    disconnect = {"code": RECONNECT_CODE, "reason": "benchmark"}
    commands = [{"disconnect": {"user": u, "disconnect": disconnect}} for u in users]
    pub = Publisher(target.port, "/api/batch", {"X-API-Key": API_KEY})
    try:
        pub.post(msgspec.json.encode({"commands": commands}), timeout=120)
    finally:
        pub.close()


def run(
    mode: str,
    n: int,
    workdir: Path,
    django: Django,
    *,
    timeout: float,
    proxy_timeout: str,
    max_concurrency: int,
) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if mode == "proxy":
        config = {
            "proxy_connect_endpoint": django.url("/realtime/proxy/connect/"),
            "proxy_connect_timeout": proxy_timeout,
            "proxy_http_headers": ["Cookie"],
            "proxy_static_http_headers": {"X-Realtime-Proxy-Secret": PROXY_SECRET},
            "proxy_max_concurrency": max_concurrency,
        }
    folder = workdir / mode
    folder.mkdir(parents=True, exist_ok=True)
    target = HeraldTarget(folder, name=f"herald-{mode}", **config)
    target.start()
    result: dict[str, Any] = {"mode": mode, "n": n}
    try:
        with LoadGen(workers_for(n)) as load:
            # The connect answer's channels are server-side subscriptions (proxy spec §3.1): the
            # connect reply is the subscription. With a token the client subscribes itself.
            extra: dict[str, Any] = {"server_side": mode == "proxy"}
            if mode == "proxy":
                extra["cookie"] = f"sessionid={SESSION_KEY_TEMPLATE}"  # the load generator fills in {i}
            target.configure(load, reconnect=True, min_delay=0.5, max_delay=20.0, timeout=5.0, **extra)
            t0 = time.monotonic()
            token = "jwt" if mode == "jwt" else "none"
            got = load.connect(n, CHANNEL, token=token, secret=SECRET)
            note(f"{mode}: {got:,}/{n:,} subscribed in {time.monotonic() - t0:.1f}s")
            if got < n:
                result["error"] = f"only {got:,} of {n:,} subscribed; {dict(load.stats()['failures'])}"
                return result
            # In proxy mode the users are Django's primary keys (1..N, created in order).
            users = [f"u{i}" for i in range(n)] if mode == "jwt" else [str(pk) for pk in range(1, n + 1)]
            load.reset()
            django.inflight(reset=True)
            meter_gateway = CpuMeter([target.pid]).start()
            meter_django = CpuMeter(django.pids()).start()
            t0 = time.time()
            close_all(target, users)
            ok, _ = load.wait_for("back", n, timeout)
            gateway_cpu, django_cpu = meter_gateway.stop(), meter_django.stop()
            stats = load.stats(times=True)
            counts = django.inflight()
            back = sorted(t - t0 for t in stats.get("back_times", []))
            failures = dict(stats["failures"])
            result.update(
                all_back=ok,
                back=len(back),
                t_all_s=back[-1] if ok and back else math.nan,
                t_p50_s=percentile(back, 50),
                attempts=stats["attempts"],
                failed=sum(failures.values()),
                failures=failures,
                close_codes=dict(stats["close_codes"]),
                gateway_cpu_s=gateway_cpu,
                django_cpu_s=django_cpu,
                proxy_requests=counts["total"],
                peak_proxy_requests=counts["peak"],
            )
            note(
                f"{mode} N={n:,}: {'all' if ok else 'NOT all'} back in {fmt(result['t_all_s'], 2)}s "
                f"(p50 {fmt(result['t_p50_s'], 2)}s), attempts {stats['attempts']:,}, failed {result['failed']:,} "
                f"{failures}, gateway CPU {gateway_cpu:.2f}s, Django CPU {django_cpu:.2f}s, "
                f"proxy requests {counts['total']:,} (peak {counts['peak']} at once)"
            )
        errors = target.server.log_grep("Traceback", "ERROR")
        if errors:
            result["server_errors"] = errors[:10]
    finally:
        target.close()
    return result


def report(results: list[dict[str, Any]], web: str) -> str:
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["mode"], fmt(r["n"]), r["error"], *[""] * 8])
            continue
        fails = ", ".join(f"{k} {v:,}" for k, v in sorted(r["failures"].items())) or "0"
        rows.append(
            [
                r["mode"],
                fmt(r["n"]),
                fmt(r["t_all_s"], 2) if r["all_back"] else f"not all back ({r['back']:,})",
                fmt(r["t_p50_s"], 2),
                f"{r['attempts']:,}",
                fails,
                ", ".join(f"{k} {v:,}" for k, v in sorted(r["close_codes"].items())) or "-",
                fmt(r["gateway_cpu_s"], 2),
                fmt(r["django_cpu_s"], 2),
                f"{r['proxy_requests']:,}",
                str(r["peak_proxy_requests"]) if r["mode"] == "proxy" else "-",
            ]
        )
    header = [
        "connect with",
        "N",
        "all back s",
        "p50 back s",
        "attempts",
        "failed attempts",
        "closed by the gateway (code n)",
        "gateway CPU s",
        f"Django CPU s ({web})",
        "proxy requests",
        "peak concurrent proxy requests",
    ]
    return table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="reconnect storm: connect proxy vs JWT")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 clients")
    parser.add_argument("--modes", default="jwt,proxy")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--web-threads", type=int, default=8, help="gunicorn threads per worker")
    parser.add_argument("--proxy-timeout", default="1s", help="proxy_connect_timeout (Centrifugo's default: 1s)")
    parser.add_argument(
        "--max-concurrency", type=int, default=64, help="proxy_max_concurrency: connects beyond it get 3013"
    )
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    install_signal_cleanup()
    raise_fd_limit()
    n = 1000 if args.quick else args.clients
    modes = args.modes.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-storm-"))
    django = Django(workdir, n, args.web_workers, args.web_threads)
    django.start()
    try:
        results = [
            run(
                mode,
                n,
                workdir,
                django,
                timeout=args.timeout,
                proxy_timeout=args.proxy_timeout,
                max_concurrency=args.max_concurrency,
            )
            for mode in modes
        ]
    finally:
        django.close()
    web = f"gunicorn {args.web_workers}x{args.web_threads}"
    text = report(results, web)
    text += (
        f"\n\nproxy_connect_timeout {args.proxy_timeout}, proxy_max_concurrency {args.max_concurrency}; "
        f"SDK backoff 0.5-20 s; Django on SQLite with "
        f"{n:,} users and sessions; drop = server API disconnect of every user with {RECONNECT_CODE}."
    )
    print(text)
    if not args.no_record:
        append_results("Reconnect storm with the connect proxy (Django under gunicorn) vs JWT", text)


if __name__ == "__main__":
    main()

"""The transactional outbox: relay throughput from PostgreSQL to a local gateway, and the
latency the outbox path adds to an event compared with the direct Celery task.

    python -m bench.outbox [--rows 20000] [--channels 100] [--events 200] [--no-record]

Starts its own gateway (memory engine), redis-server (Celery broker) and Celery worker, and
uses a fresh PostgreSQL database on 127.0.0.1:5432 (dropped at the end). Throughput: rows
written beforehand, one relay draining them (rows/s, and the gateway's CPU per row from
/proc). Latency: an official-SDK subscriber timestamps each event from just before the
transaction commits to its arrival, for ``publish_on_commit`` (direct task) and
``publish_on_commit(durable=True)`` (outbox row + relay task woken by the commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    ServerProcess,
    append_results,
    free_port,
    install_signal_cleanup,
    note,
    percentile,
    proc_cpu,
    proc_rss,
    table,
)

SECRET = "bench-outbox-secret-0123456789abcdef-0123456789abcdef"
API_KEY = "bench-outbox-key"

SETTINGS = """
DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": {db!r}, "HOST": "127.0.0.1",
              "USER": {user!r}}}}}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "herald.django"]
SECRET_KEY = "bench"
USE_TZ = True
REALTIME_HMAC_SECRET = {secret!r}
REALTIME_API_KEY = {key!r}
REALTIME_API_URL = {api_url!r}
REALTIME_SOCKET_URL = {ws_url!r}
CELERY_BROKER_URL = {broker!r}
CELERY_TASK_IGNORE_RESULT = True
"""
CELERY_APP = """
import os
from celery import Celery
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_outbox_settings")
app = Celery("bench_outbox")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""


def psql(sql: str, user: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", user, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
    )


class Subscriber:
    """centrifuge-python on its own loop thread; records when each publication arrives."""

    def __init__(self, ws_url: str, channels: list[str]) -> None:
        from centrifuge import Client, ClientEventHandler, SubscriptionEventHandler

        from herald.tokens import mint_connection_token

        self.arrived: dict[str, float] = {}
        self.changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        subscriber = self

        class Events(SubscriptionEventHandler):  # type: ignore[misc]
            async def on_publication(self, ctx: Any) -> None:
                with subscriber.changed:
                    subscriber.arrived[ctx.pub.data["payload"]["id"]] = time.perf_counter()
                    subscriber.changed.notify_all()

        async def start() -> Any:
            token = mint_connection_token(SECRET, "bench", channels=channels, ttl=3600)
            client = Client(ws_url, token=token, events=ClientEventHandler(), proxy=None)
            await client.connect()
            for channel in channels:
                sub = client.new_subscription(channel, events=Events())
                await sub.subscribe()
            await asyncio.sleep(0.5)  # let the subscriptions settle before measuring
            return client

        self.client = asyncio.run_coroutine_threadsafe(start(), self._loop).result(30)

    def wait(self, event_id: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        with self.changed:
            while event_id not in self.arrived:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"event {event_id} never arrived")
                self.changed.wait(remaining)
            return self.arrived[event_id]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.disconnect(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def throughput(rows: int, channels: int, batch_size: int, gateway: ServerProcess) -> dict[str, Any]:
    from django.db import transaction

    from herald.django.models import OutboxMessage
    from herald.django.outbox import Relay

    OutboxMessage.objects.all().delete()
    names = [f"critical:bench_{i}" for i in range(channels)]
    with transaction.atomic():
        OutboxMessage.objects.bulk_create(
            [
                OutboxMessage(
                    channel=names[n % channels],
                    data=json.dumps({"type": "tick", "payload": {"n": n}}, separators=(",", ":")),
                    idempotency_key=uuid.uuid4().hex,
                )
                for n in range(rows)
            ],
            batch_size=2000,
        )
    relay = Relay("default", batch_size=batch_size)
    cpu_before = proc_cpu(gateway.pid)
    started = time.perf_counter()
    report = relay.drain()
    elapsed = time.perf_counter() - started
    cpu = proc_cpu(gateway.pid) - cpu_before
    assert report.sent == rows, report
    return {
        "rows": rows,
        "channels": channels,
        "batch": batch_size,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "gw_cpu_us_per_row": cpu / rows * 1e6,
        "gw_rss_mib": proc_rss(gateway.pid) / 2**20,
    }


def latency(events: int, durable: bool, subscriber: Subscriber) -> list[float]:
    from django.db import transaction

    from herald.django.tasks import publish_on_commit

    samples = []
    for _ in range(events):
        event_id = uuid.uuid4().hex
        started = time.perf_counter()
        with transaction.atomic():
            publish_on_commit("lat", "tick", {"id": event_id}, recoverable=True, durable=durable)
        samples.append(subscriber.wait(event_id) - started)
    return sorted(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description="outbox relay throughput and added latency")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--events", type=int, default=200, help="events per path for the latency")
    parser.add_argument("--pg-user", default=os.environ.get("PGUSER", "postgres"))
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    install_signal_cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    db = f"herald_bench_{uuid.uuid4().hex[:8]}"
    (workdir / "herald.json").write_text(
        json.dumps(
            {
                "token_hmac_secret_key": SECRET,
                "api_key": API_KEY,
                "namespaces": [{"name": "critical", "history_size": 50, "history_ttl": "120s"}],
            }
        )
    )
    gateway = ServerProcess(
        "gateway",
        lambda port: [
            sys.executable,
            "-m",
            "herald.gateway",
            "serve",
            "--config",
            str(workdir / "herald.json"),
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
        ],
        workdir=workdir,
    ).start()
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    (workdir / "bench_outbox_settings.py").write_text(
        SETTINGS.format(
            db=db,
            user=args.pg_user,
            secret=SECRET,
            key=API_KEY,
            api_url=f"http://127.0.0.1:{gateway.port}/api",
            ws_url=f"ws://127.0.0.1:{gateway.port}/connection/websocket",
            broker=f"redis://127.0.0.1:{redis_port}/0",
        )
    )
    (workdir / "bench_outbox_celery.py").write_text(CELERY_APP)
    sys.path.insert(0, str(workdir))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench_outbox_settings"
    psql(f"CREATE DATABASE {db}", args.pg_user)
    worker: subprocess.Popen[bytes] | None = None
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        import bench_outbox_celery  # noqa: F401  (the app the tasks are sent through)

        results = [throughput(args.rows, args.channels, size, gateway) for size in (100, 1000)]
        results.append(throughput(min(args.rows, 5000), 1, 100, gateway))

        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)])}
        with open(workdir / "worker.log", "ab") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "bench_outbox_celery",
                    "worker",
                    "-P",
                    "solo",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "WARNING",
                ],
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        subscriber = Subscriber(f"ws://127.0.0.1:{gateway.port}/connection/websocket", ["critical:lat"])
        try:
            latency(20, False, subscriber)  # warm-up: worker, pools, Django
            latency(20, True, subscriber)
            direct = latency(args.events, False, subscriber)
            durable = latency(args.events, True, subscriber)
        finally:
            subscriber.close()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        from django.db import connections

        connections.close_all()
        psql(f"DROP DATABASE IF EXISTS {db}", args.pg_user)
        redis_proc.terminate()
        redis_proc.wait(10)
        gateway.stop()

    rows = [
        [
            r["rows"],
            r["channels"],
            r["batch"],
            f"{r['seconds']:.2f}",
            f"{r['rows_per_s']:.0f}",
            f"{r['gw_cpu_us_per_row']:.0f}",
            f"{r['gw_rss_mib']:.0f}",
        ]
        for r in results
    ]
    text = "Relay throughput (one relay, `Relay.drain()`, PostgreSQL → local gateway):\n\n" + table(
        ["rows", "channels", "batch size", "seconds", "rows/s", "gateway CPU-µs/row", "gateway RSS MiB"], rows
    )

    def ms(values: list[float], q: float) -> str:
        return f"{percentile(values, q) * 1000:.1f}"

    text += (
        f"\n\nLatency from just before the commit to the SDK subscriber, {args.events} events one at a time, "
        "one Celery worker (solo pool):\n\n"
        + table(
            ["path", "median ms", "p99 ms"],
            [
                ["publish_on_commit (direct task)", ms(direct, 50), ms(direct, 99)],
                ["publish_on_commit(durable=True) (outbox + relay task)", ms(durable, 50), ms(durable, 99)],
                [
                    "added by the outbox",
                    f"{(percentile(durable, 50) - percentile(direct, 50)) * 1000:.1f}",
                    f"{(percentile(durable, 99) - percentile(direct, 99)) * 1000:.1f}",
                ],
            ],
        )
    )
    print(text)
    note(f"logs in {workdir}")
    if not args.no_record:
        append_results("Outbox relay", text)


if __name__ == "__main__":
    main()

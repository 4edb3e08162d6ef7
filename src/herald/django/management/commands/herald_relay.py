"""``manage.py herald_relay``: publish the outbox, for deployments without Celery beat.

Runs until stopped (SIGTERM or Ctrl-C end it after the current round), or once with
``--once``. Any number may run at once, also beside the Celery task: relays lock what
they publish (``herald.django.outbox``).
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from herald.django.outbox import Relay, RelayReport


class Command(BaseCommand):
    help = "Publish the pending rows of the realtime outbox, and prune old sent rows."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias (default: default)")
        parser.add_argument(
            "--interval", type=float, default=1.0, help="seconds to wait when nothing is pending (default 1)"
        )
        parser.add_argument("--batch-size", type=int, default=None, help="rows per round (REALTIME_OUTBOX_BATCH_SIZE)")
        parser.add_argument(
            "--prune-every", type=float, default=300.0, help="seconds between prunings of sent rows (default 300)"
        )
        parser.add_argument("--once", action="store_true", help="publish what is pending now, prune, and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        if alias not in connections:
            raise CommandError(f"unknown database {alias!r}; DATABASES has {sorted(connections)}")
        if options["interval"] <= 0 or options["prune_every"] <= 0:
            raise CommandError("--interval and --prune-every must be positive numbers of seconds")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        relay = Relay(alias, batch_size=options["batch_size"])
        if options["once"]:
            report = relay.drain()
            pruned = relay.prune()
            self.stdout.write(_summary(report) + f", {pruned} pruned")
            return
        self._serve(relay, options["interval"], options["prune_every"], options["verbosity"])

    def _serve(self, relay: Relay, interval: float, prune_every: float, verbosity: int) -> None:
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(f"herald_relay: relaying the outbox of {relay.using!r} (Ctrl-C stops)")
        self.stdout.flush()
        next_prune = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    report = relay.run_once()
                    if time.monotonic() >= next_prune:
                        relay.prune()
                        next_prune = time.monotonic() + prune_every
                except DatabaseError as exc:
                    # The database went away or refused a round: start over with a fresh
                    # connection after a pause, rather than dying with rows left to publish.
                    self.stderr.write(f"herald_relay: database error ({exc}); retrying in {interval:g}s")
                    connections[relay.using].close()
                    stop.wait(interval)
                    continue
                if (report.sent or report.parked or report.retried) and verbosity >= 2:
                    self.stdout.write(_summary(report))
                if report.sent + report.parked == 0:
                    stop.wait(interval)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("herald_relay: stopped")


def _summary(report: RelayReport) -> str:
    return f"{report.sent} sent, {report.retried} to retry, {report.parked} parked"

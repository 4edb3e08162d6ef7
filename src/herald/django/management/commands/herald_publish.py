"""``manage.py herald_publish tenant_7 order.completed '{"id": 1}'``: publish one event now,
through the configured API (``push_event``), and print the gateway's answer."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from herald.apiclient import ApiError
from herald.django.publisher import push_event, resolve_channel


class Command(BaseCommand):
    help = "Publish {type, payload} to a channel through REALTIME_API_URL; PAYLOAD is JSON, or - for stdin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("channel", help="channel as the application names it (the prefix is added once)")
        parser.add_argument("event_type", help="the event's type, e.g. order.completed")
        parser.add_argument("payload", help="the payload as JSON, or - to read it from standard input")
        parser.add_argument("--recoverable", action="store_true", help="publish to critical:CHANNEL (history)")
        parser.add_argument("--idempotency-key", default=None, help="a key that makes a repeat harmless")

    def handle(self, *args: Any, **options: Any) -> None:
        text = sys.stdin.read() if options["payload"] == "-" else options["payload"]
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"PAYLOAD is not valid JSON ({exc})") from None
        channel = options["channel"]
        try:
            target = resolve_channel(channel, recoverable=options["recoverable"])
            result = push_event(
                channel,
                options["event_type"],
                payload,
                recoverable=options["recoverable"],
                idempotency_key=options["idempotency_key"],
            )
        except ValueError as exc:
            raise CommandError(f"bad channel: {exc}") from None
        except ApiError as exc:
            kind = "try again later" if exc.transient else "the request itself was refused"
            raise CommandError(f"publish to {channel!r} failed ({kind}): {exc.reason}") from None
        self.stdout.write(json.dumps({"channel": target, "result": result}))

"""``manage.py herald_ping``: is the gateway's API reachable with the configured URL and key?

Says what is wrong in words (and exits with status 1), or how the gateway answered.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from herald.apiclient import ApiClient, ApiError
from herald.django.conf import get_settings


class Command(BaseCommand):
    help = "Check REALTIME_API_URL and REALTIME_API_KEY against the gateway, and say what is wrong."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer (default 5)")

    def handle(self, *args: Any, **options: Any) -> None:
        s = get_settings()
        url, key = s.api_url, s.api_key
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(
                f"REALTIME_API_URL is {url!r}: it must be the gateway's API address, "
                "e.g. 'http://herald.internal:8000/api'."
            )
        if not key:
            raise CommandError("REALTIME_API_KEY is empty: set it to the gateway's api_key.")
        started = time.monotonic()
        try:
            with ApiClient(url, key, timeout=options["timeout"]) as client:
                result = client.info()
        except ApiError as exc:
            raise CommandError(explain(url, exc, options["timeout"])) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        found = result.get("nodes")
        nodes: list[Any] = found if isinstance(found, list) else []
        clients = sum(n.get("num_clients", 0) for n in nodes if isinstance(n, dict))
        self.stdout.write(
            f"OK: the gateway at {url} accepted REALTIME_API_KEY and answered in {elapsed_ms:.0f} ms "
            f"({len(nodes)} node(s), {clients} connected client(s))."
        )


def explain(url: str, exc: ApiError, timeout: float) -> str:
    """What an ``info`` failure says about the configuration, in words."""
    reason = exc.reason
    if exc.status == 401:
        return (
            f"the gateway at {url} refused REALTIME_API_KEY (HTTP 401): "
            "it must be exactly the gateway's api_key (or one of its api_keys)."
        )
    if exc.status == 404:
        return (
            f"nothing answers at {url}/info (HTTP 404): REALTIME_API_URL must be the gateway's API base, "
            "which ends in /api (e.g. 'http://herald.internal:8000/api')."
        )
    if exc.status is not None and exc.status >= 500:
        return f"the gateway at {url} is in trouble ({reason}); look at its log."
    if "refused" in reason.lower():
        return (
            f"nothing listens at {url} (connection refused): is the gateway running, "
            "and are the host and port in REALTIME_API_URL right?"
        )
    if "timed out" in reason:
        return (
            f"the gateway at {url} did not answer within {timeout:g}s: is the address right, "
            "and does a firewall let this machine through?"
        )
    if "not JSON" in reason:
        return (
            f"something at {url} answered, but it is not the gateway's API ({reason}): "
            "a proxy or another service is in the way."
        )
    if exc.status is not None:
        return f"the gateway at {url} refused the request ({reason})."
    return f"cannot reach the gateway at {url} ({reason}): check the host name in REALTIME_API_URL."

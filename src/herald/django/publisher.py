"""Publishing events to the gateway over HTTP, synchronously; the Celery task wraps this.

The wire shape is fixed: ``{"channel": ..., "data": {"type": ..., "payload": ...}}`` to
``{REALTIME_API_URL}/publish`` with ``X-API-Key``. Failures arrive classified
(``TransientApiError`` / ``PermanentApiError`` from ``herald.apiclient``) so callers only
choose between "retry later" and "give up".
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from herald.apiclient import ApiClient, PermanentApiError
from herald.django.channels import recoverable as in_recoverable_namespace
from herald.django.channels import with_prefix
from herald.django.conf import HeraldSettings, get_settings

_clients: dict[tuple[str, str], ApiClient] = {}
_clients_lock = threading.Lock()


def _forget_clients_after_fork() -> None:
    # Pooled sockets must not be shared with the parent (Celery's prefork pool forks
    # after Django has started): the child builds its own clients. The parent's are
    # dropped, not closed, since closing them here would tear down the parent's pool.
    global _clients_lock
    _clients.clear()
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_clients_after_fork)


def get_client(settings: HeraldSettings | None = None) -> ApiClient:
    """The process-wide pooled client for the configured gateway."""
    s = settings or get_settings()
    key = (s.api_url, s.api_key)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = ApiClient(s.api_url, s.api_key, timeout=s.publish_timeout)
        return client


def close_clients() -> None:
    """Close the pooled connections (at worker shutdown, or between tests)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


def resolve_channel(channel: str, *, recoverable: bool = False, settings: HeraldSettings | None = None) -> str:
    """The gateway channel for an application channel: ``critical:`` if recoverable, then the
    environment prefix, each applied exactly once. ValueError for a malformed name."""
    s = settings or get_settings()
    if not isinstance(channel, str) or not channel:
        raise ValueError(f"channel must be a non-empty string, not {channel!r}")
    if recoverable:
        channel = in_recoverable_namespace(channel)
    return with_prefix(channel, s.channel_prefix)


def push_event(
    channel: str,
    event_type: str,
    payload: Any,
    *,
    recoverable: bool = False,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Publish one event now; returns the gateway's result (``offset``/``epoch`` with history).

    ``recoverable=True`` publishes to ``critical:{channel}`` (history, so clients recover
    what they missed while offline). ``timeout`` defaults to ``REALTIME_PUBLISH_TIMEOUT``.
    Pass an ``idempotency_key`` whenever the call may be retried (decisions §6).
    """
    s = get_settings()
    try:
        target = resolve_channel(channel, recoverable=recoverable, settings=s)
    except ValueError as exc:
        raise PermanentApiError("publish", str(exc)) from None
    if not isinstance(event_type, str) or not event_type:
        raise PermanentApiError("publish", f"event_type must be a non-empty string, not {event_type!r}")
    return get_client(s).publish(
        target,
        {"type": event_type, "payload": payload},
        idempotency_key=idempotency_key,
        timeout=s.publish_timeout if timeout is None else timeout,
    )

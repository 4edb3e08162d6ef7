"""Publishing events to the gateway over HTTP, from sync code (``push_event``; the Celery
task wraps it) or from async code (``apush_event``, for ASGI apps).

The wire shape is fixed: ``{"channel": ..., "data": {"type": ..., "payload": ...}}`` to
``{REALTIME_API_URL}/publish`` with ``X-API-Key``. Failures arrive classified
(``TransientApiError`` / ``PermanentApiError`` from ``herald.apiclient``) so callers only
choose between "retry later" and "give up".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
import weakref
from collections.abc import AsyncGenerator
from typing import Any

from herald.aioapiclient import AsyncApiClient
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


class _LoopClients:
    """The async clients of one event loop, closed when that loop shuts down."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, str], AsyncApiClient] = {}
        # An async generator parked at its ``yield``: ``loop.shutdown_asyncgens()`` (run by
        # ``asyncio.run``, asgiref's ``async_to_sync`` and ASGI servers before a loop
        # closes) resumes it, and its ``finally`` closes the sessions on their own loop.
        self.closer = self._close_at_shutdown()
        step = self.closer.__anext__()
        with contextlib.suppress(StopIteration):
            step.send(None)

    async def _close_at_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        clients = list(self.clients.values())
        self.clients.clear()
        for client in clients:
            await client.close()


_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = weakref.WeakKeyDictionary()


def get_async_client(settings: HeraldSettings | None = None) -> AsyncApiClient:
    """The running event loop's pooled async client for the configured gateway.

    An aiohttp session belongs to one loop: each loop gets its own client, closed when
    the loop shuts down (or by ``aclose_clients``).
    """
    s = settings or get_settings()
    loop = asyncio.get_running_loop()
    per_loop = _loop_clients.get(loop)
    if per_loop is None:
        per_loop = _loop_clients[loop] = _LoopClients()
    key = (s.api_url, s.api_key)
    client = per_loop.clients.get(key)
    if client is None:
        client = per_loop.clients[key] = AsyncApiClient(s.api_url, s.api_key, timeout=s.publish_timeout)
    return client


async def aclose_clients() -> None:
    """Close the running loop's async clients now (e.g. at the end of a test)."""
    per_loop = _loop_clients.get(asyncio.get_running_loop())
    if per_loop is not None:
        await per_loop.aclose()


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
    target, data = event_publication(channel, event_type, payload, recoverable=recoverable, settings=s)
    return get_client(s).publish(
        target, data, idempotency_key=idempotency_key, timeout=s.publish_timeout if timeout is None else timeout
    )


async def apush_event(
    channel: str,
    event_type: str,
    payload: Any,
    *,
    recoverable: bool = False,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """``push_event`` for async code: the same request, result and error classes, and the
    event loop is never blocked (the HTTP call is an aiohttp request on the running loop)."""
    s = get_settings()
    target, data = event_publication(channel, event_type, payload, recoverable=recoverable, settings=s)
    return await get_async_client(s).publish(
        target, data, idempotency_key=idempotency_key, timeout=s.publish_timeout if timeout is None else timeout
    )


def event_publication(
    channel: str, event_type: str, payload: Any, *, recoverable: bool = False, settings: HeraldSettings | None = None
) -> tuple[str, dict[str, Any]]:
    """The gateway channel and the data of an event, or PermanentApiError for bad arguments."""
    try:
        target = resolve_channel(channel, recoverable=recoverable, settings=settings)
    except ValueError as exc:
        raise PermanentApiError("publish", str(exc)) from None
    if not isinstance(event_type, str) or not event_type:
        raise PermanentApiError("publish", f"event_type must be a non-empty string, not {event_type!r}")
    return target, {"type": event_type, "payload": payload}

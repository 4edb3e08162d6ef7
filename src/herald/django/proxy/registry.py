"""The publish validators and RPC handlers, registered by decorator.

    @realtime_publish("chat")
    def chat_message(user, channel, data):      # channel without the environment prefix
        ...                                     # raise HeraldProxyError to refuse,
        return {"text": ..., "id": message.pk}  # return new data to publish instead (or None)

    @realtime_rpc("orders.search")
    def search(user, data):
        return {"orders": [...]}                # any JSON-serialisable value

Put them in a ``realtime.py`` module of an installed app: the proxy views import every app's
``realtime`` module the first time they look something up (as the admin does with
``admin.py``), so nothing else has to import it.

Anonymous users (connections accepted with ``user: ""``) are refused before the function is
called, unless it is registered with ``allow_anonymous=True``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules

PublishValidator = Callable[[Any, str, Any], Any]
RpcHandler = Callable[[Any, Any], Any]
F = TypeVar("F", bound=Callable[..., Any])

# A namespace as the gateway parses it: no boundary, no private marker (channels.py).
_NAMESPACE_RE: Final = re.compile(r"[A-Za-z0-9_.\-]*\Z")
AUTODISCOVER_MODULE: Final = "realtime"


@dataclass(frozen=True, slots=True)
class Registered:
    function: Callable[..., Any]
    allow_anonymous: bool


_publish: dict[str, Registered] = {}
_rpc: dict[str, Registered] = {}
_discovered = False
_discover_lock = threading.Lock()


def _register(table: dict[str, Registered], kind: str, key: str, entry: Registered) -> None:
    existing = table.get(key)
    # Re-importing the same module (autoreload, tests) registers the same function again.
    if existing is not None and _qualname(existing.function) != _qualname(entry.function):
        raise ImproperlyConfigured(
            f"{kind} {key!r} is registered twice: {_qualname(existing.function)} and {_qualname(entry.function)}"
        )
    table[key] = entry


def _qualname(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"


def realtime_publish(namespace: str, *, allow_anonymous: bool = False) -> Callable[[F], F]:
    """Register the validator of client publications in ``namespace`` ("" = no namespace).

    The function gets ``(user, channel, data)``; the channel has no environment prefix. It
    returns None to publish ``data`` as sent, or the data to publish instead; it raises
    ``HeraldProxyError`` to refuse with that error. Namespaces without a validator are refused
    with 103.
    """
    if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
        raise ValueError(f"namespace {namespace!r} may only contain letters, digits, '_', '.' and '-'")

    def decorate(function: F) -> F:
        _register(_publish, "publish validator for namespace", namespace, Registered(function, allow_anonymous))
        return function

    return decorate


def realtime_rpc(method: str, *, allow_anonymous: bool = False) -> Callable[[F], F]:
    """Register the handler of RPC ``method``: ``(user, data) -> JSON-serialisable result``.

    It raises ``HeraldProxyError`` to answer with that error. Unknown methods get 104.
    """
    if not isinstance(method, str) or not method:
        raise ValueError("an RPC method name must be a non-empty string")

    def decorate(function: F) -> F:
        _register(_rpc, "RPC method", method, Registered(function, allow_anonymous))
        return function

    return decorate


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    with _discover_lock:
        if not _discovered:
            autodiscover_modules(AUTODISCOVER_MODULE)
            _discovered = True


def publish_validator(namespace: str) -> Registered | None:
    _discover()
    return _publish.get(namespace)


def rpc_handler(method: str) -> Registered | None:
    _discover()
    return _rpc.get(method)


def unregister(*, publish: str | None = None, rpc: str | None = None) -> None:
    """Remove a registration (for tests that register functions of their own)."""
    if publish is not None:
        _publish.pop(publish, None)
    if rpc is not None:
        _rpc.pop(rpc, None)

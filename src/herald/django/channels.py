"""Channel names: the default grants and the environment prefix (decisions §1, §2).

A channel is ``[$][namespace:]name``; the namespace ends at the first ``:``. The
environment prefix belongs at the start of *name*, after the namespace, so
``critical:tenant_42`` becomes ``critical:prod_tenant_42``. Every function here applies
it exactly once, whether the caller passed a prefixed name or not, so code may hand
around either form without double prefixes creeping in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, Final

from django.utils.module_loading import import_string

from herald.django.conf import HeraldSettings, get_settings

# The namespace the gateway keeps history for, so clients recover missed events.
RECOVERABLE_NAMESPACE: Final = "critical"
NAMESPACE_BOUNDARY: Final = ":"
PRIVATE_PREFIX: Final = "$"
# A prefix must not change how the gateway parses the channel: no namespace boundary,
# private marker or user-limited ``#``, and plain ASCII so it is the same everywhere.
PREFIX_RE: Final = re.compile(r"[A-Za-z0-9_.\-]*\Z")

ChannelsHook = Callable[[Any], Iterable[str]]
AuthorizerHook = Callable[[Any, str], bool]


def split_channel(channel: str) -> tuple[str, str, str]:
    """``(private marker, namespace with boundary, name)``; ``$ns:a`` → ``("$", "ns:", "a")``."""
    private = PRIVATE_PREFIX if channel.startswith(PRIVATE_PREFIX) else ""
    rest = channel[len(private) :]
    namespace, boundary, name = rest.partition(NAMESPACE_BOUNDARY)
    if not boundary:
        return private, "", rest
    return private, namespace + boundary, name


def with_prefix(channel: str, prefix: str) -> str:
    """``channel`` with the environment prefix at the start of its name, exactly once."""
    private, namespace, name = split_channel(channel)
    if not name:
        raise ValueError(f"channel {channel!r} has an empty name")
    if prefix and not name.startswith(prefix):
        name = prefix + name
    return private + namespace + name


def without_prefix(channel: str, prefix: str) -> str | None:
    """The channel as the application names it, or None if it is outside ``prefix``."""
    private, namespace, name = split_channel(channel)
    if not name.startswith(prefix) or len(name) == len(prefix):
        return None
    return private + namespace + name[len(prefix) :]


def recoverable(channel: str) -> str:
    """The channel in the history-keeping namespace: ``tenant_1`` → ``critical:tenant_1``."""
    private, namespace, name = split_channel(channel)
    if namespace == RECOVERABLE_NAMESPACE + NAMESPACE_BOUNDARY:
        return channel
    if namespace:
        raise ValueError(
            f"channel {channel!r} is in namespace {namespace[:-1]!r}; "
            f"recoverable=True needs a channel without a namespace or in {RECOVERABLE_NAMESPACE!r}"
        )
    return f"{private}{RECOVERABLE_NAMESPACE}{NAMESPACE_BOUNDARY}{name}"


def default_channels(user: Any) -> list[str]:
    """The default grants: the user's own channels, and the tenant's when there is one."""
    channels = [f"user_{user.pk}", recoverable(f"user_{user.pk}")]
    tenant_id = getattr(user, "tenant_id", None)
    if tenant_id is not None and tenant_id != "":
        channels += [f"tenant_{tenant_id}", recoverable(f"tenant_{tenant_id}")]
    return channels


def deny_all(user: Any, channel: str) -> bool:
    """Default subscription-token authorizer: nothing beyond the connection grants."""
    return False


@lru_cache(maxsize=16)
def load_hook(path: str) -> Callable[..., Any]:
    hook = import_string(path)
    if not callable(hook):
        raise TypeError(f"{path} is not callable")
    return hook  # type: ignore[no-any-return]


def granted_channels(user: Any, settings: HeraldSettings | None = None) -> list[str]:
    """The exact grant list for a connection token: the hook's channels, prefixed, deduplicated."""
    settings = settings or get_settings()
    hook: ChannelsHook = load_hook(settings.channels)
    channels = hook(user)
    if isinstance(channels, str):
        # A bare string is iterable too; granting its characters would be a silent bug.
        raise TypeError(f"{settings.channels} must return a list of channel names, not a string")
    granted: dict[str, None] = {}
    for channel in channels:
        if not isinstance(channel, str):
            raise TypeError(f"{settings.channels} returned a non-string channel: {channel!r}")
        granted[with_prefix(channel, settings.channel_prefix)] = None
    return list(granted)

"""A Django Channels channel layer that publishes to Herald: the way off Channels.

Point ``CHANNEL_LAYERS`` at it and the code that publishes keeps working unchanged::

    async_to_sync(get_channel_layer().group_send)("tenant_7", {"type": "order.paid", "id": 17})

publishes ``{"type": "order.paid", "id": 17}`` to the Herald channel ``tenant_7`` (with
``REALTIME_CHANNEL_PREFIX``, and in ``critical:`` when the group matches one of the
``recoverable_groups`` patterns), while the browsers move from Channels consumers to the
Herald gateway. See ``docs/migrating-from-channels.md``.

```python
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "herald.django.channels_layer.HeraldChannelLayer",
        "CONFIG": {"recoverable_groups": ["tenant_*"]},
    }
}
```

Only publishing is supported: there are no consumers left to ``receive``, and group
membership is the token's grants (``REALTIME_CHANNELS``), so ``send``, ``receive``,
``new_channel``, ``group_add`` and ``group_discard`` raise with an explanation instead of
silently doing nothing. ``group_send`` raises the errors ``apush_event`` raises
(``herald.apiclient.TransientApiError`` / ``PermanentApiError``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

from channels.layers import BaseChannelLayer

from herald.apiresults import PermanentApiError
from herald.django.conf import get_settings
from herald.django.publisher import get_async_client, new_idempotency_key, resolve_channel

_MOVED = (
    "HeraldChannelLayer only publishes (group_send): WebSocket clients connect to the Herald "
    "gateway, and what they may subscribe to is the token's grants (REALTIME_CHANNELS). "
    "Consumers still on Channels need a channel layer of their own (a second CHANNEL_LAYERS alias)."
)


class HeraldChannelLayer(BaseChannelLayer):  # type: ignore[misc]  # channels ships no type information
    extensions = ["groups"]

    def __init__(
        self,
        expiry: int = 60,
        capacity: int = 100,
        channel_capacity: dict[str, int] | None = None,
        recoverable_groups: Iterable[str] = (),
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        if isinstance(recoverable_groups, str):
            raise TypeError("recoverable_groups must be a list of group name patterns, not a string")
        self.recoverable_groups = [re.compile(fnmatch.translate(p)) for p in recoverable_groups]

    def herald_channel(self, group: str) -> str:
        """The gateway channel a group's messages go to."""
        self.require_valid_group_name(group)
        recoverable = any(pattern.match(group) for pattern in self.recoverable_groups)
        return resolve_channel(group, recoverable=recoverable)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Publish ``message`` (a dict with a ``type``, as Channels requires) to the group's channel."""
        if not isinstance(message, dict) or "type" not in message:
            raise TypeError(f"a channel layer message is a dict with a 'type' key, not {message!r}")
        channel = self.herald_channel(group)
        s = get_settings()
        if not s.api_url:
            raise PermanentApiError("publish", "REALTIME_API_URL is not set")
        await get_async_client(s).publish(channel, message, idempotency_key=new_idempotency_key())

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        raise NotImplementedError(_MOVED)

    async def receive(self, channel: str) -> dict[str, Any]:
        raise NotImplementedError(_MOVED)

    async def new_channel(self, prefix: str = "specific.") -> str:
        raise NotImplementedError(_MOVED)

    async def group_add(self, group: str, channel: str) -> None:
        raise NotImplementedError(_MOVED)

    async def group_discard(self, group: str, channel: str) -> None:
        raise NotImplementedError(_MOVED)

    async def flush(self) -> None:
        """Nothing is buffered here: every group_send is one publish."""

"""HeraldChannelLayer: Channels publishing code, unchanged, reaches an official-SDK subscriber."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import override_settings

from herald.django.channels_layer import HeraldChannelLayer
from tests.django_app.support.common import unique
from tests.django_app.support.sdk import SyncListener
from tests.support.gateway import GatewayProcess
from tests.support.tokens import token

LAYERS = {
    "default": {
        "BACKEND": "herald.django.channels_layer.HeraldChannelLayer",
        "CONFIG": {"recoverable_groups": ["orders_*"]},
    }
}


@pytest.fixture
def layer(gateway: GatewayProcess) -> Iterator[HeraldChannelLayer]:
    with override_settings(CHANNEL_LAYERS=LAYERS, REALTIME_API_URL=gateway.api_url):
        from channels.layers import channel_layers

        channel_layers.backends.clear()  # built from the overridden settings
        try:
            found = get_channel_layer()
            assert isinstance(found, HeraldChannelLayer)
            yield found
        finally:
            channel_layers.backends.clear()


def test_group_send_from_sync_code_reaches_an_sdk_subscriber(
    layer: HeraldChannelLayer, gateway: GatewayProcess
) -> None:
    plain, recoverable = unique("chat"), unique("orders")
    channels = [f"test_{plain}", f"critical:test_{recoverable}"]
    with SyncListener(gateway.ws_url, token("u1", channels)) as listener:
        for channel in channels:
            listener.subscribe(channel)
        # Exactly what a Channels project writes in a view or a Celery task.
        async_to_sync(get_channel_layer().group_send)(plain, {"type": "chat.message", "text": "hi"})
        async_to_sync(get_channel_layer().group_send)(recoverable, {"type": "order.paid", "id": 7})
        assert listener.wait_count(channels[0], 1) == [{"type": "chat.message", "text": "hi"}]
        assert listener.wait_count(channels[1], 1) == [{"type": "order.paid", "id": 7}]


async def test_group_send_from_async_code(layer: HeraldChannelLayer) -> None:
    await layer.group_send(unique("chat"), {"type": "chat.message"})


async def test_what_the_layer_cannot_do_is_refused_with_an_explanation(layer: HeraldChannelLayer) -> None:
    with pytest.raises(TypeError, match="Group name must be a valid"):
        await layer.group_send("bad name!", {"type": "x"})
    with pytest.raises(TypeError, match="'type' key"):
        await layer.group_send("room", {"text": "no type"})
    for call in (layer.group_add("room", "specific.abc"), layer.receive("specific.abc"), layer.new_channel()):
        with pytest.raises(NotImplementedError, match="only publishes"):
            await call

from __future__ import annotations

from channels.layers import get_channel_layer  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponse, JsonResponse


async def publish(request: HttpRequest, group: str) -> HttpResponse:
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(group, {"type": "push.message", "text": request.body.decode()})
    return JsonResponse({})


async def close(request: HttpRequest, group: str) -> HttpResponse:
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(group, {"type": "push.close"})
    return JsonResponse({})


async def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({})

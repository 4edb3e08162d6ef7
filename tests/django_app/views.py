"""Async views of the test project: what an ASGI project's own code does with apush_event."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from herald.apiclient import ApiError
from herald.django.publisher import apush_event


@csrf_exempt
async def publish(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    try:
        result = await apush_event(body["channel"], body["type"], body["payload"], recoverable=True)
    except ApiError as exc:
        return JsonResponse({"error": exc.reason, "transient": exc.transient}, status=502)
    return JsonResponse({"result": result})


async def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse("pong", content_type="text/plain")

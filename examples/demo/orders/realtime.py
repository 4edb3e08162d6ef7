"""Herald's token endpoint, spreading users over the gateway nodes when there are several.

With one node (``make run``) this is exactly ``herald.django.views.RealtimeTokenView``.
With the multi-node launcher, ``DEMO_SOCKET_URLS`` lists every node and each user is sent
to one of them by id, so two users of one tenant sit on different nodes and still see
each other's events: that crossing is what the Redis engine is for.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.request import Request
from rest_framework.response import Response

from herald.django.views import RealtimeTokenView


class NodePickingTokenView(RealtimeTokenView):
    def post(self, request: Request) -> Response:
        response = super().post(request)
        urls: list[str] = settings.DEMO_SOCKET_URLS
        response.data["socket_url"] = urls[int(request.user.pk or 0) % len(urls)]
        return response

"""Token endpoints for Django REST framework (any DRF authentication: session, token, JWT).

``POST`` → ``{"token": ..., "socket_url": ...}``; ``POST {"channel": ...}`` to the
subscription endpoint → ``{"token": ...}``. Projects without DRF use ``plain_views.py``;
``urls.py`` picks one or the other.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.utils.cache import add_never_cache_headers
from rest_framework import exceptions, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from herald.django.tokens import RealtimeTokenService


class _TokenView(APIView):
    permission_classes = [IsAuthenticated]
    # JSON only: a browsable HTML page would render a live credential.
    renderer_classes = [JSONRenderer]
    token_service_class: type[RealtimeTokenService] = RealtimeTokenService

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        # A token must never be served from a cache to another user.
        add_never_cache_headers(response)
        return response


class RealtimeTokenView(_TokenView):
    """A connection token for the requesting user and where to connect with it."""

    def post(self, request: Request) -> Response:
        service = self.token_service_class()
        token = service.generate_connection_token(request.user)
        return Response({"token": token, "socket_url": service.settings.socket_url})


class RealtimeSubscriptionTokenView(_TokenView):
    """A subscription token for one channel, if the authorizer hook allows it."""

    def post(self, request: Request) -> Response:
        channel = request.data.get("channel") if hasattr(request.data, "get") else None
        if not isinstance(channel, str) or not channel:
            return Response({"detail": "'channel' is required."}, status=status.HTTP_400_BAD_REQUEST)
        try:
            token = self.token_service_class().generate_subscription_token(request.user, channel)
        except PermissionDenied:
            raise exceptions.PermissionDenied() from None
        return Response({"token": token})

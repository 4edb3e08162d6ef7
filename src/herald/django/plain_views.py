"""Token endpoints for projects without Django REST framework (session authentication).

Same answers as ``views.py``. CSRF is enforced the way DRF's session authentication does
it: only for authenticated users (an anonymous request has no session to ride on) and
answered in JSON, so a script gets ``{"detail": ...}`` rather than Django's HTML page.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from herald.django.tokens import RealtimeTokenService


def _no_response(request: HttpRequest) -> HttpResponse:
    raise AssertionError("the CSRF check never calls the next handler")


def _csrf_ok(request: HttpRequest) -> bool:
    check = CsrfViewMiddleware(_no_response)
    check.process_request(request)
    # process_view answers None when the request passes, a 403 response otherwise.
    return check.process_view(request, _no_response, (), {}) is None


def _json(data: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status)
    add_never_cache_headers(response)
    return response


# csrf_exempt only moves the check into ``dispatch`` (after authentication), see above.
@method_decorator(csrf_exempt, name="dispatch")
class _PlainTokenView(View):
    http_method_names = ["post"]
    token_service_class: type[RealtimeTokenService] = RealtimeTokenService

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return self.http_method_not_allowed(request, *args, **kwargs)
        if not request.user.is_authenticated or not request.user.is_active:
            return _json({"detail": "Authentication credentials were not provided."}, status=401)
        if not _csrf_ok(request):
            return _json({"detail": "CSRF check failed."}, status=403)
        try:
            return super().dispatch(request, *args, **kwargs)
        except PermissionDenied:
            return _json({"detail": "You do not have permission to perform this action."}, status=403)


class PlainRealtimeTokenView(_PlainTokenView):
    def post(self, request: HttpRequest) -> HttpResponse:
        service = self.token_service_class()
        token = service.generate_connection_token(request.user)
        return _json({"token": token, "socket_url": service.settings.socket_url})


class PlainRealtimeSubscriptionTokenView(_PlainTokenView):
    def post(self, request: HttpRequest) -> HttpResponse:
        channel = _channel_from(request)
        if not channel:
            return _json({"detail": "'channel' is required."}, status=400)
        token = self.token_service_class().generate_subscription_token(request.user, channel)
        return _json({"token": token})


def _channel_from(request: HttpRequest) -> str:
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return ""
        channel = body.get("channel") if isinstance(body, dict) else None
    else:
        channel = request.POST.get("channel")
    return channel if isinstance(channel, str) else ""

"""Token endpoints as async views, for ASGI projects: no request ties up the event loop.

Same answers, authentication (session) and CSRF rules as ``plain_views.py``;
``path("realtime/", include("herald.django.async_urls"))``. The work that may touch the
database (loading the session's user, the ``REALTIME_CHANNELS`` and authorizer hooks)
runs in Django's thread for sync code; signing the token is microseconds of CPU.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from herald.django.plain_views import _channel_from, _csrf_ok, _json
from herald.django.tokens import RealtimeTokenService


async def _user(request: HttpRequest) -> Any:
    auser = getattr(request, "auser", None)  # Django 5.0+
    if auser is not None:
        return await auser()

    def load() -> Any:
        _ = request.user.is_authenticated  # the lazy user loads the session here
        return request.user

    return await sync_to_async(load)()


# csrf_exempt only moves the check into ``dispatch`` (after authentication), as in plain_views.
@method_decorator(csrf_exempt, name="dispatch")
class _AsyncTokenView(View):
    http_method_names = ["post"]
    token_service_class: type[RealtimeTokenService] = RealtimeTokenService

    async def dispatch(  # type: ignore[override]  # Django awaits the dispatch of an async view
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        user = await _user(request)
        if not user.is_authenticated or not user.is_active:
            return _json({"detail": "Authentication credentials were not provided."}, status=401)
        if not await sync_to_async(_csrf_ok)(request):
            return _json({"detail": "CSRF check failed."}, status=403)
        try:
            return await self.answer(request, user)
        except PermissionDenied:
            return _json({"detail": "You do not have permission to perform this action."}, status=403)

    async def answer(self, request: HttpRequest, user: Any) -> HttpResponse:
        raise NotImplementedError

    async def post(self, request: HttpRequest) -> HttpResponse:
        # Never reached (dispatch answers); declared so Django sees an async view.
        raise NotImplementedError


class AsyncRealtimeTokenView(_AsyncTokenView):
    async def answer(self, request: HttpRequest, user: Any) -> HttpResponse:
        service = self.token_service_class()
        token = await sync_to_async(service.generate_connection_token)(user)
        return _json({"token": token, "socket_url": service.settings.socket_url})


class AsyncRealtimeSubscriptionTokenView(_AsyncTokenView):
    async def answer(self, request: HttpRequest, user: Any) -> HttpResponse:
        channel = _channel_from(request)
        if not channel:
            return _json({"detail": "'channel' is required."}, status=400)
        token = await sync_to_async(self.token_service_class().generate_subscription_token)(user, channel)
        return _json({"token": token})


__all__ = ["AsyncRealtimeSubscriptionTokenView", "AsyncRealtimeTokenView"]

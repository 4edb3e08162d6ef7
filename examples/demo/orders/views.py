"""Pages (log in, dashboard) and the JSON endpoints the dashboard calls."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from herald.apiclient import ApiError
from herald.django.channels import with_prefix
from herald.django.publisher import resolve_channel
from orders import services
from orders.models import ChatLine, Tenant, User


def home(request: HttpRequest) -> HttpResponseBase:
    return redirect("dashboard" if request.user.is_authenticated else "login")


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


class DemoLoginView(auth_views.LoginView):
    template_name = "orders/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["demo_users"] = User.objects.filter(tenant__isnull=False).select_related("tenant").order_by("pk")
        return context


def _tenant_of(user: Any) -> Tenant | None:
    return user.tenant if isinstance(user, User) else None


@never_cache
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    tenant = _tenant_of(user)
    if not isinstance(user, User) or tenant is None:
        return render(request, "orders/no_tenant.html", status=403)
    config = {
        "tokenUrl": reverse("realtime-token"),
        "stateUrl": reverse("state"),
        "ordersUrl": reverse("create-order"),
        "chatUrl": reverse("chat"),
        "loginUrl": reverse("login"),
        "user": {"id": user.pk, "name": user.get_username()},
        # For display and for routing events to the right part of the page. The
        # client subscribes to whatever its token grants, and nothing else.
        "channels": {
            "orders": resolve_channel(services.tenant_channel(tenant.pk), recoverable=True),
            "chat": resolve_channel(services.tenant_channel(tenant.pk)),
            "notifications": resolve_channel(services.user_channel(user.pk)),
        },
    }
    context = {
        "tenant": tenant,
        "config": config,
        "state": services.tenant_state(tenant),
        "complete_delay": settings.DEMO_COMPLETE_DELAY,
    }
    return render(request, "orders/dashboard.html", context)


class _TenantView(APIView):
    """Session-authenticated JSON; the user must belong to a tenant."""

    def tenant_user(self, request: Request) -> tuple[User, Tenant]:
        user = request.user
        tenant = _tenant_of(user)
        if not isinstance(user, User) or tenant is None:
            raise PermissionDenied("You belong to no tenant.")
        return user, tenant


class StateView(_TenantView):
    def get(self, request: Request) -> Response:
        _, tenant = self.tenant_user(request)
        response = Response(services.tenant_state(tenant))
        response["Cache-Control"] = "no-store"
        return response


class CreateOrderView(_TenantView):
    def post(self, request: Request) -> Response:
        user, _ = self.tenant_user(request)
        order = services.create_order(user)
        return Response(services.order_data(order), status=status.HTTP_201_CREATED)


class ChatView(_TenantView):
    def post(self, request: Request) -> Response:
        user, _ = self.tenant_user(request)
        data = request.data if isinstance(request.data, dict) else {}
        kind, text = data.get("kind"), data.get("text", "")
        if kind not in services.CHAT_KINDS or not isinstance(text, str):
            return Response({"detail": "kind must be 'typing' or 'message'."}, status=status.HTTP_400_BAD_REQUEST)
        if kind == "message" and not text.strip():
            return Response({"detail": "A message needs text."}, status=status.HTTP_400_BAD_REQUEST)
        try:
            services.post_chat(user, kind, text.strip())
        except ApiError as exc:
            return Response(
                {"detail": f"The gateway did not take it: {exc.reason}"}, status=status.HTTP_503_SERVICE_UNAVAILABLE
            )
        return Response(status=status.HTTP_202_ACCEPTED)


@never_cache
@login_required
def live_chat(request: HttpRequest) -> HttpResponse:
    """The live chat in proxy mode: the page connects with no token at all. The gateway asks
    Django (herald.django.proxy) who the session cookie belongs to, whether the tenant's chat
    channel may be subscribed, and whether each line may be published (and stores it)."""
    user = request.user
    tenant = _tenant_of(user)
    if not isinstance(user, User) or tenant is None:
        return render(request, "orders/no_tenant.html", status=403)
    recent = ChatLine.objects.filter(tenant=tenant).select_related("author").order_by("-id")[:20]
    config = {
        "socketUrl": settings.REALTIME_SOCKET_URL,
        "channel": with_prefix(services.chat_channel(tenant.pk), settings.REALTIME_CHANNEL_PREFIX),
        "user": {"id": user.pk, "name": user.get_username()},
        "lines": [services.chat_line_data(line) for line in reversed(recent)],
    }
    return render(request, "orders/live_chat.html", {"tenant": tenant, "config": config})

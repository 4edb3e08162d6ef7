"""The async token endpoints (``async_views.py``), for ASGI projects:
``path("realtime/", include("herald.django.async_urls"))``."""

from __future__ import annotations

from django.urls import path

from herald.django.async_views import AsyncRealtimeSubscriptionTokenView, AsyncRealtimeTokenView

app_name = "herald"

urlpatterns = [
    path("token/", AsyncRealtimeTokenView.as_view(), name="token"),
    path("subscription-token/", AsyncRealtimeSubscriptionTokenView.as_view(), name="subscription-token"),
]

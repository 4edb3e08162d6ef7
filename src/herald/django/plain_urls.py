"""The plain-Django token endpoints even when DRF is installed:
``path("realtime/", include("herald.django.plain_urls"))``."""

from __future__ import annotations

from django.urls import path

from herald.django.plain_views import PlainRealtimeSubscriptionTokenView, PlainRealtimeTokenView

app_name = "herald"

urlpatterns = [
    path("token/", PlainRealtimeTokenView.as_view(), name="token"),
    path("subscription-token/", PlainRealtimeSubscriptionTokenView.as_view(), name="subscription-token"),
]

"""``path("realtime/", include("herald.django.urls"))`` → ``realtime/token/`` and
``realtime/subscription-token/`` (URL names ``herald:token``, ``herald:subscription-token``).

The DRF views are used when ``rest_framework`` is installed, so every DRF authentication
class of the project applies; otherwise the plain session-authenticated views
(``herald.django.plain_urls`` selects those explicitly).
"""

from __future__ import annotations

from django.apps import apps
from django.urls import URLPattern, path

app_name = "herald"

urlpatterns: list[URLPattern]

if apps.is_installed("rest_framework"):
    from herald.django.views import RealtimeSubscriptionTokenView, RealtimeTokenView

    urlpatterns = [
        path("token/", RealtimeTokenView.as_view(), name="token"),
        path("subscription-token/", RealtimeSubscriptionTokenView.as_view(), name="subscription-token"),
    ]
else:
    from herald.django.plain_urls import urlpatterns  # noqa: F401 (re-exported for include())

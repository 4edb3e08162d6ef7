from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("realtime/", include("herald.django.urls")),
    path("plain/realtime/", include("herald.django.plain_urls", namespace="herald-plain")),
]

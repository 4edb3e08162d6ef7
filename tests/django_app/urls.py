from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from tests.django_app import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("realtime/", include("herald.django.urls")),
    path("plain/realtime/", include("herald.django.plain_urls", namespace="herald-plain")),
    path("async/realtime/", include("herald.django.async_urls", namespace="herald-async")),
    path("realtime/proxy/", include("herald.django.proxy.urls")),
    path("async/publish/", views.publish),
    path("async/ping/", views.ping),
]

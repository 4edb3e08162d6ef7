from __future__ import annotations

from django.urls import include, path

from bench.proxy_app import inflight

urlpatterns = [
    path("health/", inflight.health),
    path("bench/inflight/", inflight.report),
    path("realtime/proxy/", include("herald.django.proxy.urls")),
]

"""``path("realtime/proxy/", include("herald.django.proxy.urls"))`` → the six endpoints
(URL names ``herald_proxy:connect`` …). Point the gateway's ``proxy_*_endpoint`` keys at them,
with the trailing slash: a redirect would turn the gateway's POST into a GET (proxy spec §8.11).
"""

from __future__ import annotations

from django.urls import path

from herald.django.proxy import views

app_name = "herald_proxy"

urlpatterns = [
    path("connect/", views.ConnectView.as_view(), name="connect"),
    path("refresh/", views.RefreshView.as_view(), name="refresh"),
    path("subscribe/", views.SubscribeView.as_view(), name="subscribe"),
    path("sub_refresh/", views.SubRefreshView.as_view(), name="sub_refresh"),
    path("publish/", views.PublishView.as_view(), name="publish"),
    path("rpc/", views.RpcView.as_view(), name="rpc"),
]

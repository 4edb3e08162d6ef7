"""URLs of the demo: log in, the dashboard and its JSON endpoints, Herald's token endpoint."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from orders import views
from orders.realtime import NodePickingTokenView

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz/", views.healthz, name="healthz"),
    path("login/", views.DemoLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("api/state/", views.StateView.as_view(), name="state"),
    path("api/orders/", views.CreateOrderView.as_view(), name="create-order"),
    path("api/chat/", views.ChatView.as_view(), name="chat"),
    # Herald's token endpoint, in a subclass that spreads users over the gateway nodes
    # when there are several; the rest of herald.django.urls as it comes.
    path("realtime/token/", NodePickingTokenView.as_view(), name="realtime-token"),
    path("realtime/", include("herald.django.urls")),
    # Proxy mode (the live chat page): the gateway calls these, with the shared secret.
    path("realtime/proxy/", include("herald.django.proxy.urls")),
    path("live-chat/", views.live_chat, name="live-chat"),
    # Static files straight from the finders, also with DEBUG off. Fine for a demo on a
    # laptop; a deployment runs collectstatic and lets the web server or WhiteNoise serve them.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]

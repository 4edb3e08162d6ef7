from __future__ import annotations

from django.urls import path

from bench.channels_app import views

urlpatterns = [
    path("publish/<str:group>/", views.publish),
    path("close/<str:group>/", views.close),
    path("health/", views.health),
]

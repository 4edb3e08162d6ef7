from __future__ import annotations

from django.apps import AppConfig


class BenchPushConfig(AppConfig):
    name = "bench.channels_app"
    label = "benchpush"
    default_auto_field = "django.db.models.BigAutoField"

"""The demo's Celery app: ``celery -A demo_site worker`` (broker chosen in settings.py)."""

from __future__ import annotations

import os

from celery import Celery

from demo_site import broker  # noqa: F401  registers the demofs:// transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

app = Celery("demo_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Finds orders.tasks and herald.django.tasks (publish_realtime_event).
app.autodiscover_tasks()

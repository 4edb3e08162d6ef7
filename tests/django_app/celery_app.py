"""The test project's Celery app, as a Django project would write it."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_app.settings")

app = Celery("herald_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

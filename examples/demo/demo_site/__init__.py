"""The demo's Django project package.

Importing the Celery app here makes every process that loads Django (gunicorn workers,
manage.py commands) publish tasks through the demo's broker, not Celery's default one.
"""

from demo_site.celery import app as celery_app

__all__ = ["celery_app"]

"""Settings of the benchmark's Channels app; the database and Redis come from the environment."""

from __future__ import annotations

import os

SECRET_KEY = "benchmark-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "channels",
    "bench.channels_app.apps.BenchPushConfig",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.channels_app.urls"
ASGI_APPLICATION = "bench.channels_app.asgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_CHANNELS_DB", "bench-channels.sqlite3"),
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": os.environ.get("BENCH_CHANNELS_REDIS", "redis://127.0.0.1:6379/14"),
                    # redis-py 8 defaults socket_timeout to 5 s, which aborts channels_redis's idle
                    # blocking BZPOPMIN and kills every consumer after 5 s of silence.
                    "socket_timeout": None,
                    # redis-py 8 caps an asyncio pool at 100 connections and raises (HTTP 500 on the
                    # upgrade) past it; 10k consumers connecting at once need more. Redis allows 10k.
                    "max_connections": 5000,
                }
            ]
        },
    }
}
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

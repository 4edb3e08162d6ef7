"""Settings of the reconnect-storm benchmark's Django project in proxy mode: herald.django's
proxy views and nothing else. The database and the secret come from the environment."""

from __future__ import annotations

import os

SECRET_KEY = "benchmark-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "herald.django",
]
# The proxy views load the session themselves; nothing else runs per request.
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.proxy_app.urls"
WSGI_APPLICATION = "bench.proxy_app.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_PROXY_DB", "bench-proxy.sqlite3"),
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
    }
}
USE_TZ = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

REALTIME_HMAC_SECRET = os.environ.get("BENCH_SECRET", "bench-secret-0123456789abcdef-0123456789abcdef-bench")
REALTIME_API_KEY = "bench-api-key"
REALTIME_API_URL = "http://127.0.0.1:9/api"
REALTIME_SOCKET_URL = "ws://127.0.0.1:9/connection/websocket"
REALTIME_PROXY_SECRET = os.environ.get("BENCH_PROXY_SECRET", "bench-proxy-secret-0123456789abcdef-0123456789")
# Every storm client subscribes to the one benchmark channel.
REALTIME_CHANNELS = "bench.proxy_app.grants.storm_channels"
# No expiry: the storm measures connects, not refreshes.
REALTIME_PROXY_CONNECTION_TTL_SECONDS = 0

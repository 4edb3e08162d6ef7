"""Settings of the test project. Values a test process hands to a Celery worker it starts
come from ``HERALD_TEST_*`` environment variables."""

from __future__ import annotations

import os

from tests.support.gateway import TEST_API_KEY, TEST_SECRET

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "herald.django",
    "tests.django_app",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.django_app.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
AUTH_USER_MODEL = "testapp.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; test users only
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}

# Herald
REALTIME_HMAC_SECRET = TEST_SECRET
REALTIME_API_KEY = TEST_API_KEY
REALTIME_API_URL = os.environ.get("HERALD_TEST_API_URL", "http://127.0.0.1:9/api")
REALTIME_SOCKET_URL = os.environ.get("HERALD_TEST_SOCKET_URL", "ws://127.0.0.1:9/connection/websocket")
REALTIME_CHANNEL_PREFIX = "test_"
REALTIME_TOKEN_TTL_SECONDS = 600
REALTIME_SUBSCRIPTION_AUTHORIZER = "tests.django_app.grants.can_subscribe"
REALTIME_PUBLISH_TIMEOUT = float(os.environ.get("HERALD_TEST_PUBLISH_TIMEOUT", "2"))
REALTIME_PUBLISH_MAX_RETRIES = int(os.environ.get("HERALD_TEST_MAX_RETRIES", "5"))
REALTIME_PUBLISH_RETRY_BACKOFF = float(os.environ.get("HERALD_TEST_RETRY_BACKOFF", "0.05"))
REALTIME_PUBLISH_RETRY_BACKOFF_MAX = float(os.environ.get("HERALD_TEST_RETRY_BACKOFF_MAX", "1"))

# Celery
CELERY_BROKER_URL = os.environ.get("HERALD_TEST_BROKER_URL", "redis://127.0.0.1:6379/11")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("HERALD_TEST_QUEUE", "herald-tests")
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"

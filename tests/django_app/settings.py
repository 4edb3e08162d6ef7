"""Settings of the test project. Values a test process hands to a Celery worker it starts
come from ``HERALD_TEST_*`` environment variables."""

from __future__ import annotations

import os
import tempfile

from tests.support.gateway import TEST_API_KEY, TEST_SECRET

# Shared by the gateway's proxy_static_http_headers and the proxy views (herald.django.proxy).
TEST_PROXY_SECRET = "test-proxy-secret-0123456789abcdef-0123456789"

# One name per test run (conftest sets it; worker and relay processes inherit it), so the
# databases of concurrent runs never meet. The test process creates them under these names
# (``TEST.NAME``) and the processes it starts open them under the same names.
RUN_ID = os.environ.get("HERALD_TEST_DB_RUN", "manual")

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "herald.django",
    "tests.django_app",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.django_app.urls"
_SQLITE = os.path.join(tempfile.gettempdir(), f"herald-test-{RUN_ID}.sqlite3")
_POSTGRES = f"herald_test_{RUN_ID}"
DATABASES = {
    # A file, not :memory:, so relays and workers in other processes share it.
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _SQLITE,
        "TEST": {"NAME": _SQLITE},
        "OPTIONS": {"timeout": 30},
    },
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _POSTGRES,
        "TEST": {"NAME": _POSTGRES},
        "HOST": os.environ.get("HERALD_TEST_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("HERALD_TEST_PG_PORT", "5432"),
        "USER": os.environ.get("HERALD_TEST_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("HERALD_TEST_PG_PASSWORD", ""),
    },
}
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
REALTIME_PROXY_SECRET = TEST_PROXY_SECRET
# The gunicorn of the proxy end-to-end tests runs with a lifetime of seconds, so the refresh
# proxy is asked within a test (below the checks' minimum: the server process runs no checks).
REALTIME_PROXY_CONNECTION_TTL_SECONDS = int(os.environ.get("HERALD_TEST_PROXY_TTL", "600"))
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
# A worker killed mid-task leaves its message unacknowledged; Redis hands it out again
# once it is older than the visibility timeout (checked every restore interval).
if "HERALD_TEST_VISIBILITY_TIMEOUT" in os.environ:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": float(os.environ["HERALD_TEST_VISIBILITY_TIMEOUT"]),
        "unacked_restore_interval": float(os.environ["HERALD_TEST_VISIBILITY_TIMEOUT"]) / 4,
    }
CELERY_WORKER_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"

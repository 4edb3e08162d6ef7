"""Settings of the Herald demo: a plain WSGI Django project with two tenants and live orders.

Everything a launcher needs to change comes from ``DEMO_*`` environment variables (and
``REDIS_URL``), so ``scripts/run-demo``, the multi-node variant and the browser tests run
the very same project on other ports and other folders. The gateway's secret and API key
are read from the gateway's own config file, so the two sides cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import django

BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


HOST = _env("DEMO_HOST", "127.0.0.1")
GATEWAY_PORT = int(_env("DEMO_GATEWAY_PORT", "8000"))

# A demo, not a deployment: a fixed key is fine for sessions on a laptop. Never reuse it.
SECRET_KEY = _env("DEMO_SECRET_KEY", "herald-demo-not-secret-do-not-deploy-this-key")
DEBUG = _env("DEMO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", HOST]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "herald.django",
    "orders",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite, shared by the web workers and the Celery worker: WAL lets readers run beside the
# one writer, and the timeout makes a writer wait for the lock instead of failing.
_sqlite_options: dict[str, Any] = {
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if django.VERSION >= (5, 1):
    # Take the write lock when a transaction starts, so two writers never deadlock.
    _sqlite_options["transaction_mode"] = "IMMEDIATE"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _env("DEMO_DB_PATH", str(BASE_DIR / "demo.sqlite3")),
        "OPTIONS": _sqlite_options,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "orders.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# The browser SDK is the official npm package, installed by ``npm ci`` (scripts/bootstrap)
# and served straight from node_modules as ``vendor/centrifuge/centrifuge.js``.
STATICFILES_DIRS = [("vendor/centrifuge", BASE_DIR / "node_modules" / "centrifuge" / "dist")]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

# --- Herald ---------------------------------------------------------------------------
HERALD_CONFIG_PATH = Path(_env("DEMO_HERALD_CONFIG", str(BASE_DIR / "herald.json")))
_gateway_config: dict[str, Any] = json.loads(HERALD_CONFIG_PATH.read_text())

REALTIME_HMAC_SECRET = _env("REALTIME_HMAC_SECRET", _gateway_config["token_hmac_secret_key"])
REALTIME_API_KEY = _env("REALTIME_API_KEY", _gateway_config["api_key"])
# Browsers connect to one of these; several with the multi-node launcher (see realtime.py).
DEMO_SOCKET_URLS = _env("DEMO_SOCKET_URLS", f"ws://{HOST}:{GATEWAY_PORT}/connection/websocket").split(",")
REALTIME_SOCKET_URL = DEMO_SOCKET_URLS[0]
REALTIME_API_URL = _env("DEMO_API_URL", f"http://{HOST}:{GATEWAY_PORT}/api")
REALTIME_CHANNEL_PREFIX = _env("DEMO_CHANNEL_PREFIX", "")
REALTIME_TOKEN_TTL_SECONDS = int(_env("DEMO_TOKEN_TTL", "600"))
# Short retries, so an event held back by a gateway restart arrives soon after it is back.
REALTIME_PUBLISH_TIMEOUT = 3.0
REALTIME_PUBLISH_RETRY_BACKOFF = 0.5
REALTIME_PUBLISH_RETRY_BACKOFF_MAX = 5.0

# Proxy mode, for the live chat page (herald.django.proxy). The launcher gives the gateway the
# same secret, in proxy_static_http_headers. Connections made through the connect proxy do not
# expire (TTL 0): the demo's gateway has no refresh endpoint, because with one every connection,
# token or not, would be refreshed by the server instead of the dashboard's token refresh;
# a logout still ends them at once (REALTIME_DISCONNECT_ON_LOGOUT, on by default).
REALTIME_PROXY_SECRET = _env("DEMO_PROXY_SECRET", "demo-proxy-secret-change-me-demo-proxy-secret")
REALTIME_PROXY_CONNECTION_TTL_SECONDS = 0
# Who may subscribe to a channel beyond the grants: the tenant's live chat (orders/realtime.py).
REALTIME_SUBSCRIPTION_AUTHORIZER = "orders.realtime.can_subscribe"

# Seconds between "order created" and the Celery task that marks it paid.
DEMO_COMPLETE_DELAY = float(_env("DEMO_COMPLETE_DELAY", "2"))

# --- Celery ---------------------------------------------------------------------------
# Redis when REDIS_URL is set; otherwise kombu's filesystem transport, which needs no
# server at all: producers drop message files into a folder the worker polls (demofs://,
# demo_site/broker.py: the same, with each file renamed into place once it is whole).
REDIS_URL = os.environ.get("REDIS_URL", "")
_checkout = hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:10]
DEMO_DATA_DIR = Path(_env("DEMO_DATA_DIR", str(Path(tempfile.gettempdir()) / f"herald-demo-{_checkout}")))
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
else:
    _queue_dir = DEMO_DATA_DIR / "broker"
    _control_dir = DEMO_DATA_DIR / "broker-control"
    for _folder in (_queue_dir, _control_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "demofs://localhost//"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(_control_dir),
        "store_processed": False,
        "polling_interval": 0.1,
    }
CELERY_TASK_DEFAULT_QUEUE = _env("DEMO_QUEUE", "herald-demo")
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

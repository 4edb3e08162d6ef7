"""The test project as an ASGI application (served by uvicorn in test_async.py)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_app.settings")
application = get_asgi_application()

"""The test project as a WSGI application (served by gunicorn in the proxy tests)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_app.settings")
application = get_wsgi_application()

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.proxy_app.settings")

from bench.proxy_app.inflight import counting

application = counting(get_wsgi_application())

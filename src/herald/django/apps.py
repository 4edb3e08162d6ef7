"""Herald's reusable Django app (label ``herald``); see ``docs/django.md``.

Add ``"herald.django"`` to ``INSTALLED_APPS``. The app never opens a socket to a browser:
it mints tokens (``tokens.py``), serves them (``views.py``/``plain_views.py``,
``urls.py``), and talks to the gateway over its HTTP API (``publisher.py``, ``tasks.py``,
``revocation.py``). It never imports ``herald.gateway``: the contract between the two is
``herald.tokens`` and the HTTP API.
"""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class HeraldConfig(AppConfig):
    name = "herald.django"
    # Explicit label: the last dotted component ("django") would clash with nothing
    # today, but reads as if it were Django itself in migrations and checks.
    label = "herald"
    verbose_name = "Herald real-time"

    def ready(self) -> None:
        # Only wiring here: importing tasks or opening HTTP sessions at start-up would
        # make every manage.py command pay for them.
        from herald.django.checks import check_settings

        checks.register(check_settings, "herald")

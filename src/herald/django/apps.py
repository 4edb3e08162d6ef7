"""App configuration; the package docstring in ``__init__.py`` lists the public API.

The app never opens a socket to a browser, and never imports ``herald.gateway``: the
contract between the two is ``herald.tokens`` and the gateway's HTTP API.
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
        from django.contrib.auth.signals import user_logged_out

        from herald.django.checks import check_settings
        from herald.django.proxy.checks import check_proxy_settings
        from herald.django.proxy.logout import disconnect_on_logout

        checks.register(check_settings, "herald")
        checks.register(check_proxy_settings, "herald")
        user_logged_out.connect(disconnect_on_logout, dispatch_uid="herald.django.proxy.logout")

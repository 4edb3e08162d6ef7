"""The test project with an API key the gateway does not know (for herald_ping)."""

from tests.django_app.settings import *  # noqa: F403

REALTIME_API_KEY = "not-the-gateway-key"

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class AccessToken(models.Model):
    """An opaque connection token, as a session key or a DRF token would be."""

    key: models.CharField[str, str] = models.CharField(max_length=64, unique=True)
    user: models.ForeignKey[Any, Any] = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)

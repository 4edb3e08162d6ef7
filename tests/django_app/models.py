"""A user that belongs to a tenant, and a row to publish events about."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    # The default grant hook reads ``tenant_id`` (``tenant_{id}``, ``critical:tenant_{id}``).
    tenant_id: models.IntegerField[int | None, int | None] = models.IntegerField(null=True, blank=True)


class Order(models.Model):
    tenant_id: models.IntegerField[int, int] = models.IntegerField()
    total: models.DecimalField[Decimal, Decimal] = models.DecimalField(max_digits=10, decimal_places=2)


class ChatMessage(models.Model):
    """A chat line accepted by the publish proxy (``tests/django_app/realtime.py``)."""

    channel: models.CharField[str, str] = models.CharField(max_length=200)
    author: models.ForeignKey[User, User] = models.ForeignKey(User, on_delete=models.CASCADE)
    text: models.TextField[str, str] = models.TextField()

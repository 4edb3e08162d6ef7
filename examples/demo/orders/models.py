"""Two tenants, a few users each, and orders whose status flips from pending to paid."""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.db import models


class Tenant(models.Model):
    name: models.CharField[str, str] = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    # herald.django's default grants read ``tenant_id``: this user may subscribe to
    # tenant_{id} and critical:tenant_{id} (and to its own user_{id} channels).
    tenant: models.ForeignKey[Tenant | None, Tenant | None] = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )
    tenant_id: int | None


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"

    tenant: models.ForeignKey[Tenant, Tenant] = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="orders"
    )
    tenant_id: int
    created_by: models.ForeignKey[User, User] = models.ForeignKey(User, on_delete=models.PROTECT, related_name="orders")
    created_by_id: int
    item: models.CharField[str, str] = models.CharField(max_length=100)
    total: models.DecimalField[Decimal, Decimal] = models.DecimalField(max_digits=10, decimal_places=2)
    status: models.CharField[str, str] = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at: models.DateTimeField[datetime.datetime, datetime.datetime] = models.DateTimeField(auto_now_add=True)
    paid_at: models.DateTimeField[datetime.datetime | None, datetime.datetime | None] = models.DateTimeField(
        null=True, blank=True
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["tenant", "status"], name="order_tenant_status")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.item} ({self.status})"


class ChatLine(models.Model):
    """A line of the proxy-mode live chat: validated and stored by the publish proxy
    (``orders/realtime.py``) before the gateway publishes it to the tenant's chat channel."""

    tenant: models.ForeignKey[Tenant, Tenant] = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="chat_lines"
    )
    tenant_id: int
    author: models.ForeignKey[User, User] = models.ForeignKey(User, on_delete=models.CASCADE, related_name="chat_lines")
    author_id: int
    text: models.CharField[str, str] = models.CharField(max_length=200)
    created_at: models.DateTimeField[datetime.datetime, datetime.datetime] = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.author_id}: {self.text}"

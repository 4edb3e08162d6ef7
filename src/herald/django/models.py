"""The transactional outbox's one table (see ``outbox.py`` for how rows move through it)."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxMessage(models.Model):
    """One event, written in the transaction of the change it describes, published later by
    a relay. ``channel`` and ``data`` are final (namespace and prefix applied, JSON checked),
    so a relay needs no application code and publishes exactly what was written."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENT = "sent", "sent"
        # A permanent failure (the gateway refused the request itself): kept with the
        # reason until someone retries it from the admin, never retried by itself.
        PARKED = "parked", "parked"

    id: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    channel: models.CharField[str, str] = models.CharField(max_length=255)
    # The JSON text published, byte for byte (a JSON column could reorder keys).
    data: models.TextField[str, str] = models.TextField()
    idempotency_key: models.CharField[str, str] = models.CharField(max_length=64, unique=True)
    status: models.CharField[str, str] = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts: models.PositiveIntegerField[int, int] = models.PositiveIntegerField(default=0)
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(default=timezone.now)
    next_attempt_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(default=timezone.now)
    sent_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(null=True, blank=True)
    last_error: models.TextField[str, str] = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "outbox message"
        indexes = [
            # The relay's two questions, over pending rows only: "the oldest row of each
            # channel" and "the next rows of this channel".
            models.Index(fields=["channel", "id"], condition=Q(status="pending"), name="herald_outbox_pending"),
            models.Index(fields=["sent_at"], condition=Q(status="sent"), name="herald_outbox_sent"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.channel} ({self.status})"

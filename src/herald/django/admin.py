"""The outbox in the Django admin: what is waiting, what was parked and why, and a retry."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from herald.django.models import OutboxMessage
from herald.django.outbox import retry_parked


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic only in the stubs
    list_display = ("id", "channel", "status", "attempts", "created_at", "next_attempt_at", "sent_at", "last_error")
    list_filter = ("status",)
    search_fields = ("channel", "idempotency_key")
    ordering = ("-id",)
    actions = ["retry"]
    # Rows are the record of what was published: read-only, except through the action.
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OutboxMessage | None = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Retrying is the one change allowed: it needs the model's change permission.
        has_perm = getattr(request.user, "has_perm", None)
        return callable(has_perm) and has_perm("herald.change_outboxmessage") is True

    @admin.action(description="Retry the selected messages (parked or waiting) now", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        count = retry_parked(queryset)
        self.message_user(
            request, f"{count} message(s) will be published by the next relay run.", level=messages.SUCCESS
        )

"""What happens to orders, and the events each step publishes; views, tasks and commands
all go through here.

Channels (names as the application writes them; herald.django adds the environment
prefix, and ``recoverable=True`` the ``critical:`` namespace that keeps history):

* ``critical:tenant_{id}``: ``order.created``, ``order.completed``. Recoverable, because a
  dashboard that missed one would show a wrong count.
* ``user_{id}``: ``notification`` for the user who placed the order. Ephemeral.
* ``tenant_{id}``: ``chat.typing`` and ``chat.message``. Ephemeral: a "typing…" hint that
  arrives after a reconnect is worse than none.
* ``chat:tenant_{id}``: the live chat page in proxy mode. Browsers publish to it themselves;
  the gateway asks Django's publish proxy first (``orders/realtime.py``), which stores the line.
"""

from __future__ import annotations

import functools
import logging
import random
from decimal import Decimal
from typing import Any, Final

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from herald.django.publisher import push_event
from herald.django.tasks import publish_on_commit
from orders.models import ChatLine, Order, Tenant, User

logger = logging.getLogger(__name__)

RECENT_ORDERS: Final = 12
CHAT_KINDS: Final = frozenset({"typing", "message"})
CHAT_TEXT_MAX: Final = 200
ITEMS: Final = (
    "Espresso machine",
    "Standing desk",
    "Noise-cancelling headphones",
    "Mechanical keyboard",
    "Ergonomic chair",
    "4K monitor",
    "Desk lamp",
    "Laptop stand",
    "Coffee beans (5 kg)",
    "Whiteboard",
)


def tenant_channel(tenant_id: int) -> str:
    return f"tenant_{tenant_id}"


def chat_channel(tenant_id: int) -> str:
    """The proxy-mode live chat of a tenant (namespace ``chat``: proxy_subscribe, proxy_publish)."""
    return f"chat:tenant_{tenant_id}"


def chat_line_data(line: ChatLine) -> dict[str, Any]:
    return {
        "id": line.pk,
        "author": line.author.get_username(),
        "text": line.text,
        "at": line.created_at.isoformat(),
    }


def user_channel(user_id: int) -> str:
    return f"user_{user_id}"


def order_data(order: Order) -> dict[str, Any]:
    """An order as plain JSON, the same in the page's state and in events."""
    return {
        "id": order.pk,
        "item": order.item,
        "total": str(order.total),
        "status": order.status,
        "created_by": order.created_by.get_username(),
        "created_at": order.created_at.isoformat(),
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
    }


def tenant_state(tenant: Tenant) -> dict[str, Any]:
    """Everything the dashboard shows; the page reloads it when events may have been lost."""
    orders = Order.objects.filter(tenant=tenant).select_related("created_by")
    counts = dict(orders.order_by().values_list("status").annotate(n=Count("id")))
    return {
        "tenant": {"id": tenant.pk, "name": tenant.name},
        "paid_count": counts.get(Order.Status.PAID, 0),
        "pending_count": counts.get(Order.Status.PENDING, 0),
        "orders": [order_data(order) for order in orders[:RECENT_ORDERS]],
    }


def create_order(
    user: User,
    *,
    item: str | None = None,
    total: Decimal | None = None,
    complete_after: float | None = None,
    hold: bool = False,
) -> Order:
    """A pending order for the user's tenant; a Celery task marks it paid ``complete_after``
    seconds later (``DEMO_COMPLETE_DELAY`` by default), or never with ``hold`` (then
    ``complete_order`` pays it: ``manage.py pay_order``)."""
    from orders.tasks import complete_order as complete_order_task

    if user.tenant_id is None:
        raise ValueError(f"user {user.get_username()!r} belongs to no tenant")
    delay = settings.DEMO_COMPLETE_DELAY if complete_after is None else complete_after
    with transaction.atomic():
        order = Order.objects.create(
            tenant_id=user.tenant_id,
            created_by=user,
            item=item or random.choice(ITEMS),
            total=total if total is not None else Decimal(random.randrange(500, 250_000)) / 100,
        )
        publish_on_commit(tenant_channel(order.tenant_id), "order.created", order_data(order), recoverable=True)
        if not hold:
            # Enqueued only once the row is committed, so the task always finds it.
            transaction.on_commit(functools.partial(complete_order_task.apply_async, (order.pk,), countdown=delay))
    return order


def complete_order(order_id: int) -> Order | None:
    """Mark the order paid and tell the tenant and its creator. Running it twice (a
    redelivered task) changes nothing the second time and publishes nothing."""
    with transaction.atomic():
        order = Order.objects.select_related("created_by").filter(pk=order_id).first()
        if order is None or order.status == Order.Status.PAID:
            return order
        order.status = Order.Status.PAID
        order.paid_at = timezone.now()
        order.save(update_fields=["status", "paid_at"])
        paid_count = Order.objects.filter(tenant_id=order.tenant_id, status=Order.Status.PAID).count()
        # After commit: a dashboard that reloads its state on this event sees the row paid.
        publish_on_commit(
            tenant_channel(order.tenant_id),
            "order.completed",
            {**order_data(order), "paid_count": paid_count},
            recoverable=True,
        )
        publish_on_commit(
            user_channel(order.created_by_id),
            "notification",
            {"order_id": order.pk, "text": f"Your order #{order.pk} ({order.item}) was paid."},
        )
    logger.info("order %s paid (tenant %s)", order.pk, order.tenant_id)
    return order


def post_chat(user: User, kind: str, text: str = "") -> None:
    """Publish a chat event to the user's tenant at once (no Celery: ephemeral, and stale
    after a second). Raises ``herald.apiclient.ApiError`` if the gateway refuses it."""
    if kind not in CHAT_KINDS:
        raise ValueError(f"kind must be one of {sorted(CHAT_KINDS)}, not {kind!r}")
    if user.tenant_id is None:
        raise ValueError(f"user {user.get_username()!r} belongs to no tenant")
    payload = {"user_id": user.pk, "name": user.get_username(), "text": text[:CHAT_TEXT_MAX]}
    push_event(tenant_channel(user.tenant_id), f"chat.{kind}", payload, timeout=2.0)

"""``manage.py seed_demo``: two tenants, two users each (password ``demo``), a few paid
orders. Safe to run again: what exists is left as it is."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any, Final

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from orders.models import Order, Tenant, User

PASSWORD: Final = "demo"
TENANTS: Final = {
    "Acme Corp": ["alice", "bob"],
    "Globex": ["carol", "dave"],
}
SEED_ORDERS: Final = [
    ("Standing desk", "649.00"),
    ("Espresso machine", "389.90"),
    ("Mechanical keyboard", "129.50"),
]


class Command(BaseCommand):
    help = "Create the demo tenants, users and a few paid orders (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            for tenant_name, usernames in TENANTS.items():
                tenant, _ = Tenant.objects.get_or_create(name=tenant_name)
                users = [self._user(username, tenant) for username in usernames]
                if not Order.objects.filter(tenant=tenant).exists():
                    paid_at = timezone.now() - timedelta(hours=len(SEED_ORDERS))
                    for index, (item, total) in enumerate(SEED_ORDERS):
                        Order.objects.create(
                            tenant=tenant,
                            created_by=users[index % len(users)],
                            item=item,
                            total=Decimal(total),
                            status=Order.Status.PAID,
                            paid_at=paid_at + timedelta(hours=index),
                        )
        for user in User.objects.filter(tenant__isnull=False).select_related("tenant").order_by("pk"):
            assert user.tenant is not None
            self.stdout.write(f"  {user.username:<6} / {PASSWORD}   {user.tenant.name} (tenant {user.tenant.pk})")

    def _user(self, username: str, tenant: Tenant) -> User:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(
                username=username, password=PASSWORD, email=f"{username}@example.com", tenant=tenant
            )
        return user

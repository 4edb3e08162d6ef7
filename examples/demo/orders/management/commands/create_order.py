"""``manage.py create_order alice``: place an order as that user, like the dashboard's
button does; the Celery worker marks it paid a moment later."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders import services
from orders.models import User


class Command(BaseCommand):
    help = "Create an order as a demo user; a Celery task marks it paid a moment later."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="who places the order, e.g. alice")
        parser.add_argument("--count", type=int, default=1, help="how many orders (default 1)")
        parser.add_argument(
            "--delay", type=float, default=None, help="seconds until paid (default: DEMO_COMPLETE_DELAY)"
        )
        parser.add_argument("--hold", action="store_true", help="leave it pending until `manage.py pay_order ID`")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).select_related("tenant").first()
        if user is None or user.tenant is None:
            raise CommandError(f"no demo user {options['username']!r} with a tenant; run seed_demo first")
        for _ in range(max(1, options["count"])):
            order = services.create_order(user, complete_after=options["delay"], hold=options["hold"])
            # Machine-readable first word, so scripts can pick the id out.
            self.stdout.write(f"{order.pk} order #{order.pk} ({order.item}, {order.total}) for {user.tenant.name}")

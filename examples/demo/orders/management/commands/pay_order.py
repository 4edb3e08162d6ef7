"""``manage.py pay_order 17``: mark an order paid now, as the Celery task does (for orders
created with ``create_order --hold``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders import services


class Command(BaseCommand):
    help = "Mark an order paid now and publish its events, as the Celery task does."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("order_id", type=int, help="the order's id (the first word create_order prints)")

    def handle(self, *args: Any, **options: Any) -> None:
        order = services.complete_order(options["order_id"])
        if order is None:
            raise CommandError(f"no order {options['order_id']}")
        self.stdout.write(f"{order.pk} order #{order.pk} is {order.status}")

"""The demo's Celery task: thin, it passes an id and calls the service."""

from __future__ import annotations

from celery import shared_task

from orders import services


@shared_task(name="orders.complete_order", ignore_result=True)
def complete_order(order_id: int) -> None:
    services.complete_order(order_id)

"""publish_on_commit: an event about a row leaves only if the transaction that wrote it commits."""

from __future__ import annotations

import decimal
import logging

import pytest
from django.db import connection, transaction

from herald.django.tasks import publish_on_commit
from tests.django_app.models import Order
from tests.django_app.support.common import unique
from tests.django_app.support.scripted_api import ScriptedApi
from tests.django_app.support.worker import CeleryWorker
from tests.support.timing import seconds


class Rollback(Exception):
    pass


def wait_delivered(scripted: ScriptedApi, channel: str) -> None:
    assert scripted.wait_until(lambda: len(scripted.delivered(channel)) >= 1, seconds(15))


@pytest.mark.usefixtures("db")
def test_rolled_back_transaction_publishes_nothing(scripted: ScriptedApi, scripted_worker: CeleryWorker) -> None:
    channel, sentinel = unique("tenant"), unique("sentinel")
    with pytest.raises(Rollback), transaction.atomic():
        order = Order.objects.create(tenant_id=1, total=decimal.Decimal("9.99"))
        publish_on_commit(channel, "order.completed", {"order_id": order.pk})
        raise Rollback
    assert not Order.objects.exists()

    # The worker handles tasks in order: once a later event arrived, the first one would have too.
    publish_on_commit(sentinel, "sentinel", {})
    wait_delivered(scripted, f"test_{sentinel}")
    assert scripted.seen(f"test_{channel}") == []


@pytest.mark.usefixtures("db")
def test_committed_transaction_publishes_once(scripted: ScriptedApi, scripted_worker: CeleryWorker) -> None:
    channel, sentinel = unique("tenant"), unique("sentinel")
    with transaction.atomic():
        order = Order.objects.create(tenant_id=1, total=decimal.Decimal("9.99"))
        publish_on_commit(channel, "order.completed", {"order_id": order.pk, "total": str(order.total)})
        # Nothing has left yet: the event waits for the commit.
        assert len(connection.run_on_commit) == 1
        assert scripted.seen(f"test_{channel}") == []

    wait_delivered(scripted, f"test_{channel}")
    publish_on_commit(sentinel, "sentinel", {})
    wait_delivered(scripted, f"test_{sentinel}")
    [seen] = scripted.seen(f"test_{channel}")
    assert seen.body["data"] == {"type": "order.completed", "payload": {"order_id": order.pk, "total": "9.99"}}
    assert seen.idempotency_key


@pytest.mark.usefixtures("db")
def test_inner_savepoint_rollback_drops_only_its_events(scripted: ScriptedApi, scripted_worker: CeleryWorker) -> None:
    kept, dropped = unique("kept"), unique("dropped")
    with transaction.atomic():
        publish_on_commit(kept, "x", {})
        with pytest.raises(Rollback), transaction.atomic():
            publish_on_commit(dropped, "x", {})
            raise Rollback
    wait_delivered(scripted, f"test_{kept}")
    # The worker handles tasks in order: once a later event arrived, the dropped one would have too.
    sentinel = unique("sentinel")
    publish_on_commit(sentinel, "sentinel", {})
    wait_delivered(scripted, f"test_{sentinel}")
    assert scripted.seen(f"test_{dropped}") == []


@pytest.mark.usefixtures("db")
def test_an_event_that_cannot_be_enqueued_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    channel = unique("tenant")
    with caplog.at_level(logging.ERROR, logger="herald.django.tasks"), transaction.atomic():
        # Celery's serializer refuses the payload at enqueue time, after the commit.
        publish_on_commit(channel, "x", {"obj": object()})
    [record] = [r for r in caplog.records if channel in r.getMessage()]
    assert "realtime event dropped" in record.getMessage()
    assert "could not be enqueued" in record.getMessage()

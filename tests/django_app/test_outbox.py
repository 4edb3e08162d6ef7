"""The transactional outbox on SQLite and PostgreSQL: rows written with the business change,
relays that publish each row once and in order, a real gateway and the official SDK."""

from __future__ import annotations

import decimal
import io
import logging
import re
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client, override_settings
from django.utils import timezone

from herald.apiclient import ApiClient, UnencodableData
from herald.django.models import OutboxMessage
from herald.django.outbox import Relay, publish_durably
from herald.django.tasks import publish_on_commit
from tests.django_app.models import Order
from tests.django_app.support.commands import start_manage
from tests.django_app.support.common import unique
from tests.django_app.support.scripted_api import ScriptedApi, forward, reply
from tests.django_app.support.sdk import SyncListener
from tests.django_app.support.worker import Workers
from tests.support.gateway import TEST_API_KEY, GatewayProcess
from tests.support.processes import stop_process
from tests.support.redis_server import RedisServer
from tests.support.timing import seconds
from tests.support.tokens import token

PENDING, SENT, PARKED = (OutboxMessage.Status.PENDING, OutboxMessage.Status.SENT, OutboxMessage.Status.PARKED)


class Rollback(Exception):
    pass


def statuses(database: str) -> list[str]:
    return list(OutboxMessage.objects.using(database).order_by("id").values_list("status", flat=True))


def relay_once(database: str) -> str:
    out = io.StringIO()
    call_command("herald_relay", "--once", "--database", database, stdout=out)
    return out.getvalue()


def fence(listener: SyncListener, api_url: str, channel: str) -> list[object]:
    """Publish a sentinel and wait for it: whatever else was going to arrive has arrived."""
    with ApiClient(api_url, TEST_API_KEY) as api:
        api.publish(channel, {"type": "sentinel"})
    listener.wait_for(lambda: {"type": "sentinel"} in listener.listener.publications.get(channel, []))
    return listener.publications(channel)


@pytest.fixture
def at_gateway(gateway: GatewayProcess) -> Iterator[GatewayProcess]:
    with override_settings(REALTIME_API_URL=gateway.api_url):
        yield gateway


# -- writing rows ---------------------------------------------------------------------------


def test_the_row_is_part_of_the_transaction(database: str) -> None:
    with transaction.atomic(using=database):
        Order.objects.using(database).create(tenant_id=1, total=decimal.Decimal("1.00"))
        row = publish_durably("tenant_1", "order.created", {"id": 1}, recoverable=True, using=database)
    with pytest.raises(Rollback), transaction.atomic(using=database):
        publish_durably("tenant_1", "order.created", {"id": 2}, recoverable=True, using=database)
        raise Rollback
    [kept] = OutboxMessage.objects.using(database).all()
    assert kept.pk == row.pk
    assert (kept.channel, kept.status) == ("critical:test_tenant_1", PENDING)
    assert kept.data == '{"type":"order.created","payload":{"id":1}}'
    assert len(kept.idempotency_key) == 32


@pytest.mark.usefixtures("db")
def test_a_payload_that_is_not_json_fails_inside_the_transaction() -> None:
    with pytest.raises(UnencodableData, match="not JSON-serialisable"), transaction.atomic():
        publish_on_commit("tenant_1", "x", {"total": decimal.Decimal("1.5")}, durable=True)
    assert not OutboxMessage.objects.exists()


@pytest.mark.usefixtures("db")
def test_outbox_critical_setting_makes_critical_events_durable_by_default() -> None:
    with pytest.raises(Rollback), override_settings(REALTIME_OUTBOX_CRITICAL=True), transaction.atomic():
        publish_on_commit("tenant_1", "a", {}, recoverable=True)
        publish_on_commit("critical:tenant_1", "b", {})
        # Not critical, or durable=False said explicitly: the direct task on commit, no row.
        publish_on_commit("tenant_1", "c", {})
        publish_on_commit("tenant_1", "d", {}, durable=False, recoverable=True)
        channels = list(OutboxMessage.objects.values_list("channel", flat=True))
        assert channels == ["critical:test_tenant_1", "critical:test_tenant_1"]
        assert len(connection.run_on_commit) == 4  # two relay wake-ups, two direct tasks
        raise Rollback  # nothing is enqueued for later tests to meet


# -- the relay against a scripted API: what each answer does to a row ---------------------------


@pytest.fixture
def scripted_relay(scripted: ScriptedApi) -> Iterator[ScriptedApi]:
    # Long retry delays: a row put back stays "not due" for the whole test.
    with override_settings(
        REALTIME_API_URL=scripted.url, REALTIME_PUBLISH_RETRY_BACKOFF=60.0, REALTIME_PUBLISH_RETRY_BACKOFF_MAX=3600.0
    ):
        yield scripted


def test_transient_failure_puts_the_channel_back_in_order(database: str, scripted_relay: ScriptedApi) -> None:
    for n in range(3):
        publish_durably("tenant_1", "e", {"n": n}, using=database)
    publish_durably("tenant_2", "e", {"n": 0}, using=database)
    # First wave: tenant_1's head fails for now, tenant_2's goes through.
    scripted_relay.script(reply(200, {"replies": [{"error": {"code": 100, "message": "internal"}}, {"publish": {}}]}))
    report = Relay(database).run_once()
    assert (report.sent, report.retried, report.parked) == (1, 1, 0)
    assert statuses(database) == [PENDING, PENDING, PENDING, SENT]
    head = OutboxMessage.objects.using(database).order_by("id").first()
    assert head is not None and head.attempts == 1 and "API error 100" in head.last_error
    assert head.next_attempt_at > timezone.now()
    # Its followers did not overtake it: nothing of tenant_1 was sent after the failure.
    assert [p["data"]["payload"] for s in scripted_relay.seen() for p in s.publishes] == [{"n": 0}, {"n": 0}]

    # Not due yet: a round does nothing. Once due, the three go out in order.
    assert Relay(database).run_once().sent == 0
    OutboxMessage.objects.using(database).filter(status=PENDING).update(next_attempt_at=timezone.now())
    assert Relay(database).drain().sent == 3
    sent = [(p["channel"], p["data"]["payload"]["n"]) for s in scripted_relay.delivered() for p in [s.body]]
    assert sent == [("test_tenant_1", 0), ("test_tenant_1", 1), ("test_tenant_1", 2)]
    assert statuses(database) == [SENT] * 4


def test_a_refused_row_is_parked_and_its_channel_goes_on(database: str, scripted_relay: ScriptedApi) -> None:
    bad = publish_durably("tenant_1", "e", {"n": 0}, using=database)
    publish_durably("tenant_1", "e", {"n": 1}, using=database)
    scripted_relay.script(reply(200, {"replies": [{"error": {"code": 102, "message": "unknown channel"}}]}))
    report = Relay(database).drain()
    assert (report.sent, report.parked) == (1, 1)
    bad.refresh_from_db(using=database)
    assert (bad.status, bad.last_error) == (PARKED, "API error 102: unknown channel")
    # Parked rows stay parked: later rounds never retry them by themselves.
    assert Relay(database).drain().sent == 0


def test_a_refused_request_is_a_configuration_problem_and_parks_nothing(
    database: str, scripted_relay: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    publish_durably("tenant_1", "e", {}, using=database)
    scripted_relay.script(reply(401, ""))
    with caplog.at_level(logging.ERROR, logger="herald.django.outbox"):
        report = Relay(database).run_once()
    assert (report.sent, report.retried, report.parked) == (0, 1, 0)
    assert statuses(database) == [PENDING]
    assert "REALTIME_API_KEY" in caplog.text and "API key was refused" in caplog.text


@pytest.mark.usefixtures("db")
def test_the_admin_shows_parked_rows_with_the_reason_and_retries_them(scripted_relay: ScriptedApi) -> None:
    database = "default"  # where the admin reads
    row = publish_durably("tenant_1", "e", {"n": 0}, using=database)
    scripted_relay.script(reply(200, {"replies": [{"error": {"code": 102, "message": "unknown channel"}}]}))
    Relay(database).run_once()
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(admin)

    page = client.get("/admin/herald/outboxmessage/?status__exact=parked")
    assert page.status_code == 200
    assert "API error 102: unknown channel" in page.content.decode()
    answer = client.post("/admin/herald/outboxmessage/", {"action": "retry", "_selected_action": [row.pk]}, follow=True)
    assert answer.status_code == 200
    assert "1 message(s) will be published by the next relay run" in answer.content.decode()
    assert statuses(database) == [PENDING]
    # The cause is gone (the scripted API accepts it now): the next round publishes it.
    assert Relay(database).run_once().sent == 1
    assert [s.body["idempotency_key"] for s in scripted_relay.delivered()] == [row.idempotency_key]


def test_sent_rows_are_pruned_after_their_age(database: str, scripted_relay: ScriptedApi) -> None:
    old, recent = (publish_durably("tenant_1", "e", {"n": n}, using=database) for n in range(2))
    parked = publish_durably("tenant_1", "e", {"n": 2}, using=database)
    assert Relay(database).drain().sent == 3
    OutboxMessage.objects.using(database).filter(pk=parked.pk).update(status=PARKED)
    OutboxMessage.objects.using(database).filter(pk__in=[old.pk, parked.pk]).update(
        sent_at=timezone.now() - timedelta(hours=2)
    )
    with override_settings(REALTIME_OUTBOX_KEEP_SENT_SECONDS=3600):
        assert Relay(database).prune() == 1
    assert list(OutboxMessage.objects.using(database).order_by("id").values_list("pk", flat=True)) == [
        recent.pk,
        parked.pk,
    ]


# -- end to end: a real gateway and the official SDK -----------------------------------------


def test_broker_down_at_commit_reaches_the_client_once_the_relay_runs(
    database: str,
    at_gateway: GatewayProcess,
    broker_server: RedisServer,
    workers: Workers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique("tenant")
    channel = f"critical:test_{name}"
    workers.close()  # no worker: it could only wait for its broker
    with SyncListener(at_gateway.ws_url, token("u1", [channel])) as listener:
        listener.subscribe(channel)
        broker_server.stop(keep_data=True)  # a broker restart: the queues survive it
        try:
            with caplog.at_level(logging.WARNING, logger="herald.django.tasks"):
                with transaction.atomic(using=database):
                    Order.objects.using(database).create(tenant_id=1, total=decimal.Decimal("9.99"))
                    publish_on_commit(name, "order.paid", {"n": 1}, recoverable=True, durable=True, using=database)
                    # The direct path, for contrast: its event has nowhere to go.
                    publish_on_commit(name, "order.lost", {"n": 2}, recoverable=True, durable=False, using=database)
                with pytest.raises(Rollback), transaction.atomic(using=database):
                    publish_on_commit(name, "order.undone", {"n": 3}, recoverable=True, durable=True, using=database)
                    raise Rollback
        finally:
            broker_server.start()
        assert "could not wake the relay" in caplog.text
        assert re.search(rf"realtime event dropped: channel={channel} type=order.lost", caplog.text)
        assert statuses(database) == [PENDING]

        assert relay_once(database).startswith("1 sent, 0 to retry, 0 parked")

        assert fence(listener, at_gateway.api_url, channel) == [
            {"type": "order.paid", "payload": {"n": 1}},
            {"type": "sentinel"},
        ]
        assert statuses(database) == [SENT]


def test_a_durable_event_is_relayed_by_the_worker_the_commit_wakes(
    database: str, at_gateway: GatewayProcess, workers: Workers
) -> None:
    workers.ensure(HERALD_TEST_API_URL=at_gateway.api_url)
    name = unique("tenant")
    channel = f"critical:test_{name}"
    with SyncListener(at_gateway.ws_url, token("u1", [channel])) as listener:
        listener.subscribe(channel)
        with transaction.atomic(using=database):
            for n in range(3):
                publish_on_commit(name, "order.paid", {"n": n}, recoverable=True, durable=True, using=database)
        received = listener.wait_count(channel, 3)
        assert [p["payload"]["n"] for p in received] == [0, 1, 2]
    deadline = time.monotonic() + seconds(10)
    while statuses(database) != [SENT] * 3:
        assert time.monotonic() < deadline, statuses(database)
        time.sleep(0.05)


CHANNELS, PER_CHANNEL = 20, 50


def test_two_relays_racing_over_1000_rows_publish_each_once_in_order(
    database: str, gateway: GatewayProcess, scripted: ScriptedApi, tmp_path: Path
) -> None:
    # The relays publish through the scripted API, which forwards every request to the
    # gateway and counts what it forwarded: the gateway's deduplication would hide a
    # double publish from the subscriber, the count does not.
    scripted.default = forward(gateway.api_url)
    names = [unique(f"race{i}") for i in range(CHANNELS)]
    channels = [f"critical:test_{name}" for name in names]
    with transaction.atomic(using=database):
        for n in range(PER_CHANNEL):
            for name in names:
                publish_durably(name, "tick", {"n": n}, recoverable=True, using=database)
    assert OutboxMessage.objects.using(database).count() == CHANNELS * PER_CHANNEL

    with SyncListener(gateway.ws_url, token("u1", channels)) as listener:
        for channel in channels:
            listener.subscribe(channel)
        relays = [
            start_manage(
                "herald_relay",
                "--database",
                database,
                "--batch-size",
                "10",
                "--interval",
                "0.05",
                "--verbosity",
                "2",
                log=tmp_path / f"relay{i}.log",
                env={"HERALD_TEST_API_URL": scripted.url},
            )
            for i in range(2)
        ]
        try:
            listener.wait_for(
                lambda: all(len(listener.listener.publications.get(ch, [])) >= PER_CHANNEL for ch in channels),
                within=60,
            )
        finally:
            for proc in relays:
                stop_process(proc, signal.SIGTERM)
        logs = [(tmp_path / f"relay{i}.log").read_text() for i in range(2)]
        assert [proc.returncode for proc in relays] == [0, 0], logs
        assert all(log.rstrip().endswith("herald_relay: stopped") for log in logs), logs

        for channel in channels:
            assert [p["payload"]["n"] for p in fence(listener, gateway.api_url, channel)[:-1]] == list(
                range(PER_CHANNEL)
            ), channel

    keys = [p["idempotency_key"] for s in scripted.seen() for p in s.publishes]
    assert len(keys) == CHANNELS * PER_CHANNEL == len(set(keys))
    sent_by_relay = [sum(int(n) for n in re.findall(r"^(\d+) sent", log, re.MULTILINE)) for log in logs]
    assert sum(sent_by_relay) == CHANNELS * PER_CHANNEL
    if database == "postgres":
        # Row locks let both work at once (on SQLite they take turns, and one may do it all).
        assert all(sent > 0 for sent in sent_by_relay), sent_by_relay
    assert set(statuses(database)) == {SENT}

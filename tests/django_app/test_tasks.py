"""publish_realtime_event through a real Celery worker (Redis broker) to a scripted API server."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any

import pytest
from kombu.exceptions import EncodeError

from herald.django.tasks import publish_realtime_event, retry_delay
from tests.django_app.support.common import succeeded, unique
from tests.django_app.support.scripted_api import ScriptedApi, applied_then_stall, reply
from tests.django_app.support.worker import CeleryWorker, Workers
from tests.support.ports import free_port
from tests.support.timing import seconds

RETRY_LINE = r"realtime publish to {channel} failed \((?P<reason>[^)]*\)?)\); retry (?P<n>\d+)/5 in (?P<delay>[\d.]+)s"
DROP_LINE = (
    r"ERROR/.*realtime event dropped(?P<after>[^:]*): channel={channel} type=(?P<type>\S+) reason=(?P<reason>.*)$"
)


def retry_lines(worker: CeleryWorker, since: int, channel: str, count: int) -> list[re.Match[str]]:
    return worker.wait_for_log(RETRY_LINE.format(channel=re.escape(channel)), since, count)


def drop_lines(worker: CeleryWorker, since: int, channel: str) -> list[re.Match[str]]:
    return worker.wait_for_log(DROP_LINE.format(channel=re.escape(channel)), since)


def wait_delivered(scripted: ScriptedApi, channel: str, count: int = 1) -> None:
    assert scripted.wait_until(lambda: len(scripted.delivered(channel)) >= count, seconds(15)), scripted.seen(channel)


def test_503_twice_then_200_is_delivered_once(scripted: ScriptedApi, scripted_worker: CeleryWorker) -> None:
    channel = unique("orders")
    scripted.script(reply(503, "busy"), reply(503, "busy"))
    mark = scripted_worker.mark()

    publish_realtime_event.delay(channel=channel, event_type="order.completed", payload={"order_id": 1})

    wait_delivered(scripted, f"test_{channel}")
    seen = scripted.seen(f"test_{channel}")
    assert len(seen) == 3
    assert len(scripted.delivered(f"test_{channel}")) == 1
    # One key for the event, created before the first attempt and kept by every retry.
    keys = {s.idempotency_key for s in seen}
    assert len(keys) == 1 and None not in keys
    assert seen[0].body["data"] == {"type": "order.completed", "payload": {"order_id": 1}}
    lines = retry_lines(scripted_worker, mark, f"test_{channel}", 2)
    assert all("HTTP 503" in m["reason"] for m in lines)


def test_400_is_dropped_after_one_attempt_with_a_log_line(scripted: ScriptedApi, scripted_worker: CeleryWorker) -> None:
    channel = unique("orders")
    scripted.script(reply(400, "Bad Request"))
    mark = scripted_worker.mark()

    publish_realtime_event.delay(channel=channel, event_type="order.completed", payload={})

    [line] = drop_lines(scripted_worker, mark, f"test_{channel}")
    assert "HTTP 400" in line["reason"]
    assert line["after"] == ""
    assert len(scripted.seen(f"test_{channel}")) == 1
    assert scripted.delivered(f"test_{channel}") == []
    assert not re.search(RETRY_LINE.format(channel=re.escape(f"test_{channel}")), scripted_worker.log(mark))


def test_api_error_body_is_dropped_without_retry(scripted: ScriptedApi, scripted_worker: CeleryWorker) -> None:
    channel = unique("orders")
    scripted.script(reply(200, {"error": {"code": 102, "message": "unknown channel"}}))
    mark = scripted_worker.mark()

    publish_realtime_event.delay(channel=channel, event_type="x", payload={}, recoverable=True)

    [line] = drop_lines(scripted_worker, mark, f"critical:test_{channel}")
    assert "API error 102: unknown channel" in line["reason"]
    assert len(scripted.seen(f"critical:test_{channel}")) == 1


@pytest.mark.parametrize(
    "value", [dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC), decimal.Decimal("19.99")], ids=["datetime", "Decimal"]
)
def test_payload_that_is_not_json_is_dropped_not_retried(
    scripted: ScriptedApi, scripted_worker: CeleryWorker, value: Any
) -> None:
    # Celery's own serializer carries these types to the worker; the gateway's JSON cannot.
    channel = unique("orders")
    mark = scripted_worker.mark()

    publish_realtime_event.delay(channel=channel, event_type="order.completed", payload={"value": value})

    [line] = drop_lines(scripted_worker, mark, f"test_{channel}")
    assert "not JSON-serialisable" in line["reason"]
    assert type(value).__name__ in line["reason"]
    # Dropped at the first attempt: no retry line, and the drop line names no attempt count.
    assert line["after"] == ""
    assert not re.search(RETRY_LINE.format(channel=re.escape(f"test_{channel}")), scripted_worker.log(mark))
    assert scripted.seen(f"test_{channel}") == []


def test_payload_celery_cannot_encode_fails_at_the_call_and_is_never_queued(
    scripted: ScriptedApi, scripted_worker: CeleryWorker
) -> None:
    channel, sentinel = unique("orders"), unique("sentinel")
    with pytest.raises(EncodeError):
        publish_realtime_event.delay(channel=channel, event_type="x", payload={"obj": object()})
    publish_realtime_event.delay(channel=sentinel, event_type="x", payload={})
    wait_delivered(scripted, f"test_{sentinel}")
    assert scripted.seen(f"test_{channel}") == []


def test_timeout_on_an_applied_publish_is_retried_and_delivered_once(
    scripted: ScriptedApi, scripted_worker: CeleryWorker
) -> None:
    channel = unique("orders")
    scripted.script(applied_then_stall())
    mark = scripted_worker.mark()

    sent = publish_realtime_event.delay(channel=channel, event_type="order.completed", payload={"n": 1})

    [line] = retry_lines(scripted_worker, mark, f"test_{channel}", 1)
    assert "timed out" in line["reason"]
    scripted_worker.wait_for_log(succeeded(sent.id), mark)
    seen = scripted.seen(f"test_{channel}")
    assert len(seen) == 2
    assert seen[0].idempotency_key == seen[1].idempotency_key
    assert len(scripted.delivered(f"test_{channel}")) == 1


def test_transient_failures_are_dropped_after_the_retry_limit(
    scripted: ScriptedApi, scripted_worker: CeleryWorker
) -> None:
    channel = unique("orders")
    scripted.script(*[reply(503, "busy")] * 6)
    mark = scripted_worker.mark()

    publish_realtime_event.delay(channel=channel, event_type="x", payload={})

    [line] = drop_lines(scripted_worker, mark, f"test_{channel}")
    assert line["after"] == " after 6 attempts"
    assert "HTTP 503" in line["reason"]
    assert len(scripted.seen(f"test_{channel}")) == 6
    assert scripted.delivered(f"test_{channel}") == []


def test_retry_after_is_honoured(scripted: ScriptedApi, scripted_worker: CeleryWorker) -> None:
    channel = unique("orders")
    after = round(seconds(0.4), 3)  # as the worker logs it: milliseconds
    scripted.script(reply(429, "slow down", headers={"Retry-After": str(after)}))
    mark = scripted_worker.mark()

    publish_realtime_event.delay(channel=channel, event_type="x", payload={})

    wait_delivered(scripted, f"test_{channel}")
    [line] = retry_lines(scripted_worker, mark, f"test_{channel}", 1)
    assert float(line["delay"]) >= after
    first, second = scripted.seen(f"test_{channel}")
    assert second.at - first.at >= after * 0.9


def test_connection_refused_is_retried_with_growing_delays(workers: Workers) -> None:
    port = free_port()  # nothing listens here until the test starts a server
    worker = workers.ensure(HERALD_TEST_API_URL=f"http://127.0.0.1:{port}/api")
    channel = unique("orders")
    mark = worker.mark()

    sent = publish_realtime_event.delay(channel=channel, event_type="x", payload={"n": 1})

    lines = retry_lines(worker, mark, f"test_{channel}", 3)
    assert all("refused" in m["reason"].lower() for m in lines)
    delays = [float(m["delay"]) for m in lines]
    assert delays == sorted(delays) and delays[-1] > delays[0]
    # The API comes up: the next retry gets through, once.
    api = ScriptedApi(port)
    try:
        wait_delivered(api, f"test_{channel}")
        assert len(api.seen(f"test_{channel}")) == 1
    finally:
        api.close()
    worker.wait_for_log(succeeded(sent.id), mark)


def test_retry_delays_grow_with_jitter_within_the_cap() -> None:
    assert retry_delay(0, 1.0, 60.0, rand=lambda: 0.0) == 0.5
    assert retry_delay(0, 1.0, 60.0, rand=lambda: 1.0) == 1.0
    assert retry_delay(3, 1.0, 60.0, rand=lambda: 0.0) == 4.0
    assert retry_delay(20, 1.0, 60.0, rand=lambda: 0.0) == 60.0
    # Consecutive ranges touch but never go backwards.
    for n in range(12):
        assert retry_delay(n, 1.0, 60.0, rand=lambda: 1.0) <= retry_delay(n + 1, 1.0, 60.0, rand=lambda: 0.0)

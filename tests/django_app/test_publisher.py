"""push_event: the wire shape, channel resolution and failure classes, against a real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from herald.apiclient import PermanentApiError, TransientApiError
from herald.django.publisher import push_event
from tests.django_app.support.scripted_api import ScriptedApi, reply
from tests.support.gateway import TEST_API_KEY


@pytest.fixture(autouse=True)
def _api_url(scripted: ScriptedApi) -> Iterator[None]:
    with override_settings(REALTIME_API_URL=scripted.url):
        yield


def test_body_headers_and_result(scripted: ScriptedApi) -> None:
    result = push_event("tenant_1", "order.completed", {"order_id": 5, "total": "9.99"}, idempotency_key="k")
    assert result == {"offset": 1, "epoch": "scripted"}
    [seen] = scripted.seen()
    assert seen.method == "publish"
    assert seen.headers["x-api-key"] == TEST_API_KEY
    assert seen.body == {
        "channel": "test_tenant_1",
        "data": {"type": "order.completed", "payload": {"order_id": 5, "total": "9.99"}},
        "idempotency_key": "k",
    }


@pytest.mark.parametrize("channel", ["tenant_1", "test_tenant_1", "critical:tenant_1", "critical:test_tenant_1"])
def test_recoverable_goes_to_critical_with_the_prefix_once(scripted: ScriptedApi, channel: str) -> None:
    push_event(channel, "x", None, recoverable=True)
    assert scripted.seen()[0].channel == "critical:test_tenant_1"


def test_not_recoverable_keeps_the_namespace(scripted: ScriptedApi) -> None:
    push_event("tenant_1", "x", None)
    assert scripted.seen()[0].channel == "test_tenant_1"


@pytest.mark.parametrize(("channel", "event_type"), [("", "x"), ("critical:", "x"), ("tenant_1", "")])
def test_bad_arguments_are_permanent_and_not_sent(scripted: ScriptedApi, channel: str, event_type: str) -> None:
    with pytest.raises(PermanentApiError):
        push_event(channel, event_type, {})
    assert scripted.seen() == []


def test_recoverable_in_another_namespace_is_refused(scripted: ScriptedApi) -> None:
    with pytest.raises(PermanentApiError, match="namespace 'chat'"):
        push_event("chat:room", "x", {}, recoverable=True)


def test_failures_arrive_classified(scripted: ScriptedApi) -> None:
    scripted.script(reply(503), reply(400), reply(200, {"error": {"code": 102, "message": "unknown channel"}}))
    with pytest.raises(TransientApiError):
        push_event("tenant_1", "x", {})
    with pytest.raises(PermanentApiError):
        push_event("tenant_1", "x", {})
    with pytest.raises(PermanentApiError, match="102"):
        push_event("tenant_1", "x", {})

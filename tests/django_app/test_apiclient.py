"""ApiClient and AsyncApiClient against a real HTTP server: what is sent, and how each failure
is classified. Every test runs against both clients: the same semantics, the same errors."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from herald.apiclient import ApiClient, ApiError, PermanentApiError, TransientApiError, UnencodableData
from tests.django_app.support.async_client import BlockingAsyncClient
from tests.django_app.support.scripted_api import ScriptedApi, applied_then_stall, reply
from tests.support.ports import free_port
from tests.support.timing import seconds

MakeClient = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest) -> Iterator[MakeClient]:
    """``make_client(url, key, timeout=...)``: an ApiClient, or an AsyncApiClient driven on
    an event loop of its own thread behind the same blocking methods."""
    made: list[Any] = []

    def make(api_url: str, api_key: str, **options: Any) -> Any:
        client = (
            ApiClient(api_url, api_key, **options)
            if request.param == "sync"
            else BlockingAsyncClient(api_url, api_key, **options)
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(scripted: ScriptedApi, make_client: MakeClient) -> Any:
    return make_client(scripted.url, "key-1", timeout=seconds(2))


def test_publish_sends_the_documented_request(client: ApiClient, scripted: ScriptedApi) -> None:
    result = client.publish("news", {"a": 1}, idempotency_key="k1", tags={"t": "v"})
    assert result == {"offset": 1, "epoch": "scripted"}
    [seen] = scripted.seen()
    assert seen.method == "publish"
    assert seen.headers["x-api-key"] == "key-1"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {"channel": "news", "data": {"a": 1}, "idempotency_key": "k1", "tags": {"t": "v"}}


def test_connections_are_pooled(client: ApiClient, scripted: ScriptedApi) -> None:
    for _ in range(3):
        client.publish("news", {})
    assert len({s.peer for s in scripted.seen()}) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
def test_server_side_statuses_are_transient(client: ApiClient, scripted: ScriptedApi, status: int) -> None:
    scripted.script(reply(status, "busy"))
    with pytest.raises(TransientApiError) as info:
        client.publish("news", {})
    assert info.value.status == status
    assert info.value.transient


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 302])
def test_request_side_statuses_are_permanent(client: ApiClient, scripted: ScriptedApi, status: int) -> None:
    scripted.script(reply(status, "no", headers={"Location": "/elsewhere"}))
    with pytest.raises(PermanentApiError) as info:
        client.publish("news", {})
    assert info.value.status == status
    assert not info.value.transient
    assert len(scripted.seen()) == 1  # not even a redirect is followed


def test_401_names_the_key(client: ApiClient, scripted: ScriptedApi) -> None:
    scripted.script(reply(401, ""))
    with pytest.raises(PermanentApiError, match="API key"):
        client.publish("news", {})


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"code": 102, "message": "unknown channel"}, PermanentApiError),
        ({"code": 107, "message": "bad request"}, PermanentApiError),
        ({"code": 103, "message": "permission denied"}, PermanentApiError),
        ({"code": 100, "message": "internal server error"}, TransientApiError),
        ({"code": 111, "message": "too many requests"}, TransientApiError),
        ({"code": 108, "message": "not available", "temporary": True}, TransientApiError),
    ],
)
def test_api_error_bodies(
    client: ApiClient, scripted: ScriptedApi, error: dict[str, Any], kind: type[ApiError]
) -> None:
    scripted.script(reply(200, {"error": error}))
    with pytest.raises(kind) as info:
        client.publish("news", {})
    assert info.value.code == error["code"]
    assert error["message"] in str(info.value)


def test_retry_after_is_reported(client: ApiClient, scripted: ScriptedApi) -> None:
    scripted.script(reply(429, "slow down", headers={"Retry-After": "3"}))
    with pytest.raises(TransientApiError) as info:
        client.publish("news", {})
    assert info.value.retry_after == 3.0


def test_a_200_that_is_not_json_is_transient(client: ApiClient, scripted: ScriptedApi) -> None:
    scripted.script(reply(200, "<html>proxy</html>"))
    with pytest.raises(TransientApiError, match="not JSON"):
        client.publish("news", {})


def test_connection_refused_is_transient(make_client: MakeClient) -> None:
    api = make_client(f"http://127.0.0.1:{free_port()}/api", "k")
    with pytest.raises(TransientApiError) as info:
        api.publish("news", {})
    assert "refused" in info.value.reason.lower()


def test_timeout_is_transient_and_the_retry_is_deduplicated(scripted: ScriptedApi, make_client: MakeClient) -> None:
    scripted.script(applied_then_stall())
    api = make_client(scripted.url, "k", timeout=seconds(0.3))
    with pytest.raises(TransientApiError, match="timed out"):
        api.publish("news", {"n": 1}, idempotency_key="same")
    result = api.publish("news", {"n": 1}, idempotency_key="same")
    assert result == {"offset": 1, "epoch": "scripted"}
    assert len(scripted.seen("news")) == 2
    assert len(scripted.delivered("news")) == 1


@pytest.mark.parametrize(
    "payload",
    [dt.datetime(2024, 1, 1, tzinfo=dt.UTC), decimal.Decimal("9.99"), object(), {1, 2}, math.nan, b"bytes"],
)
def test_data_that_is_not_plain_json_is_permanent_and_never_sent(
    client: ApiClient, scripted: ScriptedApi, payload: Any
) -> None:
    with pytest.raises(UnencodableData) as info:
        client.publish("news", {"value": payload})
    assert not info.value.transient
    assert scripted.seen() == []


def test_revocation_and_disconnect_requests(client: ApiClient, scripted: ScriptedApi) -> None:
    client.disconnect("42")
    client.disconnect("42", code=4000, reason="bye")
    client.invalidate_user_tokens("42", issued_before=100, expire_at=200)
    client.revoke_token("jti-1", expire_at=300)
    assert [(s.method, s.body) for s in scripted.seen()] == [
        ("disconnect", {"user": "42"}),
        ("disconnect", {"user": "42", "disconnect": {"code": 4000, "reason": "bye"}}),
        ("invalidate_user_tokens", {"user": "42", "issued_before": 100, "expire_at": 200}),
        ("revoke_token", {"uid": "jti-1", "expire_at": 300}),
    ]


def test_invalidate_defaults_to_the_next_second(client: ApiClient, scripted: ScriptedApi) -> None:
    import time

    before = int(time.time())
    client.invalidate_user_tokens("42")
    issued_before = scripted.seen()[0].body["issued_before"]
    assert before + 1 <= issued_before <= int(time.time()) + 1


def test_broadcast_returns_one_response_per_channel(client: ApiClient, scripted: ScriptedApi) -> None:
    responses = [{"result": {}}, {"error": {"code": 102, "message": "unknown channel"}}]
    scripted.script(reply(200, {"result": {"responses": responses}}))
    assert client.broadcast(["a", "b"], {"x": 1}, idempotency_key="k") == responses
    assert scripted.seen()[0].body == {"channels": ["a", "b"], "data": {"x": 1}, "idempotency_key": "k"}


def test_batch_sends_commands_in_order_and_returns_one_reply_each(client: Any, scripted: ScriptedApi) -> None:
    replies = client.batch([("publish", {"channel": "a", "data": {}}), ("publish", {"channel": "b", "data": {}})])
    assert replies == [{"publish": {"offset": 1, "epoch": "scripted"}}, {"publish": {"offset": 2, "epoch": "scripted"}}]
    assert scripted.seen()[0].body == {
        "commands": [{"publish": {"channel": "a", "data": {}}}, {"publish": {"channel": "b", "data": {}}}],
        "parallel": False,
    }


def test_a_batch_answer_with_the_wrong_number_of_replies_is_transient(client: Any, scripted: ScriptedApi) -> None:
    scripted.script(reply(200, {"replies": []}))
    with pytest.raises(TransientApiError, match="expected 1 replies"):
        client.batch([("publish", {"channel": "a", "data": {}})])


def test_info_and_404_names_the_url(client: Any, scripted: ScriptedApi) -> None:
    scripted.script(reply(404, "Not Found"))
    with pytest.raises(PermanentApiError, match="ends in /api"):
        client.info()

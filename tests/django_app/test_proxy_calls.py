"""The proxy views that run application code: publish (validators per namespace) and RPC
(handlers per method), from ``tests/django_app/realtime.py``; the registries; the logout
disconnect; the proxy system checks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from herald.django.proxy import HeraldProxyDisconnect, HeraldProxyError, realtime_publish, realtime_rpc
from herald.django.proxy.checks import check_proxy_settings
from herald.django.proxy.registry import unregister
from tests.django_app.models import ChatMessage, Order, User
from tests.django_app.support.proxy_calls import answer, logged_in_browser
from tests.django_app.support.scripted_api import ScriptedApi, reply

UserFactory = Callable[..., User]
DENIED = {"error": {"code": 103, "message": "permission denied"}}
INTERNAL = {"error": {"code": 100, "message": "internal server error"}}


def publish(user: User | None, channel: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"user": str(user.pk) if user else "", "channel": channel}
    if data is not None:
        body["data"] = data
    return answer("publish", body)


def rpc(user: User | None, method: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"user": str(user.pk) if user else "", "method": method}
    if data is not None:
        body["data"] = data
    return answer("rpc", body)


# -- publish --------------------------------------------------------------------------------


def test_publish_accepted_is_stored_and_rewritten(make_user: UserFactory) -> None:
    user = make_user("alice", tenant_id=42)
    body = publish(user, "chat:test_tenant_42", {"text": "hello"})
    [stored] = ChatMessage.objects.all()
    assert (stored.channel, stored.author_id, stored.text) == ("chat:tenant_42", user.pk, "hello")
    assert body == {"result": {"data": {"id": stored.pk, "author": "alice", "text": "hello"}}}


@pytest.mark.parametrize(
    ("channel", "data", "error"),
    [
        ("chat:test_tenant_43", {"text": "hi"}, {"code": 403, "message": "not your tenant's chat"}),
        ("chat:test_tenant_42", {"text": "  "}, {"code": 400, "message": "text is required"}),
        ("chat:test_tenant_42", ["not", "an", "object"], {"code": 400, "message": "text is required"}),
        ("chat:test_tenant_42", {"text": "x" * 201}, {"code": 401, "message": "text longer than 200 characters"}),
    ],
)
def test_publish_rejected_with_the_validators_custom_error_stores_nothing(
    channel: str, data: Any, error: dict[str, Any], make_user: UserFactory
) -> None:
    user = make_user(tenant_id=42)
    assert publish(user, channel, data) == {"error": error}
    assert not ChatMessage.objects.exists()


def test_a_validator_may_close_the_connection(make_user: UserFactory) -> None:
    user = make_user(tenant_id=42)
    assert publish(user, "chat:test_tenant_42", {"text": "kick me"}) == {
        "disconnect": {"code": 4503, "reason": "kicked"}
    }


def test_a_validator_returning_none_publishes_the_data_as_sent(make_user: UserFactory) -> None:
    # {"result": {}}, never "data": null, which the gateway would publish as null (spec §2).
    assert publish(make_user(), "echo:test_anything", {"x": 1}) == {"result": {}}


@pytest.mark.parametrize("channel", ["test_tenant_42", "critical:test_tenant_42", "nochat:test_tenant_42"])
def test_publish_in_a_namespace_without_a_validator_is_103(channel: str, make_user: UserFactory) -> None:
    assert publish(make_user(tenant_id=42), channel, {"text": "hi"}) == DENIED


def test_publish_to_another_environments_channel_is_103(make_user: UserFactory) -> None:
    assert publish(make_user(tenant_id=42), "chat:prod_tenant_42", {"text": "hi"}) == DENIED
    assert not ChatMessage.objects.exists()


@pytest.mark.parametrize("user_id", ["", "999999"])
def test_publish_of_an_anonymous_or_unknown_user_is_103(user_id: str, db: None) -> None:
    body = {"user": user_id, "channel": "echo:test_x", "data": {}}
    assert answer("publish", body) == DENIED


@pytest.fixture
def temporary_registrations() -> Iterator[None]:
    yield
    unregister(publish="crash")
    unregister(publish="open")
    unregister(rpc="temp.unserialisable")


def test_a_validator_that_crashes_is_error_100_logged_and_rolled_back(
    make_user: UserFactory, temporary_registrations: None, caplog: pytest.LogCaptureFixture
) -> None:
    @realtime_publish("crash")
    def crash(user: Any, channel: str, data: Any) -> None:
        ChatMessage.objects.create(channel=channel, author=user, text="half done")
        raise KeyError("boom")

    with caplog.at_level(logging.ERROR, logger="herald.django.proxy"):
        assert publish(make_user(), "crash:test_x", {"a": 1}) == INTERNAL
    assert "publish proxy call failed" in caplog.text
    assert "KeyError: 'boom'" in caplog.text
    assert not ChatMessage.objects.exists()


def test_allow_anonymous_lets_anonymous_publications_through(db: None, temporary_registrations: None) -> None:
    seen: list[Any] = []

    @realtime_publish("open", allow_anonymous=True)
    def open_ns(user: Any, channel: str, data: Any) -> Any:
        seen.append((user.is_authenticated, channel, data))
        return {"wrapped": data}

    assert publish(None, "open:test_lobby", [1, 2]) == {"result": {"data": {"wrapped": [1, 2]}}}
    assert seen == [(False, "open:lobby", [1, 2])]


# -- RPC ------------------------------------------------------------------------------------


def test_rpc_success_returns_the_handlers_data(make_user: UserFactory) -> None:
    user = make_user(tenant_id=42)
    small = Order.objects.create(tenant_id=42, total=Decimal("5.00"))
    big = Order.objects.create(tenant_id=42, total=Decimal("50.00"))
    Order.objects.create(tenant_id=43, total=Decimal("99.00"))
    assert rpc(user, "orders.search", {"min_total": "10"}) == {
        "result": {"data": {"orders": [{"id": big.pk, "total": "50.00"}]}}
    }
    assert [o["id"] for o in rpc(user, "orders.search")["result"]["data"]["orders"]] == [small.pk, big.pk]


def test_rpc_custom_error_is_passed_with_its_code_and_temporary_flag(make_user: UserFactory) -> None:
    user = make_user()
    assert rpc(user, "fail.custom") == {"error": {"code": 1404, "message": "no such report", "temporary": True}}
    assert rpc(user, "orders.search", {"min_total": "lots"}) == {
        "error": {"code": 400, "message": "min_total must be a number"}
    }


@pytest.mark.parametrize("method", ["orders.delete", "", "ORDERS.SEARCH"])
def test_rpc_unknown_method_is_104(method: str, make_user: UserFactory) -> None:
    assert rpc(make_user(), method) == {"error": {"code": 104, "message": "method not found"}}


def test_rpc_without_a_method_field_is_104(make_user: UserFactory) -> None:
    # The gateway omits "method" when it is empty (proxy spec §3.6).
    user = make_user()
    assert answer("rpc", {"user": str(user.pk)}) == {"error": {"code": 104, "message": "method not found"}}


def test_rpc_crash_is_internal_error_and_logged(make_user: UserFactory, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="herald.django.proxy"):
        assert rpc(make_user(), "fail.crash") == INTERNAL
    assert "RuntimeError: a bug in the handler" in caplog.text


def test_rpc_result_that_is_not_json_is_internal_error(
    make_user: UserFactory, temporary_registrations: None, caplog: pytest.LogCaptureFixture
) -> None:
    @realtime_rpc("temp.unserialisable")
    def unserialisable(user: Any, data: Any) -> Any:
        return {"a": {1, 2}}

    with caplog.at_level(logging.ERROR, logger="herald.django.proxy"):
        assert rpc(make_user(), "temp.unserialisable") == INTERNAL
    assert "not JSON serializable" in caplog.text


def test_rpc_of_anonymous_is_refused_unless_the_handler_allows_it(db: None) -> None:
    assert rpc(None, "orders.search") == DENIED
    assert rpc(None, "public.time") == {"result": {"data": {"anonymous": True}}}


# -- registries -----------------------------------------------------------------------------


def test_registering_a_second_function_for_a_name_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="registered twice"):

        @realtime_rpc("orders.search")
        def other(user: Any, data: Any) -> None: ...

    with pytest.raises(ImproperlyConfigured, match="registered twice"):

        @realtime_publish("chat")
        def other_chat(user: Any, channel: str, data: Any) -> None: ...


@pytest.mark.parametrize("namespace", ["a:b", "$x", "with space", None])
def test_a_namespace_that_the_gateway_would_parse_differently_is_refused(namespace: Any) -> None:
    with pytest.raises(ValueError, match="namespace"):
        realtime_publish(namespace)


def test_error_and_disconnect_codes_are_range_checked() -> None:
    assert HeraldProxyError(103, "x").as_error() == {"code": 103, "message": "x"}
    assert HeraldProxyError(1999, "x", temporary=True).as_error() == {"code": 1999, "message": "x", "temporary": True}
    for code in (0, 99, 113, 399, 2000, 3501):
        with pytest.raises(ValueError):
            HeraldProxyError(code, "x")
    with pytest.raises(TypeError):
        HeraldProxyError(True, "x")  # type: ignore[arg-type]
    assert HeraldProxyDisconnect(4999, "bye").as_disconnect() == {"code": 4999, "reason": "bye"}
    for code in (3000, 3999, 5000):
        with pytest.raises(ValueError):
            HeraldProxyDisconnect(code, "x")
    with pytest.raises(ValueError):
        HeraldProxyDisconnect(4000, "x" * 33)
    with pytest.raises(ValueError):
        HeraldProxyDisconnect(4000, "caf\u00e9")


# -- logout ---------------------------------------------------------------------------------


def test_logout_disconnects_the_users_connections_with_a_reconnect_code(
    make_user: UserFactory, scripted: ScriptedApi
) -> None:
    user = make_user()
    browser, _ = logged_in_browser(user)
    with override_settings(REALTIME_API_URL=scripted.url):
        browser.logout()
    [seen] = scripted.seen()
    assert seen.method == "disconnect"
    assert seen.body == {"user": str(user.pk), "disconnect": {"code": 4001, "reason": "logged out"}}


def test_logout_succeeds_when_the_gateway_refuses_and_says_so_in_the_log(
    make_user: UserFactory, scripted: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    user = make_user()
    browser, cookie = logged_in_browser(user)
    scripted.script(reply(401, {"error": "unauthorized"}))
    with override_settings(REALTIME_API_URL=scripted.url), caplog.at_level(logging.WARNING):
        browser.logout()
    assert f"could not disconnect user {user.pk} after logout" in caplog.text
    assert answer("connect", cookie=cookie) == {"disconnect": {"code": 4501, "reason": "unauthorized"}}


def test_logout_disconnect_can_be_turned_off(make_user: UserFactory, scripted: ScriptedApi) -> None:
    browser, _ = logged_in_browser(make_user())
    with override_settings(REALTIME_API_URL=scripted.url, REALTIME_DISCONNECT_ON_LOGOUT=False):
        browser.logout()
    assert scripted.seen() == []


def test_an_anonymous_logout_calls_nothing(db: None, scripted: ScriptedApi) -> None:
    with override_settings(REALTIME_API_URL=scripted.url):
        Client().logout()
    assert scripted.seen() == []


# -- checks ---------------------------------------------------------------------------------


def proxy_ids(**overrides: Any) -> list[str]:
    with override_settings(**overrides):
        return [m.id for m in check_proxy_settings() if m.id is not None]


def test_the_test_settings_pass_the_proxy_checks() -> None:
    assert proxy_ids() == []


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("REALTIME_PROXY_SECRET", "", "herald.E019"),
        ("REALTIME_PROXY_SECRET", None, "herald.E019"),
        ("REALTIME_PROXY_SECRET", "short", "herald.E020"),
        ("REALTIME_PROXY_SECRET", "x" * 31, "herald.E020"),
        ("REALTIME_PROXY_SECRET_HEADER", "X Secret", "herald.E021"),
        ("REALTIME_PROXY_SECRET_HEADER", "", "herald.E021"),
        ("REALTIME_PROXY_CONNECTION_TTL_SECONDS", 5, "herald.E022"),
        ("REALTIME_PROXY_CONNECTION_TTL_SECONDS", "600", "herald.E022"),
        ("REALTIME_PROXY_CONNECTION_TTL_SECONDS", True, "herald.E022"),
        ("REALTIME_PROXY_SUBSCRIPTION_TTL_SECONDS", 100_000, "herald.E023"),
        ("REALTIME_DISCONNECT_ON_LOGOUT", "yes", "herald.E024"),
    ],
)
def test_each_bad_proxy_setting_has_its_id(setting: str, value: Any, check_id: str) -> None:
    assert proxy_ids(**{setting: value}) == [check_id]


def test_a_missing_secret_is_fine_when_the_proxy_urls_are_not_installed() -> None:
    assert proxy_ids(REALTIME_PROXY_SECRET="", ROOT_URLCONF="tests.django_app.test_proxy_calls") == []


def test_the_proxy_urls_need_the_auth_and_session_apps() -> None:
    from django.conf import settings

    apps = [a for a in settings.INSTALLED_APPS if a not in ("django.contrib.sessions", "django.contrib.admin")]
    with override_settings(INSTALLED_APPS=apps):
        assert proxy_ids() == ["herald.E025"]


urlpatterns: list[Any] = []  # a URLconf without the proxy URLs, for the check above

"""The proxy views that decide who connects and what they may subscribe to, called as the
gateway calls them (real Django, real sessions, real database): connect, refresh, subscribe,
sub_refresh, and the checks on the caller every proxy view makes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from django.test import Client, override_settings

from herald.django.proxy import HeraldProxyDisconnect
from tests.django_app.models import User
from tests.django_app.support.proxy_calls import answer, gateway_call, logged_in_browser, session_cookie

UserFactory = Callable[..., User]
EVENTS = ["connect", "refresh", "subscribe", "sub_refresh", "publish", "rpc"]


# -- the caller -----------------------------------------------------------------------------


@pytest.mark.parametrize("event", EVENTS)
def test_a_call_without_the_secret_header_is_401_json(event: str, db: None) -> None:
    response = gateway_call(event, {"user": ""}, secret=None)
    assert response.status_code == 401
    assert "X-Realtime-Proxy-Secret" in response.json()["detail"]


@pytest.mark.parametrize("event", EVENTS)
def test_a_call_with_a_wrong_secret_is_403_json(event: str, db: None) -> None:
    response = gateway_call(event, {"user": ""}, secret="not-the-secret")
    assert response.status_code == 403
    assert response.json() == {"detail": "wrong X-Realtime-Proxy-Secret"}


def test_an_unset_secret_refuses_every_caller_even_with_an_empty_header(db: None) -> None:
    with override_settings(REALTIME_PROXY_SECRET=""):
        assert gateway_call("connect", secret="").status_code == 403


def test_the_secret_header_name_is_a_setting(make_user: UserFactory) -> None:
    cookie = session_cookie(make_user())
    with override_settings(REALTIME_PROXY_SECRET_HEADER="Authorization", REALTIME_PROXY_SECRET="Bearer s" * 8):
        assert gateway_call("connect", cookie=cookie).status_code == 401
        response = Client().post(
            "/realtime/proxy/connect/", b"{}", content_type="application/json", HTTP_AUTHORIZATION="Bearer s" * 8
        )
        assert response.status_code == 200


@pytest.mark.parametrize("event", EVENTS)
def test_get_is_405_json(event: str, db: None) -> None:
    response = gateway_call(event, method="get")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "POST" in response.json()["detail"]


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_400(raw: bytes, db: None) -> None:
    response = gateway_call("subscribe", raw=raw)
    assert response.status_code == 400
    assert response.json() == {"detail": "the body must be a JSON object"}


def test_binary_proxy_encoding_is_refused_with_a_hint(db: None) -> None:
    response = gateway_call("publish", {"user": "1", "channel": "echo:test_x", "b64data": "e30="})
    assert response.status_code == 400
    assert "proxy_binary_encoding" in response.json()["detail"]


@pytest.mark.parametrize(("field", "value"), [("user", 5), ("channel", None), ("channel", ["a"])])
def test_a_field_of_the_wrong_type_is_400_naming_it(field: str, value: object, db: None) -> None:
    body = {"user": "1", "channel": "test_user_1", field: value}
    response = gateway_call("subscribe", body)
    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_csrf_is_not_required_the_secret_is_the_credential(make_user: UserFactory) -> None:
    # gateway_call's client enforces CSRF checks, as a browser's requests would be checked.
    cookie = session_cookie(make_user())
    assert "result" in answer("connect", cookie=cookie)


# -- connect --------------------------------------------------------------------------------


def test_connect_with_a_session_cookie_answers_the_user_grants_info_and_expiry(make_user: UserFactory) -> None:
    user = make_user("alice", tenant_id=42, first_name="Alice", last_name="Liddell")
    before = int(time.time())
    connect = {"name": "python", "version": "0.4", "channels": ["elsewhere"]}
    body = answer("connect", connect, cookie=session_cookie(user))
    result = body.pop("result")
    assert body == {}
    expire_at = result.pop("expire_at")
    assert before + 600 <= expire_at <= int(time.time()) + 600
    assert result == {
        "user": str(user.pk),
        # REALTIME_CHANNELS' grants with the environment prefix, as the token view mints them;
        # the channels the client asked for are not echoed (proxy spec §3.1).
        "channels": [
            f"test_user_{user.pk}",
            f"critical:test_user_{user.pk}",
            "test_tenant_42",
            "critical:test_tenant_42",
        ],
        "info": {"name": "Alice Liddell", "email": "alice@example.com"},
    }


def test_connect_grants_come_from_the_channels_hook(make_user: UserFactory) -> None:
    user = make_user()
    with override_settings(REALTIME_CHANNELS="tests.django_app.test_proxy_views.only_news"):
        result = answer("connect", cookie=session_cookie(user))["result"]
    assert result["channels"] == ["test_news", "critical:test_news"]


def only_news(user: User) -> list[str]:
    return ["news", "critical:test_news"]


def banned(user: User) -> list[str]:
    raise HeraldProxyDisconnect(4503, "banned")


def test_a_grants_hook_may_refuse_the_connection_with_a_disconnect(make_user: UserFactory) -> None:
    with override_settings(REALTIME_CHANNELS="tests.django_app.test_proxy_views.banned"):
        assert answer("connect", cookie=session_cookie(make_user())) == {
            "disconnect": {"code": 4503, "reason": "banned"}
        }


def broken(user: User) -> list[str]:
    raise RuntimeError("the grants table is gone")


def test_a_fault_in_connect_is_http_500_json_so_the_gateway_retries_and_is_logged(
    make_user: UserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The gateway turns a non-200 into error 100, temporary: the SDK reconnects with backoff.
    cookie = session_cookie(make_user())
    with (
        override_settings(REALTIME_CHANNELS="tests.django_app.test_proxy_views.broken"),
        caplog.at_level(logging.ERROR, logger="herald.django.proxy"),
    ):
        response = gateway_call("connect", cookie=cookie)
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert "connect proxy call failed" in caplog.text
    assert "the grants table is gone" in caplog.text


def test_connect_without_expiry_when_the_ttl_is_zero(make_user: UserFactory) -> None:
    with override_settings(REALTIME_PROXY_CONNECTION_TTL_SECONDS=0):
        result = answer("connect", cookie=session_cookie(make_user()))["result"]
    assert "expire_at" not in result


UNAUTHORIZED = {"disconnect": {"code": 4501, "reason": "unauthorized"}}


def test_connect_without_a_cookie_is_the_terminal_unauthorized_disconnect(db: None) -> None:
    assert answer("connect") == UNAUTHORIZED


def test_connect_with_an_unknown_session_key_is_unauthorized(db: None) -> None:
    assert answer("connect", cookie="sessionid=abcdefghijklmnopqrstuvwxyz012345") == UNAUTHORIZED


def test_connect_after_logout_is_unauthorized(make_user: UserFactory) -> None:
    browser, cookie = logged_in_browser(make_user())
    assert "result" in answer("connect", cookie=cookie)
    browser.logout()
    assert answer("connect", cookie=cookie) == UNAUTHORIZED


def test_connect_of_an_inactive_user_is_unauthorized(make_user: UserFactory) -> None:
    user = make_user()
    cookie = session_cookie(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert answer("connect", cookie=cookie) == UNAUTHORIZED


def test_a_password_change_ends_the_sessions_connect_accepts(make_user: UserFactory) -> None:
    # django.contrib.auth.get_user checks the session's password hash, as for any request.
    user = make_user()
    cookie = session_cookie(user)
    user.set_password("changed")
    user.save()
    assert answer("connect", cookie=cookie) == UNAUTHORIZED


def test_connect_reads_the_configured_session_cookie_name(make_user: UserFactory) -> None:
    user = make_user()
    with override_settings(SESSION_COOKIE_NAME="shop_session"):
        _, cookie = logged_in_browser(user)
        assert cookie.startswith("shop_session=")
        assert answer("connect", cookie=f"other=1; {cookie}")["result"]["user"] == str(user.pk)


# -- refresh --------------------------------------------------------------------------------


def test_refresh_extends_while_the_session_lives(make_user: UserFactory) -> None:
    user = make_user()
    before = int(time.time())
    result = answer("refresh", {"user": str(user.pk)}, cookie=session_cookie(user))["result"]
    assert result.keys() == {"expire_at"}
    assert before + 600 <= result["expire_at"] <= int(time.time()) + 600


def test_refresh_after_logout_is_expired(make_user: UserFactory) -> None:
    user = make_user()
    browser, cookie = logged_in_browser(user)
    browser.logout()
    assert answer("refresh", {"user": str(user.pk)}, cookie=cookie) == {"result": {"expired": True}}


def test_refresh_with_another_users_session_is_expired(make_user: UserFactory) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    assert answer("refresh", {"user": str(alice.pk)}, cookie=session_cookie(bob)) == {"result": {"expired": True}}


def test_refresh_of_a_token_connection_lives_while_the_user_is_active(make_user: UserFactory) -> None:
    # No session cookie: the connection was made with a token (the gateway refreshes every
    # connection once a refresh endpoint is configured, proxy spec §6).
    user = make_user()
    assert "expire_at" in answer("refresh", {"user": str(user.pk)})["result"]
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert answer("refresh", {"user": str(user.pk)}) == {"result": {"expired": True}}
    assert answer("refresh", {"user": ""}) == {"result": {"expired": True}}
    assert answer("refresh", {"user": "999999"}) == {"result": {"expired": True}}


def test_refresh_without_the_user_field_is_400(db: None) -> None:
    response = gateway_call("refresh", {})
    assert response.status_code == 400
    assert response.json() == {"detail": "'user' is required"}


# -- subscribe and sub_refresh --------------------------------------------------------------

DENIED = {"error": {"code": 103, "message": "permission denied"}}


def test_subscribe_to_a_granted_channel_is_allowed(make_user: UserFactory) -> None:
    user = make_user(tenant_id=42)
    assert answer("subscribe", {"user": str(user.pk), "channel": "test_tenant_42"}) == {"result": {}}
    assert answer("subscribe", {"user": str(user.pk), "channel": "critical:test_tenant_42"}) == {"result": {}}


def test_subscribe_asks_the_subscription_authorizer_with_the_name_without_prefix(make_user: UserFactory) -> None:
    user = make_user()
    # tests.django_app.grants.can_subscribe allows report_<own pk> only.
    assert answer("subscribe", {"user": str(user.pk), "channel": f"test_report_{user.pk}"}) == {"result": {}}
    assert answer("subscribe", {"user": str(user.pk), "channel": f"test_report_{user.pk + 1}"}) == DENIED
    # ...and chat:tenant_<the tenant in the database> (tests/django_app/grants.py).
    assert answer("subscribe", {"user": str(user.pk), "channel": "chat:test_tenant_7"}) == {"result": {}}


@pytest.mark.parametrize(
    "channel",
    [
        "test_tenant_43",
        "critical:test_tenant_4",
        "tenant_42",
        "prod_tenant_42",
        "chat:test_tenant_43",
        "chat:tenant_42",
    ],
)
def test_subscribe_to_anything_else_is_103(channel: str, make_user: UserFactory) -> None:
    user = make_user(tenant_id=42)
    assert answer("subscribe", {"user": str(user.pk), "channel": channel}) == DENIED


@pytest.mark.parametrize("user_id", ["", "999999", "not-a-number"])
def test_subscribe_of_an_anonymous_or_unknown_user_is_103(user_id: str, db: None) -> None:
    assert answer("subscribe", {"user": user_id, "channel": "test_tenant_42"}) == DENIED


def test_subscribe_of_an_inactive_user_is_103(make_user: UserFactory) -> None:
    user = make_user(tenant_id=42, is_active=False)
    assert answer("subscribe", {"user": str(user.pk), "channel": "test_tenant_42"}) == DENIED


def test_subscribe_sets_an_expiry_only_when_a_subscription_ttl_is_configured(make_user: UserFactory) -> None:
    user = make_user(tenant_id=42)
    with override_settings(REALTIME_PROXY_SUBSCRIPTION_TTL_SECONDS=60):
        result = answer("subscribe", {"user": str(user.pk), "channel": "test_tenant_42"})["result"]
    assert result["expire_at"] >= int(time.time()) + 59


def test_sub_refresh_extends_an_allowed_subscription_and_expires_a_refused_one(make_user: UserFactory) -> None:
    user = make_user(tenant_id=42)
    result = answer("sub_refresh", {"user": str(user.pk), "channel": "test_tenant_42"})["result"]
    assert result.keys() == {"expire_at"}
    assert result["expire_at"] >= int(time.time()) + 599
    # The user moved to another tenant: the next sub_refresh ends the subscription.
    User.objects.filter(pk=user.pk).update(tenant_id=43)
    assert answer("sub_refresh", {"user": str(user.pk), "channel": "test_tenant_42"}) == {"result": {"expired": True}}

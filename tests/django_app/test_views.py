"""Token endpoints: DRF, plain Django and async Django, authentication and CSRF."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils.crypto import get_random_string

from herald.tokens import TokenVerifier, VerifierKeys
from tests.django_app.models import User
from tests.support.gateway import TEST_SECRET

verifier = TokenVerifier(VerifierKeys(hmac_secret=TEST_SECRET))
DRF = "/realtime"
PLAIN = "/plain/realtime"
ASYNC = "/async/realtime"


def csrf_client(user: User) -> tuple[Client, dict[str, str]]:
    """A client that enforces CSRF like a browser would be checked, with a valid token at hand."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    secret = get_random_string(32)
    client.cookies[settings.CSRF_COOKIE_NAME] = secret
    return client, {"X-CSRFToken": secret}


@pytest.mark.usefixtures("db")
def test_drf_anonymous_is_refused() -> None:
    response = Client().post(f"{DRF}/token/")
    assert response.status_code in (401, 403)
    assert "token" not in response.json()


@pytest.mark.usefixtures("db")
@pytest.mark.parametrize("base", [PLAIN, ASYNC])
def test_plain_anonymous_gets_401_json(base: str) -> None:
    response = Client().post(f"{base}/token/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


@pytest.mark.parametrize("base", [DRF, PLAIN, ASYNC])
def test_authenticated_user_gets_token_and_socket_url(make_user: Callable[..., User], base: str) -> None:
    user = make_user()
    client, csrf = csrf_client(user)
    response = client.post(f"{base}/token/", headers=csrf)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token", "socket_url"}
    assert body["socket_url"] == settings.REALTIME_SOCKET_URL
    assert verifier.verify_connection(body["token"]).user == str(user.pk)
    # A credential must never be cached for someone else.
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("base", [DRF, PLAIN, ASYNC])
def test_csrf_is_enforced_for_session_users(make_user: Callable[..., User], base: str) -> None:
    client, _ = csrf_client(make_user())
    response = client.post(f"{base}/token/")
    assert response.status_code == 403
    assert "token" not in response.json()


@pytest.mark.parametrize("base", [DRF, PLAIN, ASYNC])
def test_only_post(make_user: Callable[..., User], base: str) -> None:
    client = Client()
    client.force_login(make_user())
    assert client.get(f"{base}/token/").status_code == 405


@pytest.mark.parametrize("base", [DRF, PLAIN, ASYNC])
def test_subscription_token_endpoint(make_user: Callable[..., User], base: str) -> None:
    user = make_user()
    client, csrf = csrf_client(user)
    allowed = client.post(
        f"{base}/subscription-token/", {"channel": f"report_{user.pk}"}, content_type="application/json", headers=csrf
    )
    assert allowed.status_code == 200, allowed.content
    assert verifier.verify_subscription(allowed.json()["token"]).channel == f"test_report_{user.pk}"

    denied = client.post(
        f"{base}/subscription-token/", {"channel": "report_0"}, content_type="application/json", headers=csrf
    )
    assert denied.status_code == 403
    missing = client.post(f"{base}/subscription-token/", {}, content_type="application/json", headers=csrf)
    assert missing.status_code == 400


def test_urls_fall_back_to_plain_views_without_drf() -> None:
    import herald.django.urls as urls
    from herald.django.plain_views import PlainRealtimeTokenView
    from herald.django.views import RealtimeTokenView

    def token_view() -> object:
        [pattern] = [p for p in urls.urlpatterns if p.name == "token"]
        return pattern.callback.view_class  # type: ignore[attr-defined]

    assert token_view() is RealtimeTokenView
    without_drf = [app for app in settings.INSTALLED_APPS if app != "rest_framework"]
    try:
        with override_settings(INSTALLED_APPS=without_drf):
            importlib.reload(urls)
            assert token_view() is PlainRealtimeTokenView
    finally:
        importlib.reload(urls)
    assert token_view() is RealtimeTokenView

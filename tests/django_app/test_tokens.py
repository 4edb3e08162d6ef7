"""RealtimeTokenService: claims of connection and subscription tokens."""

from __future__ import annotations

from collections.abc import Callable

import jwt
import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.test import override_settings

from herald.django.tokens import RealtimeTokenService
from herald.tokens import TokenVerifier, VerifierKeys
from tests.django_app.models import User
from tests.support.gateway import TEST_SECRET

verifier = TokenVerifier(VerifierKeys(hmac_secret=TEST_SECRET))


def test_connection_token_claims(make_user: Callable[..., User]) -> None:
    user = make_user("alice", tenant_id=7, first_name="Alice", last_name="Liddell")
    token = RealtimeTokenService().generate_connection_token(user)

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    raw = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    assert raw["sub"] == str(user.pk)
    assert raw["exp"] - raw["iat"] == 600
    assert len(raw["jti"]) >= 16
    assert raw["info"] == {"name": "Alice Liddell", "email": "alice@example.com"}
    assert raw["channels"] == [
        f"test_user_{user.pk}",
        f"critical:test_user_{user.pk}",
        "test_tenant_7",
        "critical:test_tenant_7",
    ]
    assert "aud" not in raw and "iss" not in raw
    # The gateway's own verifier (herald.tokens) accepts it.
    claims = verifier.verify_connection(token)
    assert claims.user == str(user.pk)
    assert claims.channels == tuple(raw["channels"])


def test_every_token_is_unique(make_user: Callable[..., User]) -> None:
    user = make_user()
    service = RealtimeTokenService()
    first = jwt.decode(service.generate_connection_token(user), TEST_SECRET, algorithms=["HS256"])
    second = jwt.decode(service.generate_connection_token(user), TEST_SECRET, algorithms=["HS256"])
    assert first["jti"] != second["jti"]


def test_user_without_tenant_gets_only_own_channels(make_user: Callable[..., User]) -> None:
    user = make_user("bob", tenant_id=None)
    raw = jwt.decode(RealtimeTokenService().generate_connection_token(user), TEST_SECRET, algorithms=["HS256"])
    assert raw["channels"] == [f"test_user_{user.pk}", f"critical:test_user_{user.pk}"]
    assert raw["info"] == {"name": "bob", "email": "bob@example.com"}


def test_audience_issuer_and_ttl_follow_settings(make_user: Callable[..., User]) -> None:
    user = make_user()
    with override_settings(
        REALTIME_TOKEN_AUDIENCE="herald", REALTIME_TOKEN_ISSUER="shop", REALTIME_TOKEN_TTL_SECONDS=120
    ):
        token = RealtimeTokenService().generate_connection_token(user)
    raw = jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience="herald", issuer="shop")
    assert raw["exp"] - raw["iat"] == 120
    TokenVerifier(VerifierKeys(hmac_secret=TEST_SECRET, audience="herald", issuer="shop")).verify_connection(token)


def test_no_token_for_anonymous_or_inactive_users(make_user: Callable[..., User]) -> None:
    service = RealtimeTokenService()
    with pytest.raises(PermissionDenied):
        service.generate_connection_token(AnonymousUser())
    with pytest.raises(PermissionDenied):
        service.generate_connection_token(make_user(is_active=False))


@pytest.mark.parametrize("requested", ["report_{pk}", "test_report_{pk}"])
def test_subscription_token_when_the_hook_allows(make_user: Callable[..., User], requested: str) -> None:
    user = make_user()
    token = RealtimeTokenService().generate_subscription_token(user, requested.format(pk=user.pk))
    claims = verifier.verify_subscription(token)
    assert claims.channel == f"test_report_{user.pk}"
    assert claims.user == str(user.pk)
    assert claims.exp is not None


@pytest.mark.parametrize("requested", ["report_0", "test_tenant_8", "critical:", ""])
def test_subscription_token_refused_otherwise(make_user: Callable[..., User], requested: str) -> None:
    with pytest.raises(PermissionDenied):
        RealtimeTokenService().generate_subscription_token(make_user(), requested)


def test_default_authorizer_refuses_everything(make_user: Callable[..., User]) -> None:
    user = make_user()
    with (
        override_settings(REALTIME_SUBSCRIPTION_AUTHORIZER="herald.django.channels.deny_all"),
        pytest.raises(PermissionDenied),
    ):
        RealtimeTokenService().generate_subscription_token(user, f"report_{user.pk}")

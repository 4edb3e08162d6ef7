"""Connection and subscription tokens against a real gateway (spec §4, decisions §1, §3, §4)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.api import api
from tests.support.gateway import TEST_SECRET, GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.timing import seconds
from tests.support.tokens import GRANTS, REFUSED, sub_token, token

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PUBLIC_PEM = (
    EC_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "5", "iat": now, "exp": now + 600, "channels": ["tenant_42"]}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], body: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}."


@pytest.fixture(scope="module")
def multi_key_gateway() -> Iterator[GatewayProcess]:
    cfg = base_config(
        token_rsa_public_key=RSA_PUBLIC_PEM,
        token_ecdsa_public_key=EC_PUBLIC_PEM,
        token_audience="herald-tests",
        token_issuer="https://issuer.example",
    )
    with running_gateway(cfg) as gw:
        yield gw


def good(**extra: Any) -> dict[str, Any]:
    return claims(aud="herald-tests", iss="https://issuer.example", **extra)


async def connect_outcome(gw: GatewayProcess, tok: str) -> dict[str, Any] | tuple[int, str]:
    """The connect reply, or the close (code, reason) when the gateway disconnects instead."""
    c = await RawClient.open(gw.ws_url)
    await c.send(json.dumps({"id": 1, "connect": {"token": tok}}))
    try:
        messages = await c.read_frame()
    except Exception:
        return await c.closed()
    await c.close()
    return messages[0]


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_algorithms(multi_key_gateway: GatewayProcess, alg: str) -> None:
    outcome = await connect_outcome(multi_key_gateway, jwt.encode(good(), TEST_SECRET, algorithm=alg))
    assert isinstance(outcome, dict) and "connect" in outcome


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512"])
async def test_rsa_algorithms(multi_key_gateway: GatewayProcess, alg: str) -> None:
    outcome = await connect_outcome(multi_key_gateway, jwt.encode(good(), RSA_KEY, algorithm=alg))
    assert isinstance(outcome, dict) and "connect" in outcome


async def test_ecdsa_p256(multi_key_gateway: GatewayProcess) -> None:
    outcome = await connect_outcome(multi_key_gateway, jwt.encode(good(), EC_KEY, algorithm="ES256"))
    assert isinstance(outcome, dict) and "connect" in outcome


@pytest.mark.parametrize(("alg", "curve"), [("ES384", ec.SECP384R1()), ("ES512", ec.SECP521R1())])
async def test_ecdsa_curves_pin_their_algorithm(alg: str, curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with running_gateway(base_config(token_ecdsa_public_key=pem.decode())) as gw:
        outcome = await connect_outcome(gw, jwt.encode(claims(), key, algorithm=alg))
        assert isinstance(outcome, dict) and "connect" in outcome
        # The same key under another algorithm name is refused.
        other = "ES256" if alg != "ES256" else "ES384"
        _, body, signature = jwt.encode(claims(), key, algorithm=alg).split(".")
        forged = f"{b64(json.dumps({'alg': other, 'typ': 'JWT'}).encode())}.{body}.{signature}"
        assert await connect_outcome(gw, forged) == (3500, "invalid token")


def hs256_with_public_key() -> str:
    # Classic key confusion: sign HS256 with the RSA public key text as the HMAC secret.
    import hashlib
    import hmac

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(good()).encode())
    signature = hmac.new(RSA_PUBLIC_PEM.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


INVALID_TOKENS = {
    "alg-none": lambda: unsigned({"alg": "none", "typ": "JWT"}, good()),
    "alg-None": lambda: unsigned({"alg": "None", "typ": "JWT"}, good()),
    "alg-NONE": lambda: unsigned({"alg": "NONE", "typ": "JWT"}, good()),
    "alg-nOnE": lambda: unsigned({"alg": "nOnE", "typ": "JWT"}, good()),
    "hs256-with-rsa-public-key": hs256_with_public_key,
    "bad-signature": lambda: jwt.encode(good(), "another-secret-another-secret-12345", algorithm="HS256"),
    "wrong-aud": lambda: jwt.encode(claims(aud="someone-else", iss="https://issuer.example"), TEST_SECRET),
    "wrong-iss": lambda: jwt.encode(claims(aud="herald-tests", iss="https://evil.example"), TEST_SECRET),
    "two-segments": lambda: ".".join(jwt.encode(good(), TEST_SECRET).split(".")[:2]),
    "four-segments": lambda: jwt.encode(good(), TEST_SECRET) + ".extra",
    "channel-claim": lambda: jwt.encode(good(channel="tenant_42"), TEST_SECRET),
    "int-sub": lambda: jwt.encode(good(sub=5), TEST_SECRET),
    "no-exp": lambda: jwt.encode(good(exp=None), TEST_SECRET),
    "jwk-header": lambda: jwt.encode(good(), TEST_SECRET, headers={"jwk": {"kty": "oct", "k": "eA"}}),
    "garbage": lambda: "not-a-token",
}


@pytest.mark.parametrize("name", list(INVALID_TOKENS))
async def test_invalid_connection_tokens_disconnect_with_3500_and_leave_others_alone(
    multi_key_gateway: GatewayProcess, name: str
) -> None:
    gw = multi_key_gateway
    bystander = await RawClient.open(gw.ws_url)
    await bystander.connect(jwt.encode(good(), TEST_SECRET))
    await bystander.subscribe("tenant_42")
    assert await connect_outcome(gw, INVALID_TOKENS[name]()) == (3500, "invalid token")
    api(gw.api_url, "publish", {"channel": "tenant_42", "data": {"after": name}})
    assert (await bystander.push())["pub"]["data"] == {"after": name}
    await bystander.close()


@pytest.mark.parametrize("field", ["exp", "nbf"])
async def test_expired_and_not_yet_valid_tokens_get_error_109(multi_key_gateway: GatewayProcess, field: str) -> None:
    now = int(time.time())
    body = good(exp=now - 10) if field == "exp" else good(nbf=now + 3600)
    outcome = await connect_outcome(multi_key_gateway, jwt.encode(body, TEST_SECRET))
    assert outcome == {"id": 1, "error": {"code": 109, "message": "token expired"}}


async def test_expire_at_claim_overrides_exp() -> None:
    with running_gateway(base_config()) as gw:
        never = await connect_outcome(gw, token(extra={"expire_at": 0}))
        assert isinstance(never, dict) and "expires" not in never["connect"]
        soon = await connect_outcome(gw, token(extra={"expire_at": int(time.time()) + 100}))
        assert isinstance(soon, dict) and 95 <= soon["connect"]["ttl"] <= 100
        past = await connect_outcome(gw, token(extra={"expire_at": int(time.time()) - 5}))
        assert past == {"id": 1, "error": {"code": 110, "message": "expired"}}


async def test_connection_expires_with_3005_unless_refreshed() -> None:
    with running_gateway(base_config(client_expired_close_delay="1s")) as gw:
        lapsing = await RawClient.open(gw.ws_url)
        reply = await lapsing.connect(token(ttl=1))
        assert reply["connect"]["expires"] is True and reply["connect"]["ttl"] == 1

        refreshed = await RawClient.open(gw.ws_url)
        await refreshed.connect(token(ttl=1))
        refresh = await refreshed.command("refresh", {"token": token(ttl=600)})
        assert refresh["refresh"]["expires"] is True and 590 <= refresh["refresh"]["ttl"] <= 600

        assert await lapsing.closed(timeout=seconds(6)) == (3005, "connection expired")
        assert "subscribe" in await refreshed.subscribe("tenant_42")
        await refreshed.close()


async def test_refresh_errors(gateway: GatewayProcess) -> None:
    other_user = await RawClient.open(gateway.ws_url)
    await other_user.connect(token())
    await other_user.send(json.dumps({"id": 9, "refresh": {"token": token(user="6")}}))
    assert await other_user.closed() == (3500, "invalid token")

    expired = await RawClient.open(gateway.ws_url)
    await expired.connect(token())
    await expired.send(json.dumps({"id": 9, "refresh": {"token": token(ttl=-10)}}))
    assert await expired.closed() == (3005, "connection expired")

    empty = await RawClient.open(gateway.ws_url)
    await empty.connect(token())
    await empty.send(json.dumps({"id": 9, "refresh": {"token": ""}}))
    assert await empty.closed() == (3501, "bad request")


async def test_refresh_with_fewer_grants_ends_subscriptions_it_no_longer_allows(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token(channels=["tenant_42", "user_5"]))
    await c.subscribe("tenant_42")
    await c.subscribe("user_5")
    reply = await c.command("refresh", {"token": token(channels=["user_5"])})
    assert "refresh" in reply
    push = await c.push()
    assert push == {"channel": "tenant_42", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}
    assert (await c.subscribe("tenant_42"))["error"]["code"] == 103
    await c.close()


async def test_subscription_tokens(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token(channels=[]))
    ok = await c.subscribe("tenant_77", token=sub_token("tenant_77", info={"role": "viewer"}, data={"hello": 1}))
    assert ok["subscribe"]["data"] == {"hello": 1} and ok["subscribe"]["expires"] is True
    assert (await c.subscribe("tenant_78", token=sub_token("tenant_78", ttl=-5)))["error"]["code"] == 109
    forged = jwt.encode({"sub": "5", "channel": "tenant_79", "exp": int(time.time()) + 60}, "x" * 40)
    assert (await c.subscribe("tenant_79", token=forged))["error"]["code"] == 103
    assert (await c.subscribe("$private"))["error"]["code"] == 103
    assert "subscribe" in await c.subscribe("$private", token=sub_token("$private"))
    await c.send(json.dumps({"id": 90, "subscribe": {"channel": "tenant_80", "token": sub_token("tenant_81")}}))
    assert await c.closed() == (3500, "invalid token")

    wrong_user = await RawClient.open(gateway.ws_url)
    await wrong_user.connect(token(channels=[]))
    await wrong_user.send(json.dumps({"id": 5, "subscribe": {"channel": "x", "token": sub_token("x", user="6")}}))
    assert await wrong_user.closed() == (3500, "invalid token")


async def test_sub_refresh(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token(channels=[]))
    await c.subscribe("room", token=sub_token("room", ttl=60))
    reply = await c.command("sub_refresh", {"channel": "room", "token": sub_token("room", ttl=120)})
    assert reply["sub_refresh"]["expires"] is True and 115 <= reply["sub_refresh"]["ttl"] <= 120
    expired = await c.command("sub_refresh", {"channel": "room", "token": sub_token("room", ttl=-1)})
    assert expired["error"]["code"] == 109
    assert (await c.command("sub_refresh", {"channel": "other", "token": "x"}))["error"]["code"] == 103
    assert (await c.command("sub_refresh", {"channel": "room", "token": ""}))["error"]["code"] == 107
    await c.send(json.dumps({"id": 70, "sub_refresh": {"channel": "room", "token": sub_token("elsewhere")}}))
    assert await c.closed() == (3500, "invalid token")


async def test_subscription_expires_with_unsubscribe_push_2501() -> None:
    with running_gateway(base_config(client_expired_sub_close_delay="1s")) as gw:
        c = await RawClient.open(gw.ws_url)
        await c.connect(token(channels=[]))
        await c.subscribe("room", token=sub_token("room", ttl=1))
        push = await c.push(timeout=seconds(6))
        assert push == {"channel": "room", "unsubscribe": {"code": 2501, "reason": "subscription expired"}}
        await c.close()


async def test_user_limited_channels() -> None:
    with running_gateway(base_config(allow_user_limited_channels=True)) as gw:
        c = await RawClient.open(gw.ws_url)
        await c.connect(token(channels=[]))
        assert "subscribe" in await c.subscribe("dialog#5,6")
        assert (await c.subscribe("dialog#6,7"))["error"]["code"] == 103
        assert (await c.subscribe("dialog#55"))["error"]["code"] == 103
        await c.close()


async def test_grants_are_exact_and_client_insecure_opens_everything(gateway: GatewayProcess) -> None:
    denied = {"code": 103, "message": "permission denied"}
    exact = await RawClient.open(gateway.ws_url)
    await exact.connect(token(channels=GRANTS))
    for channel in REFUSED:  # next to a grant, never covered by one
        reply = await exact.subscribe(channel)
        assert reply.get("error") == denied, (channel, reply)
    for channel in GRANTS:
        assert "subscribe" in await exact.subscribe(channel), channel
    await exact.close()

    with running_gateway(base_config(client_insecure=True)) as gw:
        c = await RawClient.open(gw.ws_url)
        await c.connect(token(channels=[]))
        for channel in [*REFUSED, *GRANTS]:
            assert "subscribe" in await c.subscribe(channel), channel
        await c.close()


async def test_disallowed_anonymous_tokens() -> None:
    with running_gateway(base_config(disallow_anonymous_connection_tokens=True)) as gw:
        assert await connect_outcome(gw, token(user="")) == (3507, "permission denied")


async def test_revoked_and_invalidated_tokens(gateway: GatewayProcess) -> None:
    tok = token(user="77", extra={"jti": "token-to-revoke"})
    holder = await RawClient.open(gateway.ws_url)
    await holder.connect(tok)
    api(gateway.api_url, "revoke_token", {"uid": "token-to-revoke", "expire_at": int(time.time()) + 600})
    assert await holder.closed() == (3005, "connection expired")
    assert await connect_outcome(gateway, tok) == {"id": 1, "error": {"code": 109, "message": "token expired"}}

    old = token(user="78", now=time.time() - 60)
    live = await RawClient.open(gateway.ws_url)
    await live.connect(old)
    invalidated_at = int(time.time()) - 1
    api(gateway.api_url, "invalidate_user_tokens", {"user": "78", "issued_before": invalidated_at})
    assert await live.closed() == (3005, "connection expired")
    assert (await connect_outcome(gateway, old)) == {"id": 1, "error": {"code": 109, "message": "token expired"}}
    # A token issued after the invalidation time (a second ago, so no waiting) is accepted.
    fresh = await connect_outcome(gateway, token(user="78"))
    assert isinstance(fresh, dict) and "connect" in fresh

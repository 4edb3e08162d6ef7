"""What a JWT attacker tries, against a real gateway (spec §4, decisions §4, docs/security.md).

Each row has one exact outcome: a connection token is refused with close 3500 on connect and on
refresh; a subscription token with error 103 on subscribe and close 3500 on sub_refresh
(spec §2.10); an expiry is error 109 (refresh: close 3005, spec §2.9). Only the attacker's
connection is touched: a bystander keeps receiving, and the gateway logs no traceback. Every
row runs against an HMAC-only gateway and one that also holds an RSA public key, whose tokens
take the other verification path (the header is read to choose the key family).

The key is chosen by the configuration and the algorithm, never by the token: ``kid`` and
``typ`` are not consulted, and headers that name a key (``jwk``, ``jku``, ``x5u``, ``x5c``) are
refused even on a token signed with the right secret.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Final

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.exceptions import ConnectionClosed

from tests.support.api import publish
from tests.support.forge import (
    JWT_HEADER,
    b64url,
    claims,
    forge,
    rs_sign,
    segment,
    self_signed_certificate,
    sub_claims,
    unsigned,
)
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.syncraw import LogWatch
from tests.support.tokens import sub_token, token

INVALID: Final = (3500, "invalid token")
EXPIRED_CONNECTION: Final = (3005, "connection expired")
TOKEN_EXPIRED: Final = {"code": 109, "message": "token expired"}
PERMISSION_DENIED: Final = {"code": 103, "message": "permission denied"}
UINT32_MAX: Final = 2**32 - 1

STAGING_SECRET: Final = "staging-secret-staging-secret-staging-secret-0123456789"
ATTACKER_KEY: Final = "attacker-key-attacker-key-attacker-key-0123456789"
RSA_KEY: Final = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM: Final = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
ATTACKER_RSA_KEY: Final = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_EC_KEY: Final = ec.generate_private_key(ec.SECP256R1())
ATTACKER_CERT: Final = base64.b64encode(self_signed_certificate(ATTACKER_RSA_KEY)).decode()
PRIVATE: Final = "$attack"  # a private channel: only a subscription token opens it


@pytest.fixture(scope="module", params=["hmac", "hmac+rsa"])
def gw(request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    cfg = base_config(token_hmac_secret_keys=[{"key": STAGING_SECRET, "channel_prefix": "staging_"}])
    if request.param == "hmac+rsa":
        cfg["token_rsa_public_key"] = RSA_PUBLIC_PEM
    with running_gateway(cfg) as gateway:
        yield gateway
        assert "Traceback" not in gateway.log()


@pytest.fixture
def log(gw: GatewayProcess) -> Iterator[LogWatch]:
    watch = LogWatch(gw)
    yield watch
    watch.assert_clean()


@asynccontextmanager
async def bystander(gw: GatewayProcess) -> AsyncIterator[None]:
    """A subscribed client that must keep receiving while the attacks run beside it."""
    channel = f"tenant_{uuid.uuid4().hex[:8]}"
    client = await RawClient.open(gw.ws_url)
    try:
        await client.connect(token(user="bystander", channels=[channel]))
        assert "subscribe" in await client.subscribe(channel)
        yield
        marker = uuid.uuid4().hex
        publish(gw.api_url, channel, {"m": marker})
        assert (await client.push(lambda p: "pub" in p))["pub"]["data"] == {"m": marker}
    finally:
        await client.close()


async def outcome(client: RawClient, cmd: dict[str, Any]) -> dict[str, Any] | tuple[int, str]:
    """The reply to ``cmd`` (its id removed), or the server's close as (code, reason)."""
    await client.send(json.dumps(cmd))
    try:
        reply = await client.reply(cmd["id"])
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"no close frame: {exc!r}"
        return exc.rcvd.code, exc.rcvd.reason
    reply.pop("id")
    return reply


async def connected(gw: GatewayProcess, tok: str | None = None) -> RawClient:
    client = await RawClient.open(gw.ws_url)
    assert "connect" in await client.connect(tok or token())
    return client


async def on_connect(gw: GatewayProcess, tok: str) -> dict[str, Any] | tuple[int, str]:
    client = await RawClient.open(gw.ws_url)
    result = await outcome(client, {"id": 1, "connect": {"token": tok}})
    await client.close()
    return result


async def on_refresh(gw: GatewayProcess, tok: str) -> dict[str, Any] | tuple[int, str]:
    client = await connected(gw)
    result = await outcome(client, {"id": 2, "refresh": {"token": tok}})
    await client.close()
    return result


async def on_subscribe(gw: GatewayProcess, tok: str) -> dict[str, Any] | tuple[int, str]:
    client = await connected(gw)
    result = await outcome(client, {"id": 2, "subscribe": {"channel": PRIVATE, "token": tok}})
    await client.close()
    return result


async def on_sub_refresh(gw: GatewayProcess, tok: str) -> dict[str, Any] | tuple[int, str]:
    client = await connected(gw)
    assert "subscribe" in await client.subscribe(PRIVATE, token=sub_token(PRIVATE))
    result = await outcome(client, {"id": 3, "sub_refresh": {"channel": PRIVATE, "token": tok}})
    await client.close()
    return result


def header(**extra: Any) -> dict[str, Any]:
    return {**JWT_HEADER, **extra}


def payload_text(body: dict[str, Any], **raw_members: str) -> str:
    """Claims as JSON text with members whose values are written verbatim (NaN, escapes...)."""
    text = json.dumps(body)[:-1]
    return text + "".join(f',"{name}":{value}' for name, value in raw_members.items()) + "}"


def real() -> str:
    """A valid connection token to take apart."""
    return forge(JWT_HEADER, claims())


def in_standard_base64() -> str:
    """A valid token written with the standard base64 alphabet (``+/`` for ``-_``)."""
    while True:  # each token has a new jti, so a new signature: one soon holds ``-`` or ``_``
        tok = real()
        if "-" in tok or "_" in tok:
            return tok.replace("-", "+").replace("_", "/")


def with_segment(tok: str, index: int, change: Callable[[str], str]) -> str:
    parts = tok.split(".")
    parts[index] = change(parts[index])
    return ".".join(parts)


# --- connection tokens: close 3500 on connect and on refresh

CONNECTION_ATTACKS: dict[str, Callable[[], str]] = {
    # Headers that name a key: refused even when the signature is right.
    "x5u": lambda: forge(header(x5u="https://attacker.example/cert.pem"), claims()),
    "x5c": lambda: forge(header(x5c=[ATTACKER_CERT]), claims()),
    "x5c-rs256-signed-by-the-certificate": lambda: rs_sign(
        {"alg": "RS256", "typ": "JWT", "x5c": [ATTACKER_CERT]}, claims(), ATTACKER_RSA_KEY
    ),
    "jku": lambda: forge(header(jku="https://attacker.example/jwks.json"), claims()),
    "jwk-of-the-attacker": lambda: forge(
        header(jwk={"kty": "oct", "k": b64url(ATTACKER_KEY.encode())}), claims(), key=ATTACKER_KEY
    ),
    # kid is never a file name, a query or a key name: the configured keys verify.
    "kid-path-traversal-to-an-empty-file": lambda: forge(header(kid="../../../../../../dev/null"), claims(), key=b""),
    "kid-path-to-a-known-file": lambda: forge(header(kid="/proc/sys/kernel/ostype"), claims(), key=b"Linux\n"),
    "kid-sql-injection": lambda: forge(header(kid="x' UNION SELECT 'attacker-key' -- "), claims(), key=ATTACKER_KEY),
    "kid-naming-the-hmac-secret": lambda: forge(header(kid="token_hmac_secret_key"), claims(), key=ATTACKER_KEY),
    "kid-naming-the-rsa-key-hs256-signed-with-its-pem": lambda: forge(
        header(kid="token_rsa_public_key"), claims(), key=RSA_PUBLIC_PEM
    ),
    # Shapes that are not a compact JWS.
    "five-segments": lambda: real() + ".e30.e30",
    "jwe-shaped": lambda: ".".join(
        [segment({"alg": "dir", "enc": "A256GCM"}), "", b64url(b"0" * 12), b64url(b"ciphertext"), b64url(b"0" * 16)]
    ),
    "signature-stripped": lambda: real().rsplit(".", 1)[0] + ".",
    "only-dots": lambda: "..",
    "header-not-an-object": lambda: forge("[]", claims()),
    "payload-not-an-object": lambda: forge(JWT_HEADER, "[1,2]"),
    "header-not-utf8": lambda: forge(b'{"alg":"HS256","x":"\xff"}', claims()),
    "payload-not-utf8": lambda: forge(JWT_HEADER, b'{"sub":"\xff","exp":99999999999}'),
    # The token's kind: a subscription token carries a channel claim.
    "subscription-token-as-connection-token": lambda: forge(JWT_HEADER, sub_claims("tenant_42")),
    # Time claims of the wrong type or range (int64 in the reference, spec §4.2).
    "exp-beyond-int64": lambda: forge(JWT_HEADER, claims(exp=2**63)),
    "exp-2-to-the-64": lambda: forge(JWT_HEADER, claims(exp=2**64)),
    "exp-infinity": lambda: forge(JWT_HEADER, payload_text(claims(exp=None), exp="Infinity")),
    "exp-1e400": lambda: forge(JWT_HEADER, payload_text(claims(exp=None), exp="1e400")),
    "exp-nan": lambda: forge(JWT_HEADER, payload_text(claims(exp=None), exp="NaN")),
    "exp-a-string": lambda: forge(JWT_HEADER, claims(exp=str(int(time.time()) + 600))),
    "expire-at-beyond-int64": lambda: forge(JWT_HEADER, claims(expire_at=2**64)),
    "expire-at-infinity": lambda: forge(JWT_HEADER, payload_text(claims(), expire_at="Infinity")),
    "expire-at-nan": lambda: forge(JWT_HEADER, payload_text(claims(), expire_at="NaN")),
    # Strings that are no Unicode (a lone surrogate escape) would fail every later encoding.
    "sub-lone-surrogate": lambda: forge(JWT_HEADER, payload_text(claims(user=None), sub='"\\ud800"')),
    "info-lone-surrogate": lambda: forge(JWT_HEADER, payload_text(claims(), info='{"name":"a\\udfffb"}')),
    "oversized": lambda: forge(JWT_HEADER, claims(info={"pad": "x" * 9000})),
    # crit: extensions the gateway does not understand must be refused (RFC 7515 §4.1.11).
    "crit-unknown-extension": lambda: forge(header(crit=["x-herald"], **{"x-herald": True}), claims()),
    "crit-naming-a-registered-header": lambda: forge(header(crit=["exp"]), claims()),
    "crit-not-a-list": lambda: forge(header(crit="x-herald"), claims()),
    "crit-empty": lambda: forge(header(crit=[]), claims()),
    "b64-false-unencoded-payload": lambda: forge(header(crit=["b64"], b64=False), claims()),
    # alg games (the gateway pins algorithms to the kind of key configured).
    "alg-none-typ-jwe": lambda: unsigned({"alg": "none", "typ": "JWE"}, claims()),
    "alg-lowercase": lambda: forge({"alg": "hs256", "typ": "JWT"}, claims()),
    "alg-fullwidth-unicode": lambda: forge({"alg": "\uff28\uff33256", "typ": "JWT"}, claims()),
    "alg-with-a-space": lambda: forge({"alg": "HS256 ", "typ": "JWT"}, claims()),
    "alg-null": lambda: forge({"alg": None}, claims()),
    "alg-a-number": lambda: forge({"alg": 256}, claims()),
    "alg-a-list": lambda: forge({"alg": ["HS256"]}, claims()),
    "duplicate-alg-none-last": lambda: unsigned('{"alg":"HS256","alg":"none"}', claims()),
    "duplicate-alg-hs256-last-unsigned": lambda: unsigned('{"alg":"none","alg":"HS256"}', claims()),
    "duplicate-alg-signed-by-the-attacker": lambda: forge('{"alg":"none","alg":"HS256"}', claims(), key=ATTACKER_KEY),
    "typ-mismatch-signed-by-the-attacker": lambda: forge({"alg": "HS256", "typ": "at+jwt"}, claims(), key=ATTACKER_KEY),
    "unicode-header-signed-by-the-attacker": lambda: forge(
        header(kid="\u043a\u043b\u044e\u0447"), claims(), key=ATTACKER_KEY
    ),
    "rs256-signed-by-the-attacker": lambda: rs_sign({"alg": "RS256", "typ": "JWT"}, claims(), ATTACKER_RSA_KEY),
    "es256-not-configured": lambda: jwt.encode(claims(), ATTACKER_EC_KEY, algorithm="ES256"),
    # Whitespace and padding: base64url without padding, no whitespace (RFC 7515 §2, §7.1).
    "padding-on-the-header": lambda: with_segment(real(), 0, lambda s: s + "=="),
    "padding-on-the-payload": lambda: with_segment(real(), 1, lambda s: s + "="),
    "padding-on-the-signature": lambda: real() + "=",
    "space-in-the-signature": lambda: with_segment(real(), 2, lambda s: s[:10] + " " + s[10:]),
    "tab-in-the-payload": lambda: with_segment(real(), 1, lambda s: s[:10] + "\t" + s[10:]),
    "leading-space": lambda: " " + real(),
    "trailing-newline": lambda: real() + "\n",
    "standard-base64-alphabet": lambda: in_standard_base64(),
    "non-ascii-in-the-token": lambda: real() + "\u00e9",
}


@pytest.mark.parametrize("name", list(CONNECTION_ATTACKS))
async def test_forged_connection_tokens_close_with_3500(gw: GatewayProcess, log: LogWatch, name: str) -> None:
    tok = CONNECTION_ATTACKS[name]()
    async with bystander(gw):
        assert await on_connect(gw, tok) == INVALID
        assert await on_refresh(gw, tok) == INVALID


# --- expiries: error 109 on connect (the SDK fetches a new token), close 3005 on refresh

EXPIRED_CONNECTION_TOKENS: dict[str, Callable[[], str]] = {
    "exp-in-1970": lambda: forge(JWT_HEADER, claims(exp=1)),
    "exp-far-below-int64": lambda: forge(JWT_HEADER, claims(exp=-(2**64))),
    "nbf-far-future": lambda: forge(JWT_HEADER, claims(nbf=2**62)),
    "nbf-beyond-int64": lambda: forge(JWT_HEADER, claims(nbf=2**64)),  # not yet valid wins over its range
    "iat-far-future": lambda: forge(JWT_HEADER, claims(iat=2**62)),
}


@pytest.mark.parametrize("name", list(EXPIRED_CONNECTION_TOKENS))
async def test_expired_connection_tokens_get_109_and_end_a_refresh_with_3005(
    gw: GatewayProcess, log: LogWatch, name: str
) -> None:
    tok = EXPIRED_CONNECTION_TOKENS[name]()
    async with bystander(gw):
        assert await on_connect(gw, tok) == {"error": TOKEN_EXPIRED}
        assert await on_refresh(gw, tok) == EXPIRED_CONNECTION


# --- subscription tokens: error 103 on subscribe, close 3500 on sub_refresh


def sub(**extra: Any) -> dict[str, Any]:
    return sub_claims(PRIVATE, **extra)


SUBSCRIPTION_ATTACKS: dict[str, Callable[[], str]] = {
    "x5u": lambda: forge(header(x5u="https://attacker.example/cert.pem"), sub()),
    "x5c": lambda: forge(header(x5c=[ATTACKER_CERT]), sub()),
    "jku": lambda: forge(header(jku="https://attacker.example/jwks.json"), sub()),
    "jwk-of-the-attacker": lambda: forge(
        header(jwk={"kty": "oct", "k": b64url(ATTACKER_KEY.encode())}), sub(), key=ATTACKER_KEY
    ),
    "kid-path-traversal-to-an-empty-file": lambda: forge(header(kid="../../../../../../dev/null"), sub(), key=b""),
    "kid-sql-injection": lambda: forge(header(kid="x' OR '1'='1"), sub(), key=ATTACKER_KEY),
    "kid-naming-the-rsa-key-hs256-signed-with-its-pem": lambda: forge(
        header(kid="token_rsa_public_key"), sub(), key=RSA_PUBLIC_PEM
    ),
    "five-segments": lambda: forge(JWT_HEADER, sub()) + ".e30.e30",
    "connection-token-as-subscription-token": lambda: forge(JWT_HEADER, claims(channels=[PRIVATE])),
    "exp-beyond-int64": lambda: forge(JWT_HEADER, sub(exp=2**63)),
    "expire-at-infinity": lambda: forge(JWT_HEADER, payload_text(sub(), expire_at="Infinity")),
    "expire-at-nan": lambda: forge(JWT_HEADER, payload_text(sub(), expire_at="NaN")),
    "info-lone-surrogate": lambda: forge(JWT_HEADER, payload_text(sub(), info='"\\ud800"')),
    "data-lone-surrogate": lambda: forge(JWT_HEADER, payload_text(sub(), data='{"a":"\\ud800"}')),
    "oversized": lambda: forge(JWT_HEADER, sub(info={"pad": "x" * 9000})),
    "crit-unknown-extension": lambda: forge(header(crit=["x-herald"], **{"x-herald": True}), sub()),
    "alg-none": lambda: unsigned({"alg": "none"}, sub()),
    "duplicate-alg-signed-by-the-attacker": lambda: forge('{"alg":"none","alg":"HS256"}', sub(), key=ATTACKER_KEY),
    "padding-on-the-signature": lambda: forge(JWT_HEADER, sub()) + "==",
    "rs256-signed-by-the-attacker": lambda: rs_sign({"alg": "RS256", "typ": "JWT"}, sub(), ATTACKER_RSA_KEY),
}


@pytest.mark.parametrize("name", list(SUBSCRIPTION_ATTACKS))
async def test_forged_subscription_tokens_get_103_and_end_a_sub_refresh_with_3500(
    gw: GatewayProcess, log: LogWatch, name: str
) -> None:
    tok = SUBSCRIPTION_ATTACKS[name]()
    async with bystander(gw):
        assert await on_subscribe(gw, tok) == {"error": PERMISSION_DENIED}
        assert await on_sub_refresh(gw, tok) == INVALID


@pytest.mark.parametrize(
    "claims_override", [{"exp": 1}, {"exp": -(2**64)}, {"nbf": 2**62}], ids=["exp-1970", "exp-far-below-int64", "nbf"]
)
async def test_expired_subscription_tokens_get_109(
    gw: GatewayProcess, log: LogWatch, claims_override: dict[str, int]
) -> None:
    tok = forge(JWT_HEADER, sub(**claims_override))
    async with bystander(gw):
        assert await on_subscribe(gw, tok) == {"error": TOKEN_EXPIRED}
        assert await on_sub_refresh(gw, tok) == {"error": TOKEN_EXPIRED}  # decisions §4


# --- what the signature covers is the issuer's choice: accepted, within the wire contract


@pytest.mark.parametrize("exp", [253_402_300_800, 2**63 - 1], ids=["year-10000", "int64-max"])
async def test_an_absurdly_far_expiry_is_accepted_with_the_largest_ttl_the_protocol_holds(
    gw: GatewayProcess, log: LogWatch, exp: int
) -> None:
    """A validly signed token may expire in the year 10000: the connection lives, and every
    ``ttl`` it is told stays within the protocol's uint32 (spec §2.1), not 250 billion."""
    async with bystander(gw):
        reply = await on_connect(gw, forge(JWT_HEADER, claims(exp=exp)))
        assert isinstance(reply, dict) and reply["connect"]["expires"] is True
        assert reply["connect"]["ttl"] == UINT32_MAX
        assert await on_refresh(gw, forge(JWT_HEADER, claims(exp=exp))) == {
            "refresh": {"expires": True, "ttl": UINT32_MAX}
        }
        subscribed = await on_subscribe(gw, forge(JWT_HEADER, sub(exp=exp)))
        assert isinstance(subscribed, dict) and subscribed["subscribe"]["ttl"] == UINT32_MAX
        assert await on_sub_refresh(gw, forge(JWT_HEADER, sub(exp=exp))) == {
            "sub_refresh": {"expires": True, "ttl": UINT32_MAX}
        }


async def test_kid_and_typ_are_not_consulted(gw: GatewayProcess, log: LogWatch) -> None:
    """A token signed with the configured secret is accepted whatever its ``kid`` or ``typ`` say
    (the reference ignores both too), and a ``kid`` naming another key changes neither the key that
    verifies it nor the environment its grants are confined to (decisions §2). ``crit`` may name
    only what is implemented: ``b64`` with its default value."""
    async with bystander(gw):
        understood: list[dict[str, Any]] = [
            {"kid": "../../../../dev/null"},
            {"kid": "token_rsa_public_key"},
            {"typ": "at+jwt"},
            {"crit": ["b64"], "b64": True},  # the one extension the library implements, as by default
        ]
        for extra in understood:
            reply = await on_connect(gw, forge(header(**extra), claims()))
            assert isinstance(reply, dict) and "connect" in reply, extra
        # Signed with the staging secret, claiming the unbound key: still a staging token.
        staging = forge(header(kid="token_hmac_secret_key"), claims(channels=["staging_a", "prod_a"]), STAGING_SECRET)
        client = await connected(gw, staging)
        assert "subscribe" in await client.subscribe("staging_a")
        assert (await client.subscribe("prod_a"))["error"] == PERMISSION_DENIED
        await client.close()


async def test_a_token_made_of_nothing_is_a_connect_without_credentials(gw: GatewayProcess, log: LogWatch) -> None:
    """An empty token is no token (spec §12, gotcha 11): 3501, as without one."""
    async with bystander(gw):
        assert await on_connect(gw, "") == (3501, "bad request")
